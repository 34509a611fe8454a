// See takeover.h.
#include "pgplex/takeover.h"

#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <utility>

#include "pgplex/base/codec.h"
#include "pgplex/base/log.h"
#include "pgplex/io/handover.h"
#include "pgplex/io/listener.h"
#include "pgplex/io/user_data.h"

namespace pgplex::takeover {

namespace {

// How long either side waits for the other during the exchange of listeners.
constexpr int exchange_timeout_ms = 10000;

// Sends worker ring `ring_fd` a Wake (io/user_data.h) and reaps what completed.
void wake(io_uring& ring, int ring_fd) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == nullptr) return;
    io_uring_prep_msg_ring(sqe, ring_fd, 0,
                           io::pack(io::Op::Message, uint32_t(io::MessageKind::Wake), 0), 0);
    io_uring_sqe_set_data64(sqe, 0);
    io_uring_submit_and_wait(&ring, 1);
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring, &cqe) == 0) io_uring_cqe_seen(&ring, cqe);
}

void set_receive_timeout(int socket, int ms) {
    timeval timeout{ms / 1000, (ms % 1000) * 1000};
    setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

}  // namespace

std::string socket_path(const config::Config& config) {
    if (!config.takeover_socket.empty()) return config.takeover_socket;
    if (config.unix_socket_dir.empty()) return "";
    for (const config::Listen& listen : config.listen)
        if (!listen.endpoint.is_unix())
            return config.unix_socket_dir + "/.s.PGPLEX." + std::to_string(listen.endpoint.port);
    return "";
}

// --- the running pgplex ---------------------------------------------------------------------

Giver::~Giver() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
}

void Giver::start(const std::string& path, worker::Shared& shared,
                  std::vector<systemd::ActivatedSocket> listeners) {
    if (path.empty()) return;
    std::string error;
    listener_ = io::listen_handover(path, error);
    if (!listener_.valid()) {
        log_warning(
            "takeover: cannot listen on %s: %s (pgplex --takeover cannot take over "
            "from this process)",
            path.c_str(), error.c_str());
        return;
    }
    path_ = path;
    shared_ = &shared;
    listeners_ = std::move(listeners);
    thread_ = std::thread([this] { serve(); });
}

// One takeover, then the thread ends: the process is on its way out.
void Giver::serve() {
    pthread_setname_np(pthread_self(), "pgplex-takeover");
    while (!stop_.load()) {
        // Shutting down by a signal: the copies of the listening sockets must not keep them
        // open (the workers closed theirs so that new connections are refused at once).
        if (shared_->shutdown.load(std::memory_order_acquire)) listeners_.clear();
        pollfd wait{listener_.get(), POLLIN, 0};
        if (::poll(&wait, 1, 200) <= 0) continue;
        base::UniqueFd socket(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!socket.valid()) continue;
        ucred peer{};
        socklen_t peer_size = sizeof peer;
        if (getsockopt(socket.get(), SOL_SOCKET, SO_PEERCRED, &peer, &peer_size) != 0 ||
            peer.uid != geteuid()) {
            log_warning(
                "takeover: refused a connection from uid %u (only pgplex's own user "
                "may take over)",
                peer.uid);
            continue;
        }
        if (shared_->shutdown.load()) {
            std::string ignored;
            io::send_frame(socket.get(), io::HandoverKind::Refused, "pgplex is shutting down", {},
                           ignored);
            continue;
        }
        log_info("takeover: pgplex (pid %d) asks to take over", peer.pid);
        if (!hand_listeners(socket.get())) continue;
        taken_.store(true, std::memory_order_release);
        listener_.reset();  // the new pgplex listens on the path now
        // As SIGTERM: no new clients; those connected go on until they leave, but each is
        // handed over as soon as it is idle between transactions.
        shared_->handing_over.store(true, std::memory_order_release);
        shared_->console.signal.store(SIGTERM, std::memory_order_release);
        log_info(
            "takeover: pgplex (pid %d) accepts on every listener now; handing clients "
            "over as they go idle",
            peer.pid);
        send_clients(socket.get());
        return;
    }
}

bool Giver::hand_listeners(int socket) {
    std::string error;
    set_receive_timeout(socket, exchange_timeout_ms);
    io::HandoverFrame frame;
    if (!io::receive_frame(socket, frame, error) || frame.kind != io::HandoverKind::Hello) {
        log_warning("takeover: no Hello from the new pgplex: %s", error.c_str());
        return false;
    }
    base::ByteReader reader(frame.payload);
    uint32_t version = reader.u32();
    if (version != io::handover_version) {
        std::string why = "pgplex speaks takeover version " + std::to_string(io::handover_version) +
                          ", not " + std::to_string(version);
        io::send_frame(socket, io::HandoverKind::Refused, why, {}, error);
        log_warning("takeover: refused: %s", why.c_str());
        return false;
    }
    for (const systemd::ActivatedSocket& listener : listeners_) {
        io::ListenerInfo info;
        info.cluster = listener.role.cluster;
        info.service = listener.role.service;
        info.endpoint = listener.bound.to_string();
        if (!io::send_frame(socket, io::HandoverKind::Listener, io::listener_encode(info),
                            {listener.fd.get()}, error)) {
            log_warning("takeover: sending a listener: %s", error.c_str());
            return false;
        }
    }
    if (!io::send_frame(socket, io::HandoverKind::ListenersEnd, "", {}, error) ||
        !io::receive_frame(socket, frame, error) || frame.kind != io::HandoverKind::Ready) {
        log_warning("takeover: the new pgplex did not say Ready: %s; going on as before",
                    error.empty() ? "it refused" : error.c_str());
        return false;
    }
    return true;
}

