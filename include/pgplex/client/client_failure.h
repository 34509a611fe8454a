// A transaction-pooled client whose server fails under it keeps its connection
// (client_failure.cc): what it was owed by the dead server is answered in the server's
// place, in order, and it goes on with another server.
#pragma once

#include <cstdint>

#include "pgplex/client/client.h"
#include "pgplex/proto/message.h"
#include "pgplex/server/server.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

// The client's linked server failed (`server` still holds what it owed the client). True:
// the client was answered in its place and is Idle, its held requests go on to another
// server. False: it cannot be (a session-pooled session holding what cannot be moved, a
// message half across either way, a COPY, session state pinned to that server), and the
// caller closes it as before.
bool survive_server_failure(worker::Worker& worker, Client& client, server::Server& server,
                            const uint8_t* error, uint32_t error_size);

// Session pooling: whether pgplex knows all the session holds on its server, so that
// another server can be given it (client_failure.cc).
bool session_movable(const Session& session);

// The ErrorResponse (whole message) that tells the client its transaction block was lost:
// the answer to its first request since, when none was in flight. Returns its size.
uint32_t write_transaction_lost(const Client& client, uint8_t* bytes, uint32_t capacity);

// A request that may be run again on another node if its replica dies (client_failure.cc):
// start_rerun at the start of a lease decides whether the client's bytes are kept,
// record_rerun keeps those it sends, stop_rerun drops them (a byte reached the client, the
// lease ended).
void start_rerun(const worker::Worker& worker, Client& client, const server::Server& server);
void record_rerun(Client& client, const uint8_t* data, uint32_t size);
void stop_rerun(Session& session);

// The status of a ReadyForQuery pgplex writes itself for a client between servers.
proto::TransactionStatus local_status(const Client& client);

}  // namespace pgplex::client
