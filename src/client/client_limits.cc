// Per-address limits on clients that log in (client_limits.h). Counts live in Shared,
// one slot per hash of the address (addresses that share a slot share its counts: rare, and
// only ever stricter), changed with atomics so every worker sees them.
#include "pgplex/client/client_limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <xxhash.h>

#include <algorithm>
#include <string>

#include "pgplex/base/log.h"
#include "pgplex/client/client_work.h"
#include "pgplex/proto/sqlstate.h"

namespace pgplex::client {

namespace {

// Counts a connection in the slot's current second ({second << 32 | count}); returns the
// count of that second so far, this one included.
uint32_t count_connection(std::atomic<uint64_t>& slot, uint64_t second) {
    uint64_t seen = slot.load(std::memory_order_relaxed);
    while (true) {
        uint64_t next = (seen >> 32) == second
                            ? (seen & ~uint64_t(0xffffffffu)) |
                                  std::min<uint64_t>((seen & 0xffffffffu) + 1, 0xffffffffu)
                            : second << 32 | 1;
        if (slot.compare_exchange_weak(seen, next, std::memory_order_relaxed))
            return uint32_t(next & 0xffffffffu);
    }
}

void refuse(worker::Worker& worker, Client& client, const std::string& message,
            const std::string& hint) {
    ++worker.counters.logins_refused;
    log_warning("%s: refused: %s", log_context(worker, client).c_str(), message.c_str());
    fail(worker, client, CloseReason::TooManyClients, proto::Severity::Fatal,
         sqlstate::too_many_connections, message, {}, hint);
}

}  // namespace

// A Unix-socket client has no address to count: it is never rate-limited by address.
bool address_slot(const Client& client, size_t& slot) {
    if (!client.addresses_known) return false;
    const sockaddr_storage peer = client.peer.full();
    uint64_t hash = 0;
    if (peer.ss_family == AF_INET)
        hash = XXH3_64bits(&reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, 4);
    else if (peer.ss_family == AF_INET6)
        hash = XXH3_64bits(&reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr, 16);
    else
        return false;
    slot = hash % worker::Shared::address_slots;
    return true;
}

bool admit_address(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    size_t slot = 0;
    if (!address_slot(client, slot) || client.state == ClientState::Closing) return true;
    uint64_t second = uint64_t(worker.now / 1000) & 0xffffffffu;
    uint32_t recent = count_connection(worker.shared.connect_rate[slot], second);
    if (config.client_connect_rate_limit > 0 &&
        recent > uint32_t(config.client_connect_rate_limit)) {
        refuse(worker, client, "too many new connections from this address",
               "client_connect_rate_limit = " + std::to_string(config.client_connect_rate_limit) +
                   " a second");
        return false;
    }
    if (!client.login) return true;  // logged in already: nothing in progress to count
    std::atomic<uint32_t>& logins = worker.shared.logins_in_progress[slot];
    uint32_t now_logging_in = logins.fetch_add(1, std::memory_order_acq_rel) + 1;
    client.login->login_slot = &logins;  // given back when the login ends (~Login)
    if (config.client_login_limit > 0 && now_logging_in > uint32_t(config.client_login_limit)) {
        refuse(worker, client, "too many logins in progress from this address",
               "client_login_limit = " + std::to_string(config.client_login_limit));
        return false;
    }
    return true;
}

// PgBouncer counts a client in its database and user when it is given a pool, and refuses
// it there with these words; the count is given back when the session ends (ClientCharge).
bool admit_to_database(worker::Worker& worker, Client& client, const std::string& database) {
    const config::Config& config = *worker.config;
    Session& session = *client.session;
    pool::BudgetTable& budgets = worker.shared.pools.budgets;
    struct Check {
        pool::ClientCharge& charge;
        pool::Budget* budget;
        int limit;
        const char* key;
    } checks[] = {
        {session.database_clients, budgets.find_or_create(pool::BudgetKind::Database, database),
         config.max_db_client_connections_of(database), "max_db_client_connections"},
        {session.user_clients, budgets.find_or_create(pool::BudgetKind::User, session.user),
         config.max_user_client_connections_of(session.user), "max_user_client_connections"},
    };
    for (Check& check : checks) {
        if (check.budget == nullptr) continue;
        int count = check.charge.take(*check.budget);
        if (check.limit <= 0 || count <= check.limit) continue;
        session.database_clients.release();
        session.user_clients.release();
        refuse(worker, client, std::string("no more connections allowed (") + check.key + ")",
               std::string(check.key) + " = " + std::to_string(check.limit) + " for " +
                   (check.budget->kind == pool::BudgetKind::Database ? "database \"" : "user \"") +
                   check.budget->name + "\"");
        return false;
    }
    return true;
}

}  // namespace pgplex::client
