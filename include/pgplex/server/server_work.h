// The server side's entry points.
#pragma once

#include <cstdint>

#include "pgplex/server/server.h"

namespace pgplex::io {
class Worker;
}

namespace pgplex::client {
struct Client;
}

namespace pgplex::server {

// Opens a new server connection for the pool (the caller has reserved its place).
// Returns false when no slot is free (the reservation is given back).
bool connect(io::Worker& worker, pool::Pool& pool);
// Opens a one-off connection to send a CancelRequest for the server's backend.
void send_cancel(io::Worker& worker, const Server& target);

void on_connected(io::Worker& worker, Server& server, int result);
void on_recv(io::Worker& worker, Server& server, uint32_t buffer, uint32_t size);
void on_recv_end(io::Worker& worker, Server& server, int result);
void on_sent(io::Worker& worker, Server& server);
void on_closed(io::Worker& worker, Server& server);
void on_tick(io::Worker& worker, Server& server);
void on_shutdown(io::Worker& worker, Server& server, bool immediate);

// Lends an idle server to a client: Syncing (when parameters differ) or straight Active.
void link(io::Worker& worker, Server& server, client::Client& client);
// The client is done with the server (it left, or the session ended): reset and reuse it,
// or close it when it is not reusable.
// `reset`: session pooling runs server_reset_query; transaction pooling keeps the
// server's settings, which the next client's sync brings to its own.
void unlink(io::Worker& worker, Server& server, bool reset);
// Transaction pooling: gives the server back when the client's transaction is over.
void release_if_done(io::Worker& worker, Server& server);
// The linked client has new bytes queued for this server.
void on_client_output(io::Worker& worker, Server& server);
// The server is logged in and free: give it to a waiter or put it in the idle list.
void make_available(io::Worker& worker, Server& server);

void close(io::Worker& worker, Server& server, CloseReason reason);

// Tick: opens servers for the pools this worker keeps at min_pool_size (each pool is kept by
// exactly one worker).
void keep_pools_warm(io::Worker& worker);
// This worker has clients waiting for the pool: open a server if the pool has room, else
// ask a worker holding an idle one to give its place up.
void want_server(io::Worker& worker, pool::Pool& pool);
// Another worker asked for an idle server of the pool (request: requester << 24 | file
// index): hand one over, or say there is none.
void yield_idle(io::Worker& worker, pool::Pool& pool, uint32_t request);
// The yielding server's recv has stopped: send its file.
void continue_yield(io::Worker& worker, Server& server);
// Our MSG_RING carrying the file completed.
void on_yield_sent(io::Worker& worker, Server& server, int result);
// Another worker's server arrived in our table.
void adopt(io::Worker& worker, Transfer* transfer);
// The worker we asked had none to give.
void handoff_failed(io::Worker& worker, uint32_t file_index);

}  // namespace pgplex::server
