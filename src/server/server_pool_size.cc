// How many servers a pool has beyond what its waiting clients ask for at once:
// reserve_pool_size servers past pool_size for clients that waited reserve_pool_timeout
// (PgBouncer's launch_new_connection), kept apart from want_server() so the ordinary path
// stays one compare-and-swap. Every server is still counted in the pool's `servers`, taken
// by compare-and-swap against a limit, so the limits hold exactly over all workers.
#include "pgplex/base/log.h"
#include "pgplex/client/client.h"
#include "pgplex/pool/pool.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/server/internal.h"

namespace pgplex::server {

bool take_from_reserve(io::Worker& worker, pool::Pool& pool) {
    int64_t timeout_ms = worker.config->reserve_pool_timeout_ms;
    // As in PgBouncer, a reserve_pool_timeout of 0 disables the reserve.
    if (timeout_ms == 0 || pool.reserve_limit.load(std::memory_order_acquire) <= 0) return false;
    uint32_t head = pool::waiter_front(worker, pool);
    if (head == io::nil) return false;
    int64_t waited_ms = worker.now - worker.client(head).since;
    if (waited_ms < timeout_ms || !pool.try_reserve_extra()) return false;
    log_warning(
        "pool %s/%s: taking connection from reserve_pool: a client waited %lld ms "
        "(%d of pool_size %d + reserve_pool_size %d open)",
        pool.target.alias.c_str(), pool.target.user.c_str(), (long long)waited_ms,
        pool.servers.load(std::memory_order_acquire),
        pool.size_limit.load(std::memory_order_acquire),
        pool.reserve_limit.load(std::memory_order_acquire));
    return true;
}

}  // namespace pgplex::server
