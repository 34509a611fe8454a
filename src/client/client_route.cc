// See client/client_route.h. The router decides; this file turns its decisions into the client's
// states: a pool to wait on, an answer pgplex gives itself, or a wait for a node.
#include "pgplex/client/client_route.h"

#include <strings.h>

#include <algorithm>

#include "pgplex/base/log.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/route/router.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

using proto::FrontendMessage;
using proto::Severity;

constexpr int direct_pool_size = 10'000;

bool is_admin_database(const std::string& name) {
    return name == "pgplex" || name == "pgbouncer";
}

// "db@cluster" → db and cluster; false when the name has no '@'.
bool split_cluster(const std::string& name, std::string& db, std::string& cluster) {
    size_t at = name.rfind('@');
    if (at == std::string::npos || at == 0 || at + 1 == name.size()) return false;
    db = name.substr(0, at);
    cluster = name.substr(at + 1);
    return true;
}

std::shared_ptr<route::Routing> make_routing(const config::Config& config,
                                             const config::Alias* alias,
                                             const std::string& cluster) {
    auto routing = std::make_shared<route::Routing>();
    routing->cluster = cluster;
    if (alias != nullptr) {
        routing->read_your_writes = alias->read_your_writes;
        route::parse_target(alias->default_route, routing->default_route);
    }
    routing->pool_size = alias ? config.pool_size(*alias) : config.default_pool_size;
    routing->reserve_pool_size =
        alias ? config.reserve_pool_size_of(*alias) : config.reserve_pool_size;
    routing->min_pool_size = alias ? config.min_pool_size_of(*alias) : 0;
    return routing;
}

// A service listener: the alias of the name, if any, supplies the login; the service fixes
// the nodes.
void resolve_service(worker::Worker& worker, Session& session, const worker::ListenerRole& role,
                     Resolved& out) {
    const config::Config& config = *worker.config;
    out.alias = config.find_alias(session.database);
    out.routed = true;
    session.routing = make_routing(config, out.alias, role.cluster);
    session.routing->service = role.service;
    const config::Cluster* cluster = config.find_cluster(role.cluster);
    if (cluster == nullptr) return;
    for (const config::Service& service : cluster->services)
        if (service.name == role.service) {
            session.routing->dest = service.dest;
            session.routing->maxqueue = service.maxqueue;
            if (service.dest == config::Dest::Direct)
                session.routing->pool_size =
                    service.maxconn > 0 ? service.maxconn : direct_pool_size;
        }
}

}  // namespace

bool resolve_login(worker::Worker& worker, Client& client, const std::string& intent,
                   Resolved& out) {
    const config::Config& config = *worker.config;
    Session& session = *client.session;
    out = Resolved{};
    if (client.listener < worker.listener_roles.size() &&
        !worker.listener_roles[client.listener].service.empty()) {
        resolve_service(worker, session, worker.listener_roles[client.listener], out);
    } else if (is_admin_database(session.database) &&
               (config.find_alias(session.database) == nullptr ||
                config.find_alias(session.database)->name == "*")) {
        out.admin = true;
        return true;
    } else {
        const config::Alias* alias = config.find_alias(session.database);
        std::string db;
        std::string cluster;
        if (alias != nullptr && alias->name != "*") {
            out.alias = alias;
        } else if (split_cluster(session.database, db, cluster)) {
            if (config.find_cluster(cluster) == nullptr) {
                fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
                     sqlstate::invalid_catalog_name, "cluster \"" + cluster + "\" does not exist",
                     "database \"" + session.database + "\" names it after '@'");
                return false;
            }
            out.alias = config.find_alias(db);
            if (out.alias != nullptr && out.alias->name == "*") out.alias = nullptr;
            session.routing = make_routing(config, out.alias, cluster);
            out.routed = true;
        } else {
            out.alias = alias;
        }
        if (out.alias == nullptr && !out.routed) {
            fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
                 sqlstate::invalid_catalog_name,
                 "database \"" + session.database + "\" does not exist",
                 "pgplex has no [databases] entry for it and no \"*\" fallback");
            return false;
        }
        if (!out.routed && !out.alias->cluster.empty()) {
            session.routing = make_routing(config, out.alias, out.alias->cluster);
            out.routed = true;
        }
    }
    if (session.routing) {
        route::Intent parsed = route::Intent::None;
        if (!route::parse_intent(intent, parsed)) {
            fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
                 sqlstate::invalid_parameter_value,
                 "invalid value for parameter \"pgplex.intent\": \"" + intent + "\"", "",
                 "Use read-only or read-write.");
            return false;
        }
        session.routing->intent = parsed;
        for (const pool::Setting& setting : pool::settings_of(session.startup))
            if (setting.name == "application_name")
                session.routing->application_name = setting.value;
    }
    return true;
}

