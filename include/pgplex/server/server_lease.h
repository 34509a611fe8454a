// Lending servers to clients (server_lease.cc): linking, the checks and replay around a
// lease, giving servers back, handing them between workers, and the per-worker lists of a
// pool's idle servers and waiting clients.
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

// Lends an idle server to a client: Syncing (when parameters differ) or straight Active.
void link(io::Worker& worker, Server& server, client::Client& client);
// The client is done with the server (it left, or the session ended): reset and reuse it,
// or close it when it is not reusable.
// `reset`: session pooling runs server_reset_query; transaction pooling keeps the
// server's settings, which the next client's sync brings to its own.
void unlink(io::Worker& worker, Server& server, bool reset);
// Transaction pooling: gives the server back when the client's transaction is over.
void release_if_done(io::Worker& worker, Server& server);

// The server is logged in and free: give it to a waiter or put it in the idle list.
void make_available(io::Worker& worker, Server& server);

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

// A pool's idle servers on this worker (most recently released first) and its waiting
// clients (first come, first served), by slot.
void idle_push(io::Worker& worker, uint32_t server);
void idle_remove(io::Worker& worker, uint32_t server);
uint32_t idle_pop(io::Worker& worker, pool::Pool& pool);  // nil when none
void waiter_push(io::Worker& worker, uint32_t client);
void waiter_remove(io::Worker& worker, uint32_t client);
uint32_t waiter_front(io::Worker& worker, const pool::Pool& pool);  // nil when none

}  // namespace pgplex::server
