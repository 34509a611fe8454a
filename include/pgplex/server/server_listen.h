// The listener connection of a pool and the messages between workers about LISTEN
// channels (pool/notify.h, server_listen.cc).
#pragma once

#include <cstdint>
#include <string_view>

#include "pgplex/pool/notify.h"
#include "pgplex/server/server.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::server {

// This worker's per-pool LISTEN state, made on first use.
pool::PoolListen& pool_listen(worker::Worker& worker, uint32_t pool_id);
// The worker that keeps the pool's listener: the one that keeps it warm (pool id modulo
// the worker count).
uint32_t listen_home(const worker::Worker& worker, const pool::Pool& pool);

// This worker's clients now want (or no longer want) the channel: the pool's hub hears of
// it, at once when it is this worker. `seq` orders this worker's messages about it.
void want_channel(worker::Worker& worker, pool::Pool& pool, std::string_view channel, bool wanted,
                  uint64_t seq);
// A message from another worker (Op::Listen); it is freed here.
void on_listen_message(worker::Worker& worker, pool::ListenMessage* message);
// Our MSG_RING carrying a message completed (Op::ListenSent).
void on_listen_sent(worker::Worker& worker, pool::ListenMessage* message, int result);

// The listener connection's steps, called where every server's are.
void listener_logged_in(worker::Worker& worker, Server& server);
void listener_login_failed(worker::Worker& worker, Server& server, const uint8_t* error,
                           uint32_t error_size, const char* why);
uint32_t listener_consume(worker::Worker& worker, Server& server, const uint8_t* data,
                          uint32_t size);
void listener_closed(worker::Worker& worker, Server& server);
void listener_shutdown(worker::Worker& worker, Server& server);
// Tick on the pool's home worker: reopens a lost listener after its backoff, closes one no
// client needs after server_idle_timeout.
void listen_tick(worker::Worker& worker, pool::Pool& pool);

}  // namespace pgplex::server