namespace {

pool::Pool* pool_of(worker::Worker& worker, route::Routing& routing,
                    const cluster::NodeStatus& node) {
    for (auto& [name, pool] : routing.pools)
        if (name == node.name) return pool;
    pool::Target target = routing.base;
    target.endpoint = node.endpoint;
    target.alias = routing.base.alias + "@" + node.name;
    // The node's server TLS settings (node_options over its cluster's over [pgplex]'s).
    const config::Cluster* cluster = worker.config->find_cluster(routing.cluster);
    const config::Node* configured = cluster ? cluster->find_node(node.name) : nullptr;
    target.server_tls = configured ? configured->server_tls : nullptr;
    pool::Pool* pool = worker.shared.pools.find_or_create(target);
    if (pool == nullptr) return nullptr;
    pool->set_size_limit(routing.pool_size);
    pool->set_budget_limits(*worker.config);
    if (routing.scram_keys)
        pool->publish_scram_keys(routing.scram_client_key, routing.scram_server_key);
    pool->reserve_limit.store(routing.reserve_pool_size, std::memory_order_release);
    pool->min_size.store(routing.min_pool_size, std::memory_order_release);
    routing.pools.emplace_back(node.name, pool);
    return pool;
}

// Chooses the node for `request` and points the client at its pool. False: none can take it.
bool place(worker::Worker& worker, Client& client, const route::Request& request) {
    route::Routing& routing = *client.session->routing;
    worker.refresh_topology();
    if (!worker.topology) return false;
    const cluster::ClusterStatus* cluster = worker.topology->find(routing.cluster);
    if (cluster == nullptr) return false;
    routing.pending = request;
    // A request only the primary can take waits while there is none, and while a
    // switchover holds writes (a transaction already on the primary is not stopped: it is
    // routed at its start only).
    routing.awaits_primary = (cluster->primary < 0 || cluster->hold_writes) &&
                             worker.router->needs_primary(routing, request);
    if (routing.awaits_primary) return false;
    int index = worker.router->choose(routing, request, *cluster, *worker.config,
                                      worker.shared.node_loads, worker.now);
    if (index < 0) return false;
    routing.awaits_primary = false;
    const cluster::NodeStatus& node = cluster->nodes[size_t(index)];
    pool::Pool* pool = pool_of(worker, routing, node);
    if (pool == nullptr) return false;
    client.pool = pool;
    routing.node = node.name;
    routing.in_flight = worker.shared.node_loads.find_or_create(routing.cluster, node.name);
    if (routing.in_flight) routing.in_flight->fetch_add(1, std::memory_order_relaxed);
    routing.needs_lsn = routing.service.empty() && routing.read_your_writes && request.may_write &&
                        node.role == cluster::Role::Primary &&
                        client.session->mode != config::PoolMode::Session;
    return true;
}

void wait_for_node(worker::Worker& worker, Client& client, const route::Request& request) {
    route::Routing& routing = *client.session->routing;
    routing.pending = request;
    client.pool = nullptr;
    set_state(worker, client, ClientState::Waiting);
}

void answer(worker::Worker& worker, Client& client, const route::Reading& reading) {
    uint8_t bytes[1024];
    proto::Writer writer(bytes, sizeof bytes);
    if (reading.answer == route::Answer::IntentSet) {
        route::parse_intent(reading.detail, client.session->routing->intent);
        writer.begin(proto::BackendMessage::CommandComplete);
        writer.cstring(reading.reset ? "RESET" : "SET");
        writer.end();
    } else if (reading.answer == route::Answer::BadIntent) {
        proto::write_error(writer, Severity::Error, sqlstate::invalid_parameter_value,
                           "invalid value for parameter \"pgplex.intent\": \"" +
                               reading.detail.substr(0, 200) + "\"",
                           "", "Use read-only, read-write or DEFAULT.");
    } else {
        proto::write_error(writer, Severity::Error, sqlstate::invalid_parameter_value,
                           "invalid --!pgplex comment: " + reading.detail.substr(0, 400), "",
                           "Keys: route=primary|replica|standby|offline|delayed, "
                           "node=HOST:PORT, max_lag=DURATION.");
    }
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    queue(worker, client, writer.data(), writer.size());
}

// The statement text a transaction's first message carries, as far as it is at hand.
std::string_view statement_text(const Client& client, const uint8_t* data, uint32_t size,
                                bool& complete) {
    complete = false;
    if (size < 5) return {};
    uint32_t length = proto::read_be32(data + 1);
    complete = size >= 1 + uint64_t(length);
    const char* body = reinterpret_cast<const char*>(data + 5);
    size_t have = std::min<size_t>(size - 5, length >= 4 ? length - 4 : 0);
    std::string_view rest(body, have);
    auto cstring = [&rest]() {
        size_t end = rest.find('\0');
        std::string_view out = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        return out;
    };
    switch (data[0]) {
        case uint8_t(FrontendMessage::Query):
            return cstring();
        case uint8_t(FrontendMessage::Parse):
            cstring();
            return cstring();
        case uint8_t(FrontendMessage::Bind): {
            cstring();
            std::string_view name = cstring();
            const Session& session = *client.session;
            if (name.empty() || !session.statements) return {};
            auto found = session.statements->names.find(name);
            if (found == session.statements->names.end()) return {};
            std::string_view tail = found->second->parse_tail;
            return tail.substr(0, tail.find('\0'));
        }
        default:
            return {};
    }
}

}  // namespace

