// See pool.h. Intrusive doubly linked lists through the worker's slot tables.
#include "pgplex/pool/pool.h"

#include "pgplex/base/assert.h"
#include "pgplex/io/worker.h"

namespace pgplex::pool {

void idle_push(io::Worker& worker, uint32_t slot) {
    server::Server& s = worker.server(slot);
    PoolLocal& local = worker.pools[s.pool->id];
    s.idle_prev = io::nil;
    s.idle_next = local.idle_head;
    if (local.idle_head != io::nil) worker.server(local.idle_head).idle_prev = slot;
    local.idle_head = slot;
    if (local.idle_count++ == 0) s.pool->mark_idle_worker(worker.index);
}

void idle_remove(io::Worker& worker, uint32_t slot) {
    server::Server& s = worker.server(slot);
    PoolLocal& local = worker.pools[s.pool->id];
    PGPLEX_ASSERT(local.idle_count > 0);
    if (s.idle_prev != io::nil)
        worker.server(s.idle_prev).idle_next = s.idle_next;
    else
        local.idle_head = s.idle_next;
    if (s.idle_next != io::nil) worker.server(s.idle_next).idle_prev = s.idle_prev;
    s.idle_prev = s.idle_next = io::nil;
    if (--local.idle_count == 0) s.pool->clear_idle_worker(worker.index);
}

uint32_t idle_pop(io::Worker& worker, Pool& pool) {
    uint32_t slot = worker.pools[pool.id].idle_head;
    if (slot != io::nil) idle_remove(worker, slot);
    return slot;
}

void waiter_push(io::Worker& worker, uint32_t slot) {
    client::Client& c = worker.client(slot);
    PoolLocal& local = worker.pools[c.pool->id];
    c.wait_next = io::nil;
    c.wait_prev = local.waiter_tail;
    if (local.waiter_tail != io::nil)
        worker.client(local.waiter_tail).wait_next = slot;
    else
        local.waiter_head = slot;
    local.waiter_tail = slot;
    if (local.waiter_count++ == 0) c.pool->mark_waiter_worker(worker.index);
    c.pool->waiting.fetch_add(1, std::memory_order_acq_rel);
}

void waiter_remove(io::Worker& worker, uint32_t slot) {
    client::Client& c = worker.client(slot);
    PoolLocal& local = worker.pools[c.pool->id];
    PGPLEX_ASSERT(local.waiter_count > 0);
    if (c.wait_prev != io::nil)
        worker.client(c.wait_prev).wait_next = c.wait_next;
    else
        local.waiter_head = c.wait_next;
    if (c.wait_next != io::nil)
        worker.client(c.wait_next).wait_prev = c.wait_prev;
    else
        local.waiter_tail = c.wait_prev;
    c.wait_prev = c.wait_next = io::nil;
    if (--local.waiter_count == 0) c.pool->clear_waiter_worker(worker.index);
    c.pool->waiting.fetch_sub(1, std::memory_order_acq_rel);
}

uint32_t waiter_front(io::Worker& worker, const Pool& pool) {
    return worker.pools[pool.id].waiter_head;
}

}  // namespace pgplex::pool
