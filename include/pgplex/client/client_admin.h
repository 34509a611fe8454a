// The management database ("pgplex", or "pgbouncer" for existing tools): a client of an
// admin_users user gets no server; pgplex answers its queries (admin/show.h).
#pragma once

#include <cstdint>

#include "pgplex/client/client.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

// Authenticated: refuses a user not in admin_users, else sends the welcome.
void begin_admin(worker::Worker& worker, Client& client);
// Consumes whole messages at data; returns the bytes used (0: a message is incomplete).
uint32_t admin_consume(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size);

// SHOW CLIENTS gathers every worker's clients: the asking client's worker messages the others
// (io::MessageKind::ClientsWanted); each lists its own into Shared::client_lists and answers
// (ClientsListed); the last answer, or admin_gather_ms without it, lets the client go on.
void list_clients(worker::Worker& worker, uint32_t serial, uint32_t asker_pid);
void clients_listed(worker::Worker& worker, uint32_t serial, uint32_t slot);
// Asking for longer than admin_gather_ms: answers with the workers that did answer.
void admin_on_tick(worker::Worker& worker, Client& client);

// What a client waits for now ("" for nothing) and since when (pgplex.8, SHOW CLIENTS).
const char* wait_reason(const worker::Worker& worker, const Client& client,
                        base::Milliseconds& since);

}  // namespace pgplex::client
