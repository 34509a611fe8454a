// See listener.h. Accepted sockets inherit TCP_NODELAY from the listener on Linux, which is
// how clients get it without a setsockopt per connection.
#include "pgplex/io/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pgplex::io {

base::UniqueFd listen_on(const config::Endpoint& endpoint, std::string& reason) {
    int family = endpoint.address.ss_family;
    base::UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        reason = std::string("socket: ") + strerror(errno);
        return {};
    }
    int one = 1;
    if (family == AF_UNIX) {
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
        chmod(address->sun_path, 0777);
    }
    if (listen(fd.get(), 4096) < 0) {
        reason = "listen " + endpoint.to_string() + ": " + strerror(errno);
        return {};
    }
    return fd;
}

}  // namespace pgplex::io