void begin_routed(worker::Worker& worker, Client& client) {
    route::Routing& routing = *client.session->routing;
    route::Request request = worker.router->session_request(routing);
    request.may_write = false;  // the login's server runs nothing of the client's
    request.takes_turn = client.session->mode == config::PoolMode::Session || routing.base.direct;
    if (!place(worker, client, request)) {
        wait_for_node(worker, client, request);
        return;
    }
    request_server(worker, client);
}

uint32_t route_transaction(worker::Worker& worker, Client& client, const uint8_t* data,
                           uint32_t size) {
    Session& session = *client.session;
    route::Routing& routing = *session.routing;
    bool complete = false;
    std::string_view text = statement_text(client, data, size, complete);
    route::Reading reading =
        worker.router->read(routing, session.user, session.database, data[0], text);
    // In a block lost with its server (client_failure.h) PostgreSQL answers it, 25P02.
    if (reading.answer != route::Answer::None && data[0] == uint8_t(FrontendMessage::Query) &&
        complete && session.lost != TransactionLost::Aborted) {
        answer(worker, client, reading);
        return 1 + proto::read_be32(data + 1);
    }
    // Every server a client in a lost block gets is first put in an aborted block, where
    // PostgreSQL answers 25P02 and takes the ROLLBACK: any healthy node does, so its ROLLBACK
    // does not wait for a primary through a failover.
    if (session.lost == TransactionLost::Aborted) {
        reading.request = route::Request{};
        reading.request.target = route::Target::Replica;  // the primary among its backups
        reading.request.may_write = false;
    }
    if (!place(worker, client, reading.request)) wait_for_node(worker, client, reading.request);
    return 0;
}

uint32_t write_no_primary(const worker::Worker& worker, const Client& client, uint8_t* bytes,
                          uint32_t capacity) {
    const route::Routing& routing = *client.session->routing;
    const config::Config& config = *worker.config;
    int64_t timeout = config.failover_wait_timeout_of(config.find_cluster(routing.cluster));
    const cluster::ClusterStatus* cluster =
        worker.topology ? worker.topology->find(routing.cluster) : nullptr;
    bool held = cluster != nullptr && cluster->primary >= 0 && cluster->hold_writes;
    bool unconfirmed = cluster != nullptr && cluster->store_unconfirmed;
    const char* why = held          ? "A switchover held writes"
                      : unconfirmed ? "This pgplex appliance could not confirm the cluster's "
                                      "primary with etcd ([dcs]: unreachable, or its lease "
                                      "expired), so it routed no writes"
                                    : "The cluster had no primary (a failover?)";
    proto::Writer writer(bytes, capacity);
    proto::write_error(
        writer, Severity::Error, sqlstate::cannot_connect_now,
        "cluster \"" + routing.cluster + "\" has no primary to take this transaction",
        std::string(why) + " for the " + std::to_string(timeout) +
            " ms of failover_wait_timeout; the statement was not sent to any server.",
        "The connection stays open: run the transaction again. SHOW NODES in the pgplex "
        "database tells which nodes are up and their roles.");
    PGPLEX_ASSERT(writer.ok());
    return writer.size();
}

