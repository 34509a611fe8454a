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

// A client of a database, between transactions: a Query that is a console command in a
// comment ("--!pgplex SHOW POOLS", admin/console.h comment_command) is answered as the
// management database would answer it, for a user in admin_users (stats_users: SHOW only),
// and refused with 42501 for others. Returns the bytes used; 0: not such a Query (or not
// whole in data), for the data path to go on with.
uint32_t answer_comment_command(worker::Worker& worker, Client& client, const uint8_t* data,
                                uint32_t size);

// SHOW CLIENTS gathers every worker's clients: the asking client's worker messages the others
// (io::MessageKind::ClientsWanted); each lists its own into Shared::client_lists and answers
// (ClientsListed); the last answer, or admin_gather_ms without it, lets the client go on.
void list_clients(worker::Worker& worker, uint32_t serial, uint32_t asker_pid);
void clients_listed(worker::Worker& worker, uint32_t serial, uint32_t slot);
// Asking for longer than admin_gather_ms: answers with the workers that did answer.
void admin_on_tick(worker::Worker& worker, Client& client);
// KILL_CLIENT (admin/console.h): closes this worker's client of that id, if it is still there.
void kill(worker::Worker& worker, uint32_t id);
// KILL [db]: closes this worker's clients of the database ("" every one but the management
// database's) with PgBouncer's "database removed", and the idle servers of its pools. A
// server lent goes back to its pool (or closes, mid-transaction) as its client closes.
// Clients accepted after at_ms (the command's time) are spared: they wait for RESUME.
void kill_database(worker::Worker& worker, const std::string& database, int64_t at_ms);

// What a client waits for now ("" for nothing) and since when (pgplex.8, SHOW CLIENTS).
const char* wait_reason(const worker::Worker& worker, const Client& client,
                        base::Milliseconds& since);

}  // namespace pgplex::client
