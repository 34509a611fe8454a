// auth_query, the client's side (pool/auth_lookup.h): a user the auth file does not list is
// looked up on the server as auth_user before its password exchange begins.
#pragma once

#include <cstdint>
#include <string>

#include "pgplex/client/client.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

// At login, for a user the auth file does not list: when auth_user applies, the lookup
// starts (a kept result is used at once) and true is returned; the login goes on in
// continue_auth once the secret is in. False: no auth_query for this client.
bool begin_lookup(worker::Worker& worker, Client& client);
// The lookup's server answered: `error` is its ErrorResponse body (empty when none),
// `row` the first DataRow body of `rows`.
void on_looked_up(worker::Worker& worker, Client& client, const std::vector<uint8_t>& error,
                  const std::string& row, uint32_t rows);
// The lookup could not run (its server failed or could not log in): logged with `why`; the
// client hears that pgplex could not check its password.
void lookup_failed(worker::Worker& worker, Client& client, const std::string& why);
// Each tick while in line: the head of the line asks for a server again.
void lookup_tick(worker::Worker& worker, Client& client);

}  // namespace pgplex::client
