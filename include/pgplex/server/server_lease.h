// Lending servers to clients (server_lease.cc): linking, the checks and replay around a
// lease, giving servers back, handing them between workers, and the per-worker lists of a
// pool's idle servers and waiting clients.
#pragma once

#include <cstdint>

#include "pgplex/server/server.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {
struct Client;
}

namespace pgplex::server {

// Lends an idle server to a client: Syncing (when parameters differ) or straight Active.
void link(worker::Worker& worker, Server& server, client::Client& client);
// The client is done with the server (it left, or the session ended): reset and reuse it,
// or close it when it is not reusable.
// `reset`: session pooling runs server_reset_query; transaction pooling keeps the
// server's settings, which the next client's sync brings to its own.
void unlink(worker::Worker& worker, Server& server, bool reset);
// Transaction pooling: gives the server back when the client's transaction is over.
void release_if_done(worker::Worker& worker, Server& server);

// The server is logged in and free: give it to a waiter or put it in the idle list.
void make_available(worker::Worker& worker, Server& server);

// This worker has clients waiting for the pool: open a server if the pool has room, else
// ask a worker holding an idle one to give its place up.
void want_server(worker::Worker& worker, pool::Pool& pool);
// PAUSE (admin/console.h): no server of the pool is lent while it holds.
bool paused(const worker::Worker& worker, const pool::Pool& pool);
// After RESUME: this worker's waiters of the pool get its idle servers, or ask for more.
void serve_waiters(worker::Worker& worker, pool::Pool& pool);
// Another worker asked for an idle server of the pool (request: requester << 24 | file
// index): hand one over, or say there is none.
void yield_idle(worker::Worker& worker, pool::Pool& pool, uint32_t request);
// The yielding server's recv has stopped: send its file.
void continue_yield(worker::Worker& worker, Server& server);
// Our MSG_RING carrying the file completed.
void on_yield_sent(worker::Worker& worker, Server& server, int result);
// Another worker's server arrived in our table.
void adopt(worker::Worker& worker, Transfer* transfer);
// The worker we asked had none to give.
void handoff_failed(worker::Worker& worker, uint32_t file_index);

// A pool's idle servers on this worker (most recently released first) and its waiting
// clients (first come, first served), by slot.
void idle_push(worker::Worker& worker, uint32_t server);
void idle_remove(worker::Worker& worker, uint32_t server);
uint32_t idle_pop(worker::Worker& worker, pool::Pool& pool);  // nil when none
void waiter_push(worker::Worker& worker, uint32_t client);
void waiter_remove(worker::Worker& worker, uint32_t client);
uint32_t waiter_front(worker::Worker& worker, const pool::Pool& pool);  // nil when none

}  // namespace pgplex::server
