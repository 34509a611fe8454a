// A transaction-pooled client whose server fails under it (client_failure.h). PostgreSQL
// would close the client's connection with its backend; pgplex keeps it, and tells the
// client what PostgreSQL's own protocol can say, at the point it can say it:
//
// - Outside a transaction block, the request in flight is answered 08006 ("whether it ran
//   is unknown": its implicit transaction committed whole or not at all) and
//   ReadyForQuery idle; requests pipelined behind it on the dead server are answered 08006
//   "did not run": the server runs one request at a time and the one ahead of them never
//   finished. Requests still held in pgplex never reached the dead server: they simply go
//   to the next one, as they would have anyway.
// - Inside a transaction block (the last ReadyForQuery said in a block or failed) the block
//   is lost: the request in flight, or the client's next request when none was, gets one
//   08006, later pipelined ones 25P02, each ReadyForQuery says failed. From then on every
//   server the client gets is first put in an aborted transaction block by pgplex itself
//   (BEGIN, then a statement that fails; server_lease.cc), so PostgreSQL answers 25P02 and
//   takes ROLLBACK, ABORT, COMMIT or END (tag ROLLBACK) exactly as it would have on the
//   dead server, through the simple and the extended protocol, named prepared statements,
//   savepoints and all. A local responder would have to parse every exit statement and
//   reproduce PostgreSQL's message-by-message rules for an aborted block; pgplex would get
//   some of them wrong. The price: a client in a lost block holds a server from its first
//   request after the error until its ROLLBACK, as it would hold its own backend, and its
//   ROLLBACK waits for a server like any request.
//
// pgplex can speak in the server's place only between messages both ways (rows already
// forwarded are fine: PostgreSQL too may fail a query after some of its rows): a message
// half forwarded, one the client was half way through sending, or a COPY under way leave
// the client closed as before; so do a client pinned to its server by session state, or
// whose transaction ran a statement that may have made some (a session advisory lock
// outlives a ROLLBACK: telling the client only that its transaction was lost would hide
// that the lock is gone too).
//
// Session pooling follows the same rules while pgplex knows all its session holds. A
// statement that may change it (client_work.cc's watch_statement: a SET, set_config, a
// PREPARE or DEALLOCATE, a LISTEN, a function, a temporary table, a lock, a text too long to
// read) has the server asked when its transaction ends (server_lease.cc,
// session_check_sql): its settings, its SQL-level and protocol-level prepared statements
// (a named Parse is kept as sent once answered), the channels it listens on, and the count
// of what no server can be given another (temporary tables, advisory locks, WITH HOLD
// cursors). The next server the client gets is given its startup parameters, settings,
// statements and channels before its first request (server_lease.cc, sync_session), and it
// keeps that one to its end. The client is closed, with the reason, as PostgreSQL would
// close it, when the count was not zero (Session::state_on_server), when the server fails
// between the end of such a transaction and its check (state_unread: the client pipelined
// past it), or inside a block after a PREPARE or a lock (which outlive a rollback) whose
// end was never read. Notifications sent while no server listened for it are lost.
//
// Requests run again. One more case needs no answer in the dead server's place at all: the
// request is sent again, to another node of the client's cluster or service, and the client
// sees only a delay. It qualifies only when all of these hold, each for its reason:
// - the client is routed (a service port, an alias over a cluster, db@cluster) in
//   transaction pooling: there is another node that can take the same request, and no
//   session state lived only on the dead server;
// - the server reported in_hot_standby = on (ParameterStatus, PostgreSQL 14 and later) and
//   said nothing else since: it was in recovery, where PostgreSQL refuses every write, DDL,
//   nextval() and two-phase commit, so the request cannot have changed anything durable, and
//   a promotion under it would have reported in_hot_standby = off to the client (below);
// - the last ReadyForQuery said idle and the client was not in a lost block: the request
//   opened no transaction block whose earlier statements would be lost silently;
// - not one byte of the answer (nor any message pgplex itself wrote: a ParseComplete it
//   synthesised, a notice, a ParameterStatus) went to the client during the lease: the
//   client has seen nothing it would see twice, and the statements ran on no server it
//   can tell from the new one;
// - no statement of the lease may have created session state (pin_suspect: a session
//   advisory lock, a temporary table, a WITH HOLD cursor), no COPY is under way, and both
//   directions are between messages (the survivable() checks): a lock taken on the dead
//   server, say, must not silently move;
// - the client's bytes of the lease were at most limits::rerun_bytes_max, kept as it sent
//   them; and the request has not been run again limits::request_reruns_max times already.
// The kept bytes go back to the head of the client's held input, in front of anything it
// sent since, and the client is Idle: it is routed afresh (or waits for a node, as any
// request does) and its named prepared statements are prepared again lazily on the server
// it gets, exactly as for a request that had never left pgplex. What a statement did
// outside the database (a function calling out over the network, say) cannot be undone or
// known; such a function on a replica would do it again.
// Never run again: anything in a transaction block; anything on a primary (it may have
// committed); a reply partly forwarded; COPY; a session that may hold session state.
#include "pgplex/client/client_failure.h"

