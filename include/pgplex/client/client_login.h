// Internal to client/: the login steps (client_login.cc) and the shared output helpers.
#pragma once

#include <cstdint>

#include "pgplex/client/client.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

// Consumes startup-phase bytes (Startup or Auth state). Returns bytes used.
uint32_t login_consume(worker::Worker& worker, Client& client, uint32_t buffer, const uint8_t* data,
                       uint32_t size);
// The welcome a logged-in client gets once its server is ready: AuthenticationOk,
// ParameterStatus for each server parameter, BackendKeyData, ReadyForQuery.
void send_welcome(worker::Worker& worker, Client& client);
// Each tick while logging in: a wrong password waiting out auth_failure_delay is answered
// when it is over. True while it waits (client_login_timeout does not apply then).
bool login_tick(worker::Worker& worker, Client& client);
// auth_type = "hba": the client's addresses came in while its login waited for them.
void resume_login(worker::Worker& worker, Client& client);
// The password exchange (or hba's method), once the user's secret is known: from the auth
// file, or from auth_query (client_auth_query.h).
void continue_auth(worker::Worker& worker, Client& client);
// The alias of a routed client, found again (a reload may have come since the login began).
const config::Alias* routed_alias(const config::Config& config, const Session& session);
// After authentication, or for a client handed over by an earlier pgplex: the client limits
// and its pool (Pooled: client.pool set), or its routing's base target (Routed). Failed: the
// client was failed with the reason.
enum class Attached : uint8_t { Failed, Routed, Pooled };
Attached attach_session(worker::Worker& worker, Client& client, const Login& login);
// Puts the client in line for a server of its pool.
void request_server(worker::Worker& worker, Client& client);

// Queues pgplex-made bytes to the client.
void queue(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size);

}  // namespace pgplex::client
