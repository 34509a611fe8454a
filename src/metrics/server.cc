// See server.h. One thread, one poll(2) over the listener, an eventfd that stop() writes,
// and the connection slots. Each slot reads one request head, answers it, and either
// closes or (keep-alive) waits for the next; a pipelined request waits until the previous
// answer is written. Every socket is non-blocking, so no client can hold the thread.
#include "pgplex/metrics/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "pgplex/base/clock.h"
#include "pgplex/base/log.h"
#include "pgplex/metrics/endpoints.h"
#include "pgplex/metrics/exposition.h"
#include "pgplex/worker/worker.h"

namespace pgplex::metrics {

namespace {

// What a request looks at, taken now.
Snapshot snapshot_of(const worker::Shared& shared, uint32_t workers) {
    Snapshot snapshot;
    snapshot.stats = shared.stats.get();
    snapshot.workers = workers;
    snapshot.pools = &shared.pools;
    snapshot.config = shared.config_snapshot();
    snapshot.topology = shared.topology_snapshot();
    snapshot.started = shared.started.load(std::memory_order_acquire);
    snapshot.shutting_down = shared.shutdown.load(std::memory_order_acquire);
    snapshot.clients = shared.clients.load(std::memory_order_relaxed);
    return snapshot;
}

}  // namespace

namespace {

struct Connection {
    base::UniqueFd fd;
    std::string in;
    std::string out;
    size_t sent = 0;
    bool close_after = false;
    // The last answer is written and our side shut: what the client still sends is read
    // and dropped until it closes or the deadline, so a close never resets the connection
    // before the client has read the answer (a lingering close, as HTTP servers do).
    bool draining = false;
    int64_t deadline_ms = 0;

    void reset() {
        fd.reset();
        in.clear();
        out.clear();
        sent = 0;
        close_after = false;
        draining = false;
    }
};

// Answers the next whole request in `in`, if there is one and no answer is being written.
void next_request(Connection& c, const worker::Shared& shared, uint32_t workers) {
    if (!c.out.empty() || c.close_after) return;
    Request request;
    size_t consumed = 0;
    switch (parse_request(c.in, request, consumed)) {
        case ParseResult::Incomplete:
            return;
        case ParseResult::Complete: {
            Response response = respond(request, snapshot_of(shared, workers));
            c.in.erase(0, consumed);
            c.close_after = request.close;
            c.out = format_response(response, request.method == Method::Head, !c.close_after);
            break;
        }
        case ParseResult::Bad:
            c.close_after = true;
            c.out = format_response(text_response(400, "bad request\n"), false, false);
            break;
        case ParseResult::TooLarge:
            c.close_after = true;
            c.out = format_response(text_response(431, "request head too large\n"), false, false);
            break;
    }
    c.sent = 0;
    c.deadline_ms = base::monotonic_ms() + request_timeout_ms;
}

void on_readable(Connection& c, const worker::Shared& shared, uint32_t workers) {
    char chunk[4096];
    ssize_t got = recv(c.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return c.reset();
    if (got < 0 || c.draining) return;
    // Past the head limit nothing more is read: the parser answers 431 from what it has.
    if (c.in.size() < request_head_bytes_max + sizeof chunk) c.in.append(chunk, size_t(got));
    next_request(c, shared, workers);
}

void on_writable(Connection& c, const worker::Shared& shared, uint32_t workers) {
    ssize_t put =
        send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (put < 0 && errno != EAGAIN && errno != EINTR) return c.reset();
    if (put > 0) c.sent += size_t(put);
    if (c.sent < c.out.size()) return;
    c.out.clear();
    c.sent = 0;
    if (c.close_after) {
        shutdown(c.fd.get(), SHUT_WR);
        c.draining = true;
        c.deadline_ms = base::monotonic_ms() + linger_ms;
        return;
    }
    c.deadline_ms = base::monotonic_ms() + request_timeout_ms;
    next_request(c, shared, workers);  // a pipelined request already read
}

// A slot past its deadline: a started request gets 408 (one try), then the slot is freed.
void expire(Connection& c, int64_t now_ms) {
    if (!c.fd.valid() || now_ms < c.deadline_ms) return;
    if (c.out.empty() && !c.in.empty() && !c.draining) {
        std::string answer = format_response(text_response(408, "request timeout\n"), false, false);
        ssize_t ignored =
            send(c.fd.get(), answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)ignored;
    }
    c.reset();
}

// Returns false when accept fails for want of file descriptors: the listener then stays
// readable, and the caller stops polling it for a while rather than spin.
bool accept_into(int listener, std::array<Connection, connections_max>& slots) {
    for (Connection& c : slots) {
        if (c.fd.valid()) continue;
        int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM;
        c.reset();
        c.fd.reset(fd);
        c.deadline_ms = base::monotonic_ms() + request_timeout_ms;
    }
    return true;
}

}  // namespace

bool Server::start(const config::Endpoint& endpoint, std::string& reason) {
    int family = endpoint.address.ss_family;
    listener_.reset(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int one = 1;
    if (!listener_.valid() ||
        setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(listener_.get(), reinterpret_cast<const sockaddr*>(&endpoint.address),
             endpoint.address_bytes) != 0 ||
        listen(listener_.get(), listen_backlog) != 0) {
        reason = endpoint.to_string() + ": " + strerror(errno);
        listener_.reset();
        return false;
    }
    wake_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_.valid()) {
        reason = std::string("eventfd: ") + strerror(errno);
        return false;
    }
    thread_ = std::thread([this] { run(); });
    return true;
}

void Server::stop() {
    if (!thread_.joinable()) return;
    stopping_.store(true, std::memory_order_release);
    uint64_t one = 1;
    ssize_t ignored = write(wake_.get(), &one, sizeof one);
    (void)ignored;
    thread_.join();
    listener_.reset();
    wake_.reset();
}

void Server::run() {
    std::array<Connection, connections_max> slots;
    int64_t accept_paused_until_ms = 0;
    while (!stopping_.load(std::memory_order_acquire)) {
        std::array<pollfd, connections_max + 2> fds{};
        fds[0] = {wake_.get(), POLLIN, 0};
        bool room = false;
        for (const Connection& c : slots) room = room || !c.fd.valid();
        bool accepting = room && base::monotonic_ms() >= accept_paused_until_ms;
        fds[1] = {listener_.get(), short(accepting ? POLLIN : 0), 0};
        for (size_t i = 0; i < slots.size(); ++i)
            fds[i + 2] = {slots[i].fd.valid() ? slots[i].fd.get() : -1,
                          short(slots[i].out.empty() ? POLLIN : POLLOUT), 0};
        if (poll(fds.data(), fds.size(), 250) < 0 && errno != EINTR) {
            log_error("metrics: poll: %s", strerror(errno));
            return;
        }
        if (fds[0].revents != 0) return;
        for (size_t i = 0; i < slots.size(); ++i) {
            short events = fds[i + 2].revents;
            if (events & (POLLERR | POLLNVAL))
                slots[i].reset();
            else if (events & POLLOUT)
                on_writable(slots[i], shared_, workers_);
            else if (events & (POLLIN | POLLHUP))
                on_readable(slots[i], shared_, workers_);
        }
        int64_t now = base::monotonic_ms();
        for (Connection& c : slots) expire(c, now);
        if ((fds[1].revents & POLLIN) && !accept_into(listener_.get(), slots))
            accept_paused_until_ms = now + accept_pause_ms;
    }
}

}  // namespace pgplex::metrics
