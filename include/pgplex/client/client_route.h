// The client's side of routing (route/router.h): what a login resolves to, and the node of
// each transaction of a client of a cluster.
#pragma once

#include <cstdint>
#include <string>

#include "pgplex/client/client.h"
#include "pgplex/pool/pool_table.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

// How a login's database name resolves.
struct Resolved {
    const config::Alias* alias = nullptr;  // null: the name itself, on a cluster
    bool routed = false;                   // the client's pools are chosen by the router
    bool admin = false;                    // the management database
};

// Main listener: an alias (which may name a cluster), else "db@cluster", else the "*"
// fallback, else "pgplex"/"pgbouncer" for admin_users; a service listener: its service.
// Sets session.routing for routed clients, with `intent` (a startup option). Returns false
// after failing the client.
bool resolve_login(worker::Worker& worker, Client& client, const std::string& intent,
                   Resolved& out);
// After authentication (attach_session set routing.base): the routed client's first node,
// then a server from its pool (or a wait for a node that can take it).
void begin_routed(worker::Worker& worker, Client& client);
// A routed client between transactions: the message at data begins one. Returns the bytes
// pgplex answered itself (SET pgplex.intent, a bad hint); 0 when a node was chosen
// (client.pool is set; the caller asks for a server) or none can take it yet (the client
// then waits, in state Waiting with no pool).
uint32_t route_transaction(worker::Worker& worker, Client& client, const uint8_t* data,
                           uint32_t size);
// Tick, for a client waiting for a node: try again, or give up after query_wait_timeout
// (the client is closed), or, waiting for a primary, after failover_wait_timeout (its
// request is answered 57P03 unsent and the client stays).
void retry_route(worker::Worker& worker, Client& client);
// The ErrorResponse (whole message) for a request that waited failover_wait_timeout for a
// primary of the client's cluster. Returns its size.
uint32_t write_no_primary(const worker::Worker& worker, const Client& client, uint8_t* bytes,
                          uint32_t capacity);
// A routed client waiting for a server of a node that could not be reached (or is shutting
// down or starting up, 57P0x): it waits for a node again, so a failover costs it a wait, not
// its connection. False (the caller fails the client) for any other error, such as a
// refused password.
bool reroute_after_failure(worker::Worker& worker, Client& client, const uint8_t* error,
                           uint32_t error_size);
// A routed client waiting for its cluster's primary (SHOW WORKERS primary_waiting).
bool awaits_primary(const Client& client);
// The client's lease of a node ended (transaction done, or the client left).
void lease_ended(worker::Worker& worker, Client& client);

}  // namespace pgplex::client
