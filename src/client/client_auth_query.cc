// auth_query, the client's side (client_auth_query.h). The lookup runs over a pool of its
// own (the alias's node, or a healthy node of a routed client's cluster; auth_dbname;
// auth_user), never lent to clients, so no client's session settings reach it.
#include "pgplex/client/client_auth_query.h"

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/server/server_lease.h"

namespace pgplex::client {

namespace {

using proto::Severity;

// The node a routed client's lookup runs on: its cluster's primary when healthy, else any
// healthy node (each holds the same roles), with the node's server TLS settings. False when
// none is known to be up.
bool cluster_node(const worker::Worker& worker, const std::string& cluster, pool::Target& out) {
    const cluster::ClusterStatus* status =
        worker.topology ? worker.topology->find(cluster) : nullptr;
    if (status == nullptr) return false;
    const cluster::NodeStatus* chosen = nullptr;
    for (const cluster::NodeStatus& node : status->nodes) {
        if (!node.healthy || node.fenced) continue;
        if (chosen == nullptr || node.role == cluster::Role::Primary) chosen = &node;
    }
    if (chosen == nullptr) return false;
    out.endpoint = chosen->endpoint;
    const config::Cluster* configured = worker.config->find_cluster(cluster);
    const config::Node* node = configured ? configured->find_node(chosen->name) : nullptr;
    out.server_tls = node ? node->server_tls : nullptr;
    return true;
}

// The lookup's pool for this client, or null (no auth_user applies, or no node for it).
pool::Pool* lookup_pool(worker::Worker& worker, const Client& client) {
    const config::Config& config = *worker.config;
    const Session& session = *client.session;
    const config::Alias* alias =
        session.routing ? routed_alias(config, session) : config.find_alias(session.database);
    const std::string& auth_user = alias ? config.auth_user_of(*alias) : config.auth_user;
    if (auth_user.empty() || auth_user == session.user) return nullptr;
    pool::Target target;
    target.alias = "auth_query";
    if (session.routing) {
        if (!cluster_node(worker, session.routing->cluster, target)) return nullptr;
    } else {
        if (alias == nullptr || !alias->cluster.empty()) return nullptr;
        target.endpoint = alias->server;
        target.server_tls = alias->server_tls;
    }
    size_t at = session.routing ? session.database.rfind('@') : std::string::npos;
    if (alias != nullptr && !alias->auth_dbname.empty())
        target.dbname = alias->auth_dbname;
    else if (!config.auth_dbname.empty())
        target.dbname = config.auth_dbname;
    else if (alias != nullptr && !alias->dbname.empty())
        target.dbname = alias->dbname;
    else
        target.dbname = session.database.substr(0, at);
    target.user = auth_user;
    if (alias != nullptr && alias->user == auth_user && !alias->password.empty()) {
        target.password = alias->password;
    } else {
        auto found = config.users.find(auth_user);
        if (found != config.users.end()) target.password = found->second;
    }
    // Fixed, so a valid-until time always reads one way (pool/auth_lookup.h).
    target.startup_parameters = {
        {"application_name", "pgplex auth_query"}, {"DateStyle", "ISO"}, {"TimeZone", "UTC"}};
    pool::Pool* pool = worker.shared.pools.find_or_create(target);
    if (pool != nullptr) pool->set_size_limit(limits::auth_lookup_servers_max);
    return pool;
}

// The secret is known (or known to be missing): the password exchange begins. An expired
// VALID UNTIL counts as no secret: the exchange fails as for a wrong password, as on
// PostgreSQL, and only the log says why.
void use_result(worker::Worker& worker, Client& client, const pool::LookupResult& result) {
    Login& login = *client.login;
    login.lookup = LookupStep::Done;
    int64_t now_s = base::wall_ms() / 1000;
    bool expired = result.found && result.valid_until_s <= now_s;
    if (expired)
        log_info("%s: user \"%s\" has an expired password (VALID UNTIL passed)",
                 log_context(worker, client).c_str(), client.session->user.c_str());
    login.user_known = result.found && !expired;
    login.secret = login.user_known ? result.secret : std::string();
    continue_auth(worker, client);
}

std::string error_text(const std::vector<uint8_t>& error) {
    proto::ErrorFields fields;
    if (!proto::parse_error(error.data(), uint32_t(error.size()), fields)) return "(unreadable)";
    return std::string(fields.code) + " " + std::string(fields.message);
}

}  // namespace

bool begin_lookup(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    if (client.session->admin) return false;
    pool::Pool* pool = lookup_pool(worker, client);
    if (pool == nullptr) return false;
    const std::string& user = client.session->user;
    if (config.auth_cache_ttl_ms > 0) {
        const pool::LookupResult* kept =
            worker.auth_cache.find(pool->id, user, worker.now, config.auth_cache_ttl_ms);
        if (kept != nullptr) {
            pool::LookupResult result = *kept;
            use_result(worker, client, result);
            return true;
        }
    }
    ++worker.counters.auth_queries;
    client.pool = pool;
    client.login->lookup = LookupStep::InLine;
    uint32_t idle = server::idle_pop(worker, *pool);
    if (idle != io::nil) {
        server::link(worker, worker.server(idle), client);
        return true;
    }
    server::waiter_push(worker, worker.client_slot(client));
    server::want_server(worker, *pool);
    return true;
}

void on_looked_up(worker::Worker& worker, Client& client, const std::vector<uint8_t>& error,
                  const std::string& row, uint32_t rows) {
    pool::Pool* pool = client.pool;
    client.pool = nullptr;
    const std::string& user = client.session->user;
    if (!error.empty())
        return lookup_failed(worker, client, "the server said " + error_text(error));
    pool::LookupResult result;
    std::string reason;
    if (rows > 1) {
        reason = "auth_query returned " + std::to_string(rows) + " rows for one user";
    } else if (rows == 1) {
        parse_lookup_row(reinterpret_cast<const uint8_t*>(row.data()), uint32_t(row.size()), user,
                         result, reason);
    }
    if (!reason.empty()) return lookup_failed(worker, client, reason);
    if (!result.found)
        log_info("%s: auth_query found no password for user \"%s\"",
                 log_context(worker, client).c_str(), user.c_str());
    if (worker.config->auth_cache_ttl_ms > 0 && pool != nullptr)
        worker.auth_cache.put(pool->id, user, result, worker.now);
    use_result(worker, client, result);
}

void lookup_failed(worker::Worker& worker, Client& client, const std::string& why) {
    ++worker.counters.auth_query_failures;
    if (client.login->lookup == LookupStep::InLine && client.pool != nullptr)
        server::waiter_remove(worker, worker.client_slot(client));
    client.login->lookup = LookupStep::Done;
    client.pool = nullptr;
    log_warning("%s: auth_query for user \"%s\" failed: %s", log_context(worker, client).c_str(),
                client.session->user.c_str(), why.c_str());
    fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
         sqlstate::sqlclient_unable_to_establish_sqlconnection,
         "pgplex could not look up the password of user \"" + client.session->user + "\"",
         "auth_query failed; pgplex's log says why");
}

void lookup_tick(worker::Worker& worker, Client& client) {
    if (client.login->lookup != LookupStep::InLine || client.pool == nullptr) return;
    if (server::waiter_front(worker, *client.pool) == worker.client_slot(client))
        server::want_server(worker, *client.pool);
}

}  // namespace pgplex::client