#include <string>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_extended.h"
#include "pgplex/client/client_listen.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_route.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/route/router.h"
#include "pgplex/server/internal.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

using proto::Severity;
using proto::TransactionStatus;

// What the first answer says; the later pipelined ones say they did not run.
enum class Answer : uint8_t { LostBlock, LostInFlight, InFlightUnknown, NotRun, Aborted };

constexpr const char* aborted_text =
    "current transaction is aborted, commands ignored until end of transaction block";

// The node that failed, as the client's error names it.
std::string where(const Client& client, const server::Server& server) {
    std::string endpoint = server.pool->target.endpoint.to_string();
    const Session& session = *client.session;
    if (session.routing && !session.routing->node.empty())
        return "node \"" + session.routing->node + "\" (" + endpoint + ")";
    return "server " + endpoint;
}

uint32_t write_answer(proto::Writer& writer, Answer answer, const std::string& where) {
    switch (answer) {
        case Answer::LostBlock:
        case Answer::LostInFlight:
            proto::write_error(
                writer, Severity::Error, sqlstate::connection_failure,
                "the server connection of this transaction failed (" + where +
                    "): the transaction is lost",
                answer == Answer::LostBlock
                    ? "Its changes were rolled back with the server. Commands are ignored "
                      "until the end of the transaction block."
                    : "Its changes were rolled back with the server, unless the statement in "
                      "flight was its COMMIT: whether that committed is unknown. Commands "
                      "are ignored until the end of the transaction block.",
                "Send ROLLBACK; the session goes on with another server connection.");
            break;
        case Answer::InFlightUnknown:
            proto::write_error(
                writer, Severity::Error, sqlstate::connection_failure,
                "the server connection failed during the statement (" + where +
                    "): whether it ran is unknown",
                "It ran outside a transaction block: it committed whole or not at all.",
                "The session goes on with another server connection; check the statement's "
                "effect before running it again.");
            break;
        case Answer::NotRun:
            proto::write_error(writer, Severity::Error, sqlstate::connection_failure,
                               "the server connection failed (" + where +
                                   ") before this statement began: it did not run");
            break;
        case Answer::Aborted:
            proto::write_error(writer, Severity::Error, sqlstate::in_failed_sql_transaction,
                               aborted_text);
            break;
    }
    return writer.size();
}

void queue_answer(worker::Worker& worker, Client& client, Answer answer, const std::string& where,
                  bool ready, TransactionStatus status) {
    uint8_t bytes[2048];
    proto::Writer writer(bytes, sizeof bytes);
    write_answer(writer, answer, where);
    if (ready) proto::write_ready_for_query(writer, status);
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, writer.data(), writer.size());
}

