// See patroni.h. A GET is connect, send the whole request, read until the first line ends,
// close. HTTP/1.0 with "Connection: close" keeps Patroni's server from holding the socket
// open; the answer's body and headers are never read, so a large one costs nothing.
#include "pgplex/cluster/patroni.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "pgplex/base/assert.h"

namespace pgplex::cluster {

namespace {

// "HTTP/1.1 200 OK" → 200; 0 on anything else.
int parse_status_line(std::string_view line) {
    if (line.substr(0, 7) != "HTTP/1." || line.size() < 12 || line[8] != ' ') return 0;
    int status = 0;
    for (size_t i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9') return 0;
        status = status * 10 + (line[i] - '0');
    }
    return status >= 100 ? status : 0;
}

// Host header text: brackets around an IPv6 literal.
std::string host_header(std::string_view host, uint16_t port) {
    std::string text(host);
    if (text.find(':') != std::string::npos) text = "[" + text + "]";
    return text + ":" + std::to_string(port);
}

}  // namespace

void PatroniProbe::set_state(State next) {
    switch (next) {
        case State::Idle:
            fd_.reset();
            break;
        case State::Connecting:
            PGPLEX_ASSERT(state_ == State::Idle && fd_.valid());
            break;
        case State::Sending:
            PGPLEX_ASSERT((state_ == State::Idle || state_ == State::Connecting) && fd_.valid());
            break;
        case State::Reading:
            PGPLEX_ASSERT(state_ == State::Sending && sent_ == request_.size());
            break;
    }
    state_ = next;
}

void PatroniProbe::fail(std::string_view what, int error_number) {
    status_ = 0;
    error_ = std::string(what);
    if (error_number != 0) error_ += std::string(": ") + std::strerror(error_number);
    set_state(State::Idle);
}

void PatroniProbe::start(const sockaddr_storage& address, uint16_t port, std::string_view host,
                         std::string_view path) {
    PGPLEX_ASSERT(state_ == State::Idle);
    status_ = 0;
    error_.clear();
    line_.clear();
    sent_ = 0;
    sockaddr_storage target = address;
    socklen_t target_bytes = 0;
    if (target.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in&>(target).sin_port = htons(port);
        target_bytes = sizeof(sockaddr_in);
    } else if (target.ss_family == AF_INET6) {
        reinterpret_cast<sockaddr_in6&>(target).sin6_port = htons(port);
        target_bytes = sizeof(sockaddr_in6);
    } else {
        return fail("Patroni is reached over TCP, and this node has no TCP address", 0);
    }
    request_ = "GET " + std::string(path) + " HTTP/1.0\r\nHost: " + host_header(host, port) +
               "\r\nUser-Agent: pgplex\r\nConnection: close\r\n\r\n";
    fd_.reset(::socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_.valid()) return fail("socket", errno);
    if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&target), target_bytes) == 0) {
        set_state(State::Sending);
        return send_some();
    }
    if (errno != EINPROGRESS) return fail("connect", errno);
    set_state(State::Connecting);
}

void PatroniProbe::abandon(std::string_view reason) {
    if (state_ == State::Idle) return;
    fail(reason, 0);
}

short PatroniProbe::events() const {
    switch (state_) {
        case State::Idle:
            return 0;
        case State::Connecting:
        case State::Sending:
            return POLLOUT;
        case State::Reading:
            return POLLIN;
    }
    return 0;
}

void PatroniProbe::advance(short revents) {
    switch (state_) {
        case State::Idle:
            PGPLEX_UNREACHABLE();
        case State::Connecting: {
            int error_number = 0;
            socklen_t bytes = sizeof error_number;
            if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error_number, &bytes) != 0)
                error_number = errno;
            if (error_number != 0) return fail("connect", error_number);
            if ((revents & (POLLERR | POLLHUP)) != 0) return fail("connect", ECONNREFUSED);
            set_state(State::Sending);
            return send_some();
        }
        case State::Sending:
            return send_some();
        case State::Reading:
            return read_some();
    }
}

void PatroniProbe::send_some() {
    ssize_t sent =
        ::send(fd_.get(), request_.data() + sent_, request_.size() - sent_, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return fail("send", errno);
    }
    sent_ += size_t(sent);
    if (sent_ == request_.size()) set_state(State::Reading);
}

void PatroniProbe::read_some() {
    char buffer[patroni_status_line_bytes_max];
    ssize_t got = ::recv(fd_.get(), buffer, sizeof buffer, 0);
    if (got < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return fail("recv", errno);
    }
    if (got == 0) return finish_line();  // closed: whatever came is the whole line
    line_.append(buffer, size_t(got));
    size_t end = line_.find('\n');
    if (end != std::string::npos) {
        line_.resize(end);
        return finish_line();
    }
    if (line_.size() > patroni_status_line_bytes_max) fail("status line too long", 0);
}

void PatroniProbe::finish_line() {
    status_ = parse_status_line(line_);
    if (status_ == 0) return fail(line_.empty() ? "no answer" : "not an HTTP answer", 0);
    error_.clear();
    set_state(State::Idle);
}

}  // namespace pgplex::cluster
