// auth_query on a server of the lookup pool (client/client_auth_query.h): the query runs
// for a client still logging in, its rows are read, and the server goes back to its pool.
#include "pgplex/client/client_auth_query.h"
#include "pgplex/pool/auth_lookup.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_work.h"

namespace pgplex::server {

void start_lookup(worker::Worker& worker, Server& server, client::Client& client) {
    PGPLEX_ASSERT(client.login && client.login->lookup == client::LookupStep::InLine);
    client.login->lookup = client::LookupStep::Running;
    server.looking_up = true;
    server.lookup_rows = 0;
    server.lookup_row.clear();
    server.pending_error.clear();
    set_state(worker, server, ServerState::Syncing);
    std::vector<uint8_t> bytes =
        pool::lookup_messages(worker.config->auth_query, client.session->user);
    queue(worker, server, bytes.data(), uint32_t(bytes.size()));
    ++server.pending_syncs;  // the Sync
}

void looked_up(worker::Worker& worker, Server& server, const std::vector<uint8_t>& error) {
    server.looking_up = false;
    client::Client& client = worker.client(server.client);
    std::string row = std::move(server.lookup_row);
    server.lookup_row.clear();
    uint32_t rows = server.lookup_rows;
    client.server = io::nil;
    server.client = io::nil;
    if (server.status == proto::TransactionStatus::Idle)
        make_available(worker, server);
    else
        close(worker, server, CloseReason::Unusable);  // a query that left a transaction open
    client::on_looked_up(worker, client, error, row, rows);
}

}  // namespace pgplex::server
