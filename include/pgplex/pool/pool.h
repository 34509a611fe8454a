// A pool's state on one worker: its idle servers and its waiting clients, both intrusive
// lists through the worker's slot tables. Only the owning worker touches them.
#pragma once

#include <cstdint>
#include <memory>

#include "pgplex/io/buffers.h"
#include "pgplex/pool/notify.h"

namespace pgplex::io {
class Worker;
}

namespace pgplex::pool {

struct Pool;

struct PoolLocal {
    uint32_t idle_head = io::nil;  // most recently released first (LIFO keeps caches warm)
    uint32_t idle_count = 0;
    uint32_t waiter_head = io::nil;  // FIFO: first come, first served
    uint32_t waiter_tail = io::nil;
    uint32_t waiter_count = 0;
    uint32_t connecting = 0;  // servers this worker is bringing up for this pool
    std::unique_ptr<PoolListen> listen;  // LISTEN channels of this worker's clients, if any
};

// Idle list.
void idle_push(io::Worker& worker, uint32_t server);
void idle_remove(io::Worker& worker, uint32_t server);
uint32_t idle_pop(io::Worker& worker, Pool& pool);  // nil when none

// Waiter list.
void waiter_push(io::Worker& worker, uint32_t client);
void waiter_remove(io::Worker& worker, uint32_t client);
uint32_t waiter_front(io::Worker& worker, const Pool& pool);  // nil when none

}  // namespace pgplex::pool