namespace {

// failover_wait_timeout ran out. A client still logging in has no session to keep: it gets a
// FATAL as any login that cannot get a server. Otherwise its held request is answered 57P03
// unsent (answer_unsent) and the client goes on: a pooler that drops connections on a failover
// is what pgplex replaces, and a request that never reached a server can be refused without
// leaving anything behind.
void give_up_on_primary(worker::Worker& worker, Client& client, int64_t timeout) {
    route::Routing& routing = *client.session->routing;
    ++worker.counters.primary_wait_timeouts;
    log_warning("%s: no primary of cluster %s for %lld ms (failover_wait_timeout)",
                log_context(worker, client).c_str(), routing.cluster.c_str(), (long long)timeout);
    if (client.login) {
        const cluster::ClusterStatus* cluster =
            worker.topology ? worker.topology->find(routing.cluster) : nullptr;
        bool unconfirmed = cluster != nullptr && cluster->store_unconfirmed;
        fail(worker, client, CloseReason::WaitTimeout, Severity::Fatal,
             sqlstate::cannot_connect_now,
             "cluster \"" + routing.cluster + "\" has no primary to take this session",
             "waited " + std::to_string(timeout) + " ms (failover_wait_timeout)" +
                 (unconfirmed ? ": this pgplex appliance cannot confirm the cluster's primary "
                                "with etcd ([dcs]) and routes no writes until it can"
                              : ""),
             "SHOW NODES in the pgplex database tells which nodes are up and their roles.");
        return;
    }
    client.primary_wait_expired = true;
    resume(worker, client);  // answers the request (answer_unsent); Idle when nothing is left
    client.primary_wait_expired = false;
    routing.awaits_primary = false;
    if (client.state != ClientState::Waiting || !client.conn.frame.between_messages() ||
        client.session->discarding)
        return;
    // Requests pipelined behind it are routed afresh, each with a wait of its own.
    lease_ended(worker, client);
    set_state(worker, client, ClientState::Idle);
    resume(worker, client);
}

}  // namespace

void retry_route(worker::Worker& worker, Client& client) {
    route::Routing& routing = *client.session->routing;
    // The rest of a request answered unsent (give_up_on_primary) is dropped up to its Sync.
    if (client.session->discarding) return;
    if (place(worker, client, routing.pending)) {
        request_server(worker, client);
        return;
    }
    const config::Config& config = *worker.config;
    if (routing.awaits_primary) {
        int64_t timeout = config.failover_wait_timeout_of(config.find_cluster(routing.cluster));
        if (timeout > 0 && worker.now - client.since <= timeout) return;
        give_up_on_primary(worker, client, timeout);
        return;
    }
    if (config.query_wait_timeout_ms <= 0 ||
        worker.now - client.since <= config.query_wait_timeout_ms)
        return;
    std::string what = routing.service.empty()
                           ? std::string("route=") + route::to_string(routing.pending.target)
                           : "service " + routing.service;
    fail(worker, client, CloseReason::WaitTimeout, Severity::Fatal, sqlstate::cannot_connect_now,
         "no node of cluster \"" + routing.cluster + "\" can take " + what,
         "waited " + std::to_string(config.query_wait_timeout_ms) + " ms (query_wait_timeout)",
         "SHOW NODES in the pgplex database tells which nodes are up and their roles.");
}

bool reroute_after_failure(worker::Worker& worker, Client& client, const uint8_t* error,
                           uint32_t error_size) {
    if (client.state != ClientState::Waiting || client.pool == nullptr || !client.session ||
        !client.session->routing)
        return false;
    proto::ErrorFields fields;
    if (error != nullptr && proto::parse_error(error, error_size, fields) &&
        !fields.code.starts_with("08") && !fields.code.starts_with("57P"))
        return false;
    server::waiter_remove(worker, worker.client_slot(client));
    lease_ended(worker, client);
    route::Routing& routing = *client.session->routing;
    routing.awaits_primary = worker.router->needs_primary(routing, routing.pending);
    log_info("%s: node %s cannot be reached; waiting for a node of cluster %s",
             log_context(worker, client).c_str(), client.session->routing->node.c_str(),
             client.session->routing->cluster.c_str());
    client.pool = nullptr;  // retried each tick (retry_route)
    return true;
}

bool awaits_primary(const Client& client) {
    return client.state == ClientState::Waiting && client.pool == nullptr && client.session &&
           client.session->routing && client.session->routing->awaits_primary;
}

void lease_ended(worker::Worker&, Client& client) {
    if (!client.session || !client.session->routing) return;
    route::Routing& routing = *client.session->routing;
    if (routing.in_flight) routing.in_flight->fetch_sub(1, std::memory_order_relaxed);
    routing.in_flight = nullptr;
}

}  // namespace pgplex::client
