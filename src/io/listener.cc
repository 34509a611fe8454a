// See listener.h. Accepted sockets inherit TCP_NODELAY from the listener on Linux, which is
// how clients get it without a setsockopt per connection.
#include "pgplex/io/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace pgplex::io {

namespace {

// A socket file left by an earlier run is replaced; one that still accepts (a running pgplex,
// or PostgreSQL's own in the same directory) is not.
bool unix_socket_live(const config::Endpoint& endpoint) {
    base::UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    return probe.valid() &&
           connect(probe.get(), reinterpret_cast<const sockaddr*>(&endpoint.address),
                   endpoint.address_bytes) == 0;
}

}  // namespace

base::UniqueFd listen_on(const config::Endpoint& endpoint, mode_t unix_mode, std::string& reason) {
    int family = endpoint.address.ss_family;
    base::UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        reason = std::string("socket: ") + strerror(errno);
        return {};
    }
    int one = 1;
    if (family == AF_UNIX) {
        if (unix_socket_live(endpoint)) {
            reason = "bind " + endpoint.to_string() + ": another process listens on it";
            return {};
        }
        const auto* address = reinterpret_cast<const sockaddr_un*>(&endpoint.address);
        unlink(address->sun_path);
    } else {
        setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&endpoint.address),
             endpoint.address_bytes) < 0) {
        reason = "bind " + endpoint.to_string() + ": " + strerror(errno);
        return {};
    }
    if (family == AF_UNIX) {
        const auto* address = reinterpret_cast<const sockaddr_un*>(&endpoint.address);
        if (chmod(address->sun_path, unix_mode) < 0) {
            reason = "chmod " + endpoint.to_string() + ": " + strerror(errno);
            return {};
        }
    }
    if (listen(fd.get(), 4096) < 0) {
        reason = "listen " + endpoint.to_string() + ": " + strerror(errno);
        return {};
    }
    return fd;
}

bool BoundAddress::same_as(const config::Endpoint& endpoint) const {
    if (address.ss_family != endpoint.address.ss_family) return false;
    if (is_unix()) {
        // Compared by path: the kernel may report a length other than the one bound.
        const auto* a = reinterpret_cast<const sockaddr_un*>(&address);
        const auto* b = reinterpret_cast<const sockaddr_un*>(&endpoint.address);
        return strncmp(a->sun_path, b->sun_path, sizeof a->sun_path) == 0;
    }
    if (address.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&address);
        const auto* b = reinterpret_cast<const sockaddr_in*>(&endpoint.address);
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&address);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&endpoint.address);
    return a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
}

std::string BoundAddress::to_string() const {
    char text[INET6_ADDRSTRLEN] = "";
    if (address.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
        inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
        return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
    }
    if (address.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
        inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
        return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
    }
    if (is_unix()) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&address);
        return std::string(un->sun_path, strnlen(un->sun_path, sizeof un->sun_path));
    }
    return "family " + std::to_string(address.ss_family);
}

bool adopt(int fd, BoundAddress& bound, std::string& reason) {
    int type = 0;
    int listening = 0;
    socklen_t size = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) < 0) {
        reason = std::string("not a socket: ") + strerror(errno);
        return false;
    }
    size = sizeof listening;
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size);
    bound.address_bytes = sizeof bound.address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound.address), &bound.address_bytes) < 0) {
        reason = std::string("getsockname: ") + strerror(errno);
        return false;
    }
    int family = bound.address.ss_family;
    if (type != SOCK_STREAM || listening == 0 ||
        (family != AF_INET && family != AF_INET6 && family != AF_UNIX)) {
        reason = "not a listening TCP or Unix stream socket";
        return false;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int one = 1;
    if (family != AF_UNIX) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return true;
}

}  // namespace pgplex::io
