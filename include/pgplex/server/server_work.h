// The server side's entry points.
#pragma once

#include <cstdint>
#include <string>

#include "pgplex/server/server.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {
struct Client;
}

namespace pgplex::server {

// Opens a new server connection for the pool (the caller has reserved its place).
// Returns false when no slot is free (the reservation is given back).
bool connect(worker::Worker& worker, pool::Pool& pool);
// Opens a one-off connection to send a CancelRequest for the server's backend.
void send_cancel(worker::Worker& worker, Server& target);

void on_connected(worker::Worker& worker, Server& server, int result);
void on_recv(worker::Worker& worker, Server& server, uint32_t buffer, uint32_t size);
void on_recv_end(worker::Worker& worker, Server& server, int result);
// The server's TLS handshake or a record failed: a login fails, a server in use is lost.
void on_tls_failed(worker::Worker& worker, Server& server, const std::string& reason);
void on_sent(worker::Worker& worker, Server& server);
void on_closed(worker::Worker& worker, Server& server);
void on_tick(worker::Worker& worker, Server& server);
void on_shutdown(worker::Worker& worker, Server& server, bool immediate);

// The linked client has new bytes queued for this server.
void on_client_output(worker::Worker& worker, Server& server);

void close(worker::Worker& worker, Server& server, CloseReason reason);

// Tick: opens servers for the pools this worker keeps at min_pool_size (each pool is kept by
// exactly one worker).
void keep_pools_warm(worker::Worker& worker);
}  // namespace pgplex::server
