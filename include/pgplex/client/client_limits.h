// Limits on clients that log in (client_limits.cc). Per address: client_connect_rate_limit
// (new connections a second) and client_login_limit (logins in progress at once), checked
// as soon as the client's address is known; auth_failure_limit (client_login.cc) keys its
// counts by the same address slots. Per database and user: max_db_client_connections and
// max_user_client_connections, checked once the client has authenticated.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "pgplex/client/client.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

// The slot of the client's address in Shared's per-address tables; false when its address
// is not known (yet) or is not IP.
bool address_slot(const Client& client, size_t& slot);
// The client's address is known: counts its connection and its login in progress, or
// refuses it (53300, logged, counted in logins_refused) and returns false.
bool admit_address(worker::Worker& worker, Client& client);
// The client has authenticated for `database` (the name its servers count against,
// pool::Target::database): counts it in that database's and its user's clients, or refuses
// it as PgBouncer does (53300 "no more connections allowed (max_db_client_connections)")
// and returns false.
bool admit_to_database(worker::Worker& worker, Client& client, const std::string& database);

}  // namespace pgplex::client