bool ends_request(server::Expect expect) {
    return expect == server::Expect::Sync || expect == server::Expect::Query ||
           expect == server::Expect::FunctionCall;
}

// Answers what the dead server owed the client, in order: every request (up to its Query,
// Sync or FunctionCall) one ErrorResponse and its ReadyForQuery; a run of extended messages
// without its Sync one ErrorResponse, and the client's messages up to its Sync are then
// dropped (protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY). pgplex's own messages owe nothing.
// Returns how many errors were written.
uint32_t answer_owed(worker::Worker& worker, Client& client, const server::Server& server,
                     bool in_block, const std::string& where) {
    TransactionStatus status = in_block ? TransactionStatus::Failed : TransactionStatus::Idle;
    uint32_t written = 0;
    auto next = [&]() {
        if (written++ == 0) return in_block ? Answer::LostInFlight : Answer::InFlightUnknown;
        return in_block ? Answer::Aborted : Answer::NotRun;
    };
    bool visible = false;  // the request under way has a message of the client's
    for (const server::Pending& pending : server.expected) {
        if (pending.reply != server::Reply::Swallow) visible = true;
        if (!ends_request(pending.expect)) continue;
        if (visible && pending.reply != server::Reply::Swallow)
            queue_answer(worker, client, next(), where, true, status);
        visible = false;
    }
    if (visible) {
        queue_answer(worker, client, next(), where, false, status);
        client.session->discarding = true;
    }
    return written;
}

// Whether pgplex can answer in the dead server's place (see the top of the file). Not while
// shutting down: clients are being closed anyway.
bool survivable(const worker::Worker& worker, const Client& client, const server::Server& server) {
    const Session* session = client.session.get();
    if (worker.shutting_down() || session == nullptr || session->admin || session->pinned ||
        session->pin_suspect || client.login ||
        (session->mode == config::PoolMode::Session && !session_movable(*session)))
        return false;
    if (!client.conn.frame.between_messages() || !server.conn.frame.between_messages() ||
        server.copying)
        return false;
    if (client.state == ClientState::Active) return true;
    // pgplex's own statements before the client's request went out (the replay of its
    // session, the aborted block): the request is still held, nothing is owed.
    bool replaying = !server.reading_settings && !server.checking && !server.reading_lsn &&
                     !server.looking_up && server.expected.empty();
    return client.state == ClientState::Syncing && replaying;
}

// What the client's session knew of the transaction under way went with the server.
void forget_transaction(Session& session) {
    session.pending.clear();
    session.pending_unsure = false;
    session.check_settings = false;
    session.transaction_failed = false;
    session.transaction_rolled_back = false;
}

// Whether the request under way qualifies to be sent again (see the top of the file).
bool may_rerun(const Client& client, const server::Server& server) {
    const Session& session = *client.session;
    return session.rerun_recording && !session.rerun.empty() &&
           session.reruns < limits::request_reruns_max && client.state == ClientState::Active &&
           server.status == TransactionStatus::Idle && session.lost == TransactionLost::None &&
           !session.discarding && !server.aborting;
}

// Puts the kept bytes back in front of the client's held input.
void hold_again(worker::Worker& worker, Client& client, const std::string& bytes) {
    io::ChunkQueue front;
    worker.buffers.append_copy(front, reinterpret_cast<const uint8_t*>(bytes.data()),
                               uint32_t(bytes.size()));
    io::ChunkQueue& held = client.conn.held_in;
    if (!held.empty()) {
        worker.buffers.chunk(front.tail).next = held.head;
        front.tail = held.tail;
        front.bytes += held.bytes;
    }
    held = front;
}

