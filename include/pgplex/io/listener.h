// Listen sockets: one per listen address per worker with SO_REUSEPORT, so the kernel
// spreads new connections over the workers. A Unix socket cannot be shared that way: it
// is listened on by worker 0 only. Under socket activation the sockets come from systemd
// instead (src/systemd.cc): adopt() checks one and shapes it as listen_on() would have.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "pgplex/base/unique_fd.h"
#include "pgplex/config/config.h"

namespace pgplex::io {

// Opens a listening socket for the endpoint; a Unix socket gets unix_mode as its
// permissions. On failure returns an invalid fd and sets reason.
base::UniqueFd listen_on(const config::Endpoint& endpoint, mode_t unix_mode, std::string& reason);

// A socket handed over by systemd: where it is bound, as getsockname() says.
struct BoundAddress {
    sockaddr_storage address{};
    socklen_t address_bytes = 0;
    bool is_unix() const { return address.ss_family == AF_UNIX; }
    bool same_as(const config::Endpoint& endpoint) const;
    std::string to_string() const;  // "127.0.0.1:6432", "[::1]:6432" or the socket path
};

// Checks that fd is a listening stream socket (TCP or Unix), marks it close-on-exec and sets
// TCP_NODELAY on a TCP one so accepted clients inherit it. On failure returns false and sets
// reason; fd is left as it was.
bool adopt(int fd, BoundAddress& bound, std::string& reason);

}  // namespace pgplex::io
