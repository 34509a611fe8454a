// Internal to server/: shared between its files (login, work, lease, listen, expect).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/server/server.h"
#include "pgplex/worker/worker.h"

namespace pgplex::server {

// A cancel request's connection (server_login.cc): connected, it sends the CancelRequest
// (after SSLRequest or in direct TLS when the server's TLS settings ask for it); what comes
// back is read by cancel_consume (the answer to SSLRequest; the rest is ignored).
void begin_cancel(worker::Worker& worker, Server& server);
uint32_t cancel_consume(worker::Worker& worker, Server& server, const uint8_t* data, uint32_t size);
// Consumes bytes from a server in the Login state.
uint32_t login_consume(worker::Worker& worker, Server& server, uint32_t buffer, const uint8_t* data,
                       uint32_t size);
// Login failed: waiters of this pool on this worker hear of it when no other server of the
// pool can serve them; the server is closed.
void login_failed(worker::Worker& worker, Server& server, const uint8_t* error, uint32_t error_size,
                  const char* why);
void queue(worker::Worker& worker, Server& server, const uint8_t* data, uint32_t size);
uint8_t* assembly(Server& server, uint32_t size);
// For messages pgplex reads and never forwards: assembled when small enough to, else
// dropped unread.
inline proto::Fate inspect_if_small(uint32_t length) {
    return length <= limits::assembled_message_bytes_max ? proto::Fate::Inspect : proto::Fate::Drop;
}
// A client of the pool on this worker has waited reserve_pool_timeout and the pool is at
// pool_size: takes one of its reserve_pool_size places (logged), or returns false.
bool take_from_reserve(worker::Worker& worker, pool::Pool& pool);
// Closes a server whose place in the pool the caller has already given back.
void close_released(worker::Worker& worker, Server& server, CloseReason reason);
// An idle server timed out: gives its place in the pool back and returns true, unless that
// would leave the pool below min_pool_size.
bool leave_above_min_pool_size(pool::Pool& pool);
// Takes a free slot into `state` for the pool, with a fresh generation and no history.
Server& claim(worker::Worker& worker, uint32_t slot, ServerState state, pool::Pool& pool);
// A connected, non-blocking socket of the pool's endpoint, installed as the slot's fixed
// file; then the connect that opens it (its completion is Op::ServerConnect).
bool open_socket(worker::Worker& worker, Server& server, uint32_t slot, std::string& reason);
void submit_connect(worker::Worker& worker, Server& server);

// Transaction pooling: the client's transaction is over; the server goes back to the pool.
// What settings_check_sql names the rows of SQL-level prepared statements (no GUC name has
// a space).
inline constexpr std::string_view prepared_row = "prepared statement";

// A Query of pgplex's own (its replies read by consume_own, never forwarded).
void send_query(worker::Worker& worker, Server& server, std::string_view sql);
// One message of pgplex's own, `body` as its payload.
void send_message(worker::Worker& worker, Server& server, proto::FrontendMessage type,
                  std::string_view body);
// A Parse of pgplex's own (`body`: the message's body, a client's as it sent it), then a
// Sync; replies read as send_query's.
void send_parse(worker::Worker& worker, Server& server, std::string_view body);

// Lending (server_lease.cc): what the answers to pgplex's own queries lead to.
void give_back(worker::Worker& worker, Server& server, client::Client& client);
void place_freed(worker::Worker& worker, pool::Pool& pool);
void settle_settings(Server& server, client::Session& session);
void synced(worker::Worker& worker, Server& server, const std::vector<uint8_t>& error);
void settings_checked(worker::Worker& worker, Server& server, bool error);
void checked_session_state(worker::Worker& worker, Server& server, bool error);
void read_lsn_done(worker::Worker& worker, Server& server, bool error);
// pgplex's BEGIN and failing statement for a client whose block was lost are answered.
void lost_block_entered(worker::Worker& worker, Server& server);
// auth_query (server_lookup.cc): sent for a client logging in, in place of lending; its
// answer (an ErrorResponse body, or none) goes to the client and the server back to its pool.
void start_lookup(worker::Worker& worker, Server& server, client::Client& client);
void looked_up(worker::Worker& worker, Server& server, const std::vector<uint8_t>& error);

// The reply a message of the linked client (or pgplex's own, for it) will get
// (server_expect.cc). pgplex's own replies that are due are written at once.
void expect(worker::Worker& worker, Server& server, Pending pending);
// A reply's header: whether it goes to the client, and what it settles.
// Inspect: an ErrorResponse to hold for on_held_error.
proto::Fate on_reply(worker::Worker& worker, Server& server, uint8_t type, uint32_t length);
// The ErrorResponse on_reply held back: passed on, or (a stale cached plan) the statement
// is prepared again and the Bind-to-Sync run sent again, once.
void on_held_error(worker::Worker& worker, Server& server, const uint8_t* body, uint32_t size);
// Writes pgplex's own replies that are now due (the server is between replies).
void emit_due(worker::Worker& worker, Server& server);
// Drops every owed reply, undoing unanswered Parses.
void forget_expected(worker::Worker& worker, Server& server);

}  // namespace pgplex::server
