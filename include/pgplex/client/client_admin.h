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

}  // namespace pgplex::client
