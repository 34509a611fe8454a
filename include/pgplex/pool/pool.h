// A pool's state on one worker: the heads of its idle servers and its waiting clients, both
// intrusive lists through the worker's slot tables (kept by server/server_lease.cc). Only
// the owning worker touches them.
#pragma once

#include <cstdint>
#include <memory>

#include "pgplex/io/buffers.h"
#include "pgplex/pool/notify.h"

namespace pgplex::pool {

struct Pool;

struct PoolLocal {
    uint32_t idle_head = io::nil;  // most recently released first (LIFO keeps caches warm)
    uint32_t idle_count = 0;
    uint32_t waiter_head = io::nil;  // FIFO: first come, first served
    uint32_t waiter_tail = io::nil;
    uint32_t waiter_count = 0;
    uint32_t connecting = 0;             // servers this worker is bringing up for this pool
    std::unique_ptr<PoolListen> listen;  // LISTEN channels of this worker's clients, if any
};

}  // namespace pgplex::pool
