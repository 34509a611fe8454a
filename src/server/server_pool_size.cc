// How many servers a pool has beyond what its waiting clients ask for at once:
// reserve_pool_size servers past pool_size for clients that waited reserve_pool_timeout
// (PgBouncer's launch_new_connection), and min_pool_size servers kept open with no client
// at all (PgBouncer's janitor, check_pool_size). Kept apart from want_server() so the
// ordinary path stays one compare-and-swap. Every server is still counted in the pool's
// `servers`, taken or given back by compare-and-swap against a limit, so the limits hold
// exactly over all workers; min_pool_size is further kept by one worker per pool, so two
// workers never both open the server that is missing.
#include <algorithm>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client.h"
#include "pgplex/pool/pool.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_listen.h"
#include "pgplex/server/server_work.h"

namespace pgplex::server {

namespace {

// Whether the alias a pool was made for is still in the configuration under its own name
// (not only through the "*" fallback): a pool of an alias that a reload removed is not
// kept warm.
bool alias_configured(const config::Config& config, const std::string& name) {
    if (name == "*") return config.fallback != nullptr;
    const config::Alias* alias = config.find_alias(name);
    return alias != nullptr && alias->name == name;
}

void keep_warm(worker::Worker& worker, pool::Pool& pool) {
    int min = pool.min_size.load(std::memory_order_acquire);
    if (min <= 0 || !alias_configured(*worker.config, pool.target.alias)) return;
    int64_t failed_ms = pool.login_failed_ms.load(std::memory_order_acquire);
    if (failed_ms != 0 && worker.now - failed_ms < limits::min_pool_retry_ms) return;
    int opened = 0;
    while (pool.try_reserve_below(min) && connect(worker, pool)) ++opened;
    if (opened > 0)
        log_info("pool %s/%s: opening %d server connection(s) to keep min_pool_size %d",
                 pool.target.alias.c_str(), pool.target.user.c_str(), opened, min);
}

}  // namespace

bool take_from_reserve(worker::Worker& worker, pool::Pool& pool) {
    int64_t timeout_ms = worker.config->reserve_pool_timeout_ms;
    // As in PgBouncer, a reserve_pool_timeout of 0 disables the reserve.
    if (timeout_ms == 0 || pool.reserve_limit.load(std::memory_order_acquire) <= 0) return false;
    uint32_t head = waiter_front(worker, pool);
    if (head == io::nil) return false;
    int64_t waited_ms = worker.now - worker.client(head).since;
    if (waited_ms < timeout_ms || !pool.try_reserve_extra()) return false;
    log_warning(
        "pool %s/%s: taking connection from reserve_pool: a client waited %lld ms "
        "(%d of pool_size %d + reserve_pool_size %d open)",
        pool.target.alias.c_str(), pool.target.user.c_str(), (long long)waited_ms, pool.servers(),
        pool.size_limit(), pool.reserve_limit.load(std::memory_order_acquire));
    return true;
}

bool leave_above_min_pool_size(pool::Pool& pool) {
    return pool.try_release_above(pool.min_size.load(std::memory_order_acquire));
}

// Also where each pool's listener is looked after: the same worker keeps it.
void keep_pools_warm(worker::Worker& worker) {
    uint32_t workers = uint32_t(worker.shared.ring_fds.size());
    // Pool ids are table slots: a pool may sit at any of them.
    uint32_t count = worker.shared.pools.capacity();
    for (uint32_t id = worker.index; id < count; id += workers) {
        pool::Pool* pool = worker.shared.pools.by_id(id);
        if (pool == nullptr) continue;
        keep_warm(worker, *pool);
        listen_tick(worker, *pool);
    }
}

}  // namespace pgplex::server