void rerun(worker::Worker& worker, Client& client, server::Server& server,
           const std::string& place) {
    Session& session = *client.session;
    std::string bytes = std::move(session.rerun);
    stop_rerun(session);
    ++session.reruns;
    server.client = worker.client_slot(client);
    server::forget_expected(worker, server);
    server.client = io::nil;
    client.server = io::nil;
    forget_transaction(session);
    hold_again(worker, client, bytes);
    ++worker.counters.requests_rerun;
    log_info(
        "%s: %s failed before answering; its request (%zu bytes, outside a "
        "transaction block, on a replica) runs again elsewhere (%u of %u)",
        log_context(worker, client).c_str(), place.c_str(), bytes.size(), unsigned(session.reruns),
        unsigned(limits::request_reruns_max));
    lease_ended(worker, client);
    set_state(worker, client, ClientState::Idle);
    resume(worker, client);
}

}  // namespace

bool session_movable(const Session& session) {
    return !session.state_on_server && !session.unmovable && !session.state_unread &&
           session.pending.empty() && !session.pin_suspect;
}

void start_rerun(const worker::Worker&, Client& client, const server::Server& server) {
    if (!client.session) return;
    Session& session = *client.session;
    session.rerun.clear();
    const std::string* standby = server::parameter(server, "in_hot_standby");
    session.rerun_recording = client.login == nullptr && session.routing != nullptr &&
                              session.mode == config::PoolMode::Transaction &&
                              session.lost == TransactionLost::None && !session.pinned &&
                              standby != nullptr && *standby == "on";
}

void record_rerun(Client& client, const uint8_t* data, uint32_t size) {
    Session& session = *client.session;
    if (session.rerun.size() + size > limits::rerun_bytes_max) {
        stop_rerun(session);
        return;
    }
    session.rerun.append(reinterpret_cast<const char*>(data), size);
}

void stop_rerun(Session& session) {
    session.rerun_recording = false;
    session.rerun.clear();
}

TransactionStatus local_status(const Client& client) {
    return client.session && client.session->lost != TransactionLost::None
               ? TransactionStatus::Failed
               : TransactionStatus::Idle;
}

uint32_t write_transaction_lost(const Client& client, uint8_t* bytes, uint32_t capacity) {
    proto::Writer writer(bytes, capacity);
    write_answer(writer, Answer::LostBlock, client.session->lost_where);
    PGPLEX_ASSERT(writer.ok());
    return writer.size();
}

bool survive_server_failure(worker::Worker& worker, Client& client, server::Server& server,
                            const uint8_t* error, uint32_t error_size) {
    if (!survivable(worker, client, server)) return false;
    Session& session = *client.session;
    std::string place = where(client, server);
    if (may_rerun(client, server)) {
        rerun(worker, client, server, place);
        return true;
    }
    session.reruns = 0;  // answered here: the client's next request has its own re-runs
    stop_rerun(session);
    bool in_block =
        server.status != TransactionStatus::Idle || session.lost == TransactionLost::Aborted;
    uint32_t answered = answer_owed(worker, client, server, in_block, place);
    // The replies it owed are settled as failed: its Parses never happened.
    server.client = worker.client_slot(client);
    server::forget_expected(worker, server);
    server.client = io::nil;
    client.server = io::nil;
    forget_transaction(session);
    if (in_block && answered > 0) session.lost = TransactionLost::Aborted;
    if (in_block && answered == 0 && session.lost == TransactionLost::None) {
        session.lost = TransactionLost::Untold;
        session.lost_where = place;
    }
    proto::ErrorFields fields;
    bool said = error != nullptr && proto::parse_error(error, error_size, fields);
    ++worker.counters.clients_kept;
    log_info("%s: %s failed%s%.*s; %s", log_context(worker, client).c_str(), place.c_str(),
             said ? ": " : "", said ? int(fields.message.size()) : 0,
             said ? fields.message.data() : "",
             in_block ? "its transaction is lost, it goes on once it rolls back"
                      : "it goes on with another server");
    lease_ended(worker, client);
    set_state(worker, client, ClientState::Idle);
    flush_notifications(worker, client);
    resume(worker, client);
    return true;
}

}  // namespace pgplex::client