void Giver::send_clients(int socket) {
    std::string error;
    uint64_t sent = 0;
    bool broken = false;
    while (true) {
        bool last = workers_done_.load(std::memory_order_acquire);
        std::vector<worker::HandoverItem> items = shared_->handed_out.take();
        for (worker::HandoverItem& item : items) {
            if (broken) continue;  // the sockets close with the items: those clients end
            if (!io::send_frame(socket, io::HandoverKind::Client, item.payload, {item.fd.get()},
                                error)) {
                log_error(
                    "takeover: the new pgplex went away (%s); clients still to hand "
                    "over lose their connections",
                    error.c_str());
                broken = true;
                continue;
            }
            ++sent;
        }
        if (last) break;
        if (items.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!broken) io::send_frame(socket, io::HandoverKind::Done, "", {}, error);
    log_info("takeover: %llu clients handed over", (unsigned long long)sent);
}

void Giver::finish() {
    workers_done_.store(true, std::memory_order_release);
    if (thread_.joinable()) {
        if (!taken()) stop_.store(true);
        thread_.join();
    }
    if (!taken() && !path_.empty()) ::unlink(path_.c_str());
}

// --- the new pgplex -----------------------------------------------------------------------

Taker::~Taker() {
    stop();
}

bool Taker::take_listeners(const std::string& path, const config::Config& config,
                           std::vector<systemd::ActivatedSocket>& out) {
    std::string error;
    if (path.empty()) {
        log_error(
            "takeover: no takeover_socket (and no unix_socket_dir) in %s: nothing says "
            "where the running pgplex is",
            config.path.c_str());
        return false;
    }
    socket_ = io::connect_handover(path, error);
    if (!socket_.valid()) {
        log_error("takeover: no pgplex to take over from at %s", error.c_str());
        return false;
    }
    set_receive_timeout(socket_.get(), exchange_timeout_ms);
    base::ByteWriter hello;
    hello.u32(io::handover_version);
    if (!io::send_frame(socket_.get(), io::HandoverKind::Hello, hello.data(), {}, error)) {
        log_error("takeover: %s", error.c_str());
        return false;
    }
    while (true) {
        io::HandoverFrame frame;
        if (!io::receive_frame(socket_.get(), frame, error)) {
            log_error("takeover: the running pgplex stopped answering: %s", error.c_str());
            return false;
        }
        if (frame.kind == io::HandoverKind::ListenersEnd) break;
        if (frame.kind == io::HandoverKind::Refused) {
            log_error("takeover: refused: %s", frame.payload.c_str());
            return false;
        }
        io::ListenerInfo info;
        if (frame.kind != io::HandoverKind::Listener || frame.fds.size() != 1 ||
            !io::listener_decode(frame.payload, info)) {
            log_error("takeover: the running pgplex sent something else than a listener");
            return false;
        }
        systemd::ActivatedSocket socket;
        worker::ListenerRole role{info.cluster, info.service, false};
        std::string reason;
        if (!io::adopt(frame.fds[0].get(), socket.bound, reason)) {
            log_warning("takeover: listener %s: %s; closed", info.endpoint.c_str(), reason.c_str());
        } else if (!systemd::role_for(config, systemd::listener_name(role), socket.bound,
                                      socket.role)) {
            log_warning(
                "takeover: %s (%s) is not in %s any more; closed (connections waiting "
                "in its queue are refused)",
                socket.bound.to_string().c_str(), systemd::listener_name(role).c_str(),
                config.path.c_str());
        } else {
            socket.fd = std::move(frame.fds[0]);
            out.push_back(std::move(socket));
        }
    }
    set_receive_timeout(socket_.get(), 0);
    log_info("takeover: took %zu listening sockets from the running pgplex", out.size());
    return true;
}

void Taker::receive_clients(worker::Shared& shared, uint32_t workers) {
    std::string error;
    if (!io::send_frame(socket_.get(), io::HandoverKind::Ready, "", {}, error)) {
        log_error("takeover: %s", error.c_str());
        return;
    }
    thread_ = std::thread([this, &shared, workers] {
        pthread_setname_np(pthread_self(), "pgplex-takeover");
        // A ring of its own, only to wake the worker a client is for (MSG_RING): its loop
        // then adopts the client at once rather than at its next tick.
        io_uring waker{};
        bool can_wake = io_uring_queue_init(8, &waker, 0) == 0;
        uint64_t count = 0;
        std::string why;
        while (true) {
            io::HandoverFrame frame;
            if (!io::receive_frame(socket_.get(), frame, why)) break;
            if (frame.kind == io::HandoverKind::Done) {
                why.clear();
                break;
            }
            if (frame.kind != io::HandoverKind::Client || frame.fds.size() != 1) {
                why = "an unexpected frame";
                break;
            }
            uint32_t worker = uint32_t(count % workers);
            shared.handed_in[worker].push({std::move(frame.fds[0]), std::move(frame.payload)});
            ++count;
            if (can_wake) wake(waker, shared.ring_fds[worker]);
        }
        if (can_wake) io_uring_queue_exit(&waker);
        if (why.empty())
            log_info("takeover: done; %llu clients handed over", (unsigned long long)count);
        else
            log_warning("takeover: the old pgplex's channel ended (%s) after %llu clients",
                        why.c_str(), (unsigned long long)count);
    });
}

void Taker::stop() {
    if (socket_.valid()) ::shutdown(socket_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
}

}  // namespace pgplex::takeover
