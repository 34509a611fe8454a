// Listen sockets: one per listen address per worker with SO_REUSEPORT, so the kernel
// spreads new connections over the workers. A Unix socket cannot be shared that way: it
// is listened on by worker 0 only.
#pragma once

#include <vector>

#include "pgplex/base/unique_fd.h"
#include "pgplex/config/config.h"

namespace pgplex::io {

// Opens a listening socket for the endpoint. On failure returns an invalid fd and sets reason.
base::UniqueFd listen_on(const config::Endpoint& endpoint, std::string& reason);

}  // namespace pgplex::io
