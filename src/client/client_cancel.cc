// A client's CancelRequest (client_cancel.h): sent on to the server that runs the client's
// statement, or, when none does yet, the statement it is for answered 57014 unsent.
#include "pgplex/client/client_cancel.h"

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_failure.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_route.h"
#include "pgplex/client/client_work.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/writer.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_work.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

using proto::FrontendMessage;

constexpr const char* cancelled_text = "canceling statement due to user request";

// The ErrorResponse PostgreSQL sends for a cancelled statement, whole (with_header) or its
// body only.
uint32_t write_cancelled(uint8_t* bytes, uint32_t capacity) {
    proto::Writer writer(bytes, capacity);
    proto::write_error(writer, proto::Severity::Error, sqlstate::query_canceled, cancelled_text);
    PGPLEX_ASSERT(writer.ok());
    return writer.size();
}

// Idle, or failed for a client that was told its transaction block was lost.
void queue_ready(worker::Worker& worker, Client& client) {
    const uint8_t ready[6] = {
        uint8_t(proto::BackendMessage::ReadyForQuery), 0, 0, 0, 5, uint8_t(local_status(client))};
    queue(worker, client, ready, sizeof ready);
}

// Whether a message of this type begins a request PostgreSQL would answer with an error
// when cancelled; which reply pgplex owes in its place.
bool cancellable(uint8_t type, server::Expect& expect) {
    switch (static_cast<FrontendMessage>(type)) {
        case FrontendMessage::Query:
            expect = server::Expect::Query;
            return true;
        case FrontendMessage::Parse:
            expect = server::Expect::Parse;
            return true;
        case FrontendMessage::Bind:
            expect = server::Expect::Bind;
            return true;
        case FrontendMessage::Describe:
            expect = server::Expect::Describe;
            return true;
        case FrontendMessage::Execute:
            expect = server::Expect::Execute;
            return true;
        case FrontendMessage::Close:
            expect = server::Expect::Close;
            return true;
        case FrontendMessage::Sync:
        case FrontendMessage::Flush:
        case FrontendMessage::FunctionCall:
        case FrontendMessage::CopyData:
        case FrontendMessage::CopyDone:
        case FrontendMessage::CopyFail:
        case FrontendMessage::PasswordMessage:
        case FrontendMessage::Terminate:
            break;
    }
    return false;
}

// A client's input without a server: its cancelled request, or the first since its
// transaction block was lost, dropped and answered; the rest held.
struct UnsentHandler {
    worker::Worker& worker;
    Client& client;

    proto::Fate on_header(uint8_t type, uint32_t) {
        Session& session = *client.session;
        if (session.discarding) {
            if (type == uint8_t(FrontendMessage::Terminate)) return proto::Fate::Hold;
            if (type == uint8_t(FrontendMessage::Sync)) {
                session.discarding = false;
                queue_ready(worker, client);
            }
            return proto::Fate::Drop;
        }
        if (session.lost == TransactionLost::Untold) return tell_lost(type);
        bool no_primary = client.primary_wait_expired;
        if (client.cancel_wanted == 0 && !no_primary) return proto::Fate::Hold;
        client.cancel_wanted = 0;
        client.primary_wait_expired = false;
        server::Expect expect;
        if (!cancellable(type, expect)) return proto::Fate::Hold;
        uint8_t bytes[1024];
        queue(worker, client, bytes,
              no_primary ? write_no_primary(worker, client, bytes, sizeof bytes)
                         : write_cancelled(bytes, sizeof bytes));
        if (expect == server::Expect::Query) {
            on_simple_query(worker, client);
            queue_ready(worker, client);
        } else {
            session.discarding = true;  // PostgreSQL skips to the Sync after an error
        }
        return proto::Fate::Drop;
    }
    // The client's transaction block was lost while nothing of it was in flight: this
    // request hears it, as PostgreSQL's reply to it would have.
    proto::Fate tell_lost(uint8_t type) {
        Session& session = *client.session;
        switch (static_cast<FrontendMessage>(type)) {
            case FrontendMessage::Terminate:
                return proto::Fate::Hold;
            case FrontendMessage::Flush:
            case FrontendMessage::CopyData:
            case FrontendMessage::CopyDone:
            case FrontendMessage::CopyFail:
            case FrontendMessage::PasswordMessage:
                return proto::Fate::Drop;  // no reply owed
            case FrontendMessage::Query:
            case FrontendMessage::FunctionCall:
            case FrontendMessage::Sync:
            case FrontendMessage::Parse:
            case FrontendMessage::Bind:
            case FrontendMessage::Describe:
            case FrontendMessage::Execute:
            case FrontendMessage::Close:
                break;
        }
        uint8_t bytes[2048];
        queue(worker, client, bytes, write_transaction_lost(client, bytes, sizeof bytes));
        session.lost = TransactionLost::Aborted;
        session.lost_where.clear();
        server::Expect expect;
        if (cancellable(type, expect) && expect != server::Expect::Query) {
            session.discarding = true;  // PostgreSQL skips to the Sync after an error
            return proto::Fate::Drop;
        }
        if (type == uint8_t(FrontendMessage::Query)) on_simple_query(worker, client);
        queue_ready(worker, client);
        return proto::Fate::Drop;
    }
    void forward(const uint8_t*, uint32_t, bool) {}
    uint8_t* assembly(uint32_t) { return nullptr; }
    proto::Verdict on_message(uint8_t, const uint8_t*, uint32_t) {
        return proto::Verdict::Continue;
    }
    proto::Fate on_head(uint8_t, const uint8_t*, uint32_t, uint32_t) { return proto::Fate::Drop; }
};

}  // namespace

bool waits_for_cancel(const worker::Worker& worker, const Client& client) {
    const server::Server& server = worker.server(client.server);
    return server.cancels_in_flight > 0 && server.expected.empty() && server.pending_syncs == 0 &&
           !server.unsynced && client.conn.frame.between_messages();
}

uint32_t answer_unsent(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    if (client.cancel_wanted == 0 && !client.primary_wait_expired && !client.session->discarding &&
        client.session->lost != TransactionLost::Untold)
        return 0;
    UnsentHandler handler{worker, client};
    proto::FeedResult result =
        proto::feed(client.conn.frame, proto::Direction::Frontend, data, size, handler);
    client.cancel_answered = client.cancel_answered || result.consumed > 0;
    if (result.status == proto::FeedStatus::Violation) {
        fail(worker, client, CloseReason::ProtocolViolation, proto::Severity::Fatal,
             sqlstate::protocol_violation, result.reason);
        return size;
    }
    return result.consumed;
}

bool refuse_cancelled(Outbound& out, uint8_t type) {
    out.client.cancel_wanted = 0;
    server::Expect expect;
    // Answered in the server's place only outside a transaction block, where the failed
    // statement leaves nothing behind on the server either.
    if (out.server.status != proto::TransactionStatus::Idle || !cancellable(type, expect))
        return false;
    uint8_t bytes[256];
    uint32_t size = write_cancelled(bytes, sizeof bytes);
    server::Pending pending;
    pending.expect = expect;
    pending.reply = server::Reply::Fail;
    pending.text.assign(reinterpret_cast<const char*>(bytes) + 5, size - 5);
    if (expect == server::Expect::Query) {
        on_simple_query(out.worker, out.client);
    } else {
        out.server.unsynced = true;
        out.client.session->discarding = true;
    }
    server::expect(out.worker, out.server, std::move(pending));
    return true;
}

void forward_cancel(worker::Worker& worker, uint32_t pid, uint32_t key) {
    const config::Gossip& gossip = worker.config->gossip;
    // A pid no appliance of this site gave: PostgreSQL ignores a cancel for no backend.
    if (!gossip.enabled || limits::pid_appliance(pid) >= gossip.appliances.size()) return;
    if (!worker.shared.cancels.post(uint64_t(pid) << 32 | key))
        log_warning("a cancel request for %s was dropped: too many wait to be forwarded",
                    gossip.appliances[limits::pid_appliance(pid)].c_str());
}

void cancel(worker::Worker& worker, uint32_t pid, uint32_t key) {
    uint32_t slot = limits::pid_slot(pid);
    if (slot >= worker.client_capacity) return;
    Client& client = worker.client(slot);
    // PostgreSQL ignores a cancel with a wrong key without a word; so does pgplex.
    if (client.cancel_key != key || !client.session || client.session->admin) return;
    // In a transaction block the statement must fail on the server too (PostgreSQL's
    // transaction is then aborted): that cancel goes to the server, as before.
    bool runs_nothing = client.state == ClientState::Waiting ||
                        client.state == ClientState::Syncing ||
                        (client.state == ClientState::Active && client.server != io::nil &&
                         waits_for_cancel(worker, client) &&
                         worker.server(client.server).status == proto::TransactionStatus::Idle);
    if (runs_nothing) {
        // Nothing of the client's runs on a server (pgplex's own statements may: a replay,
        // a read of what its last transaction left). A request it sent since is what the
        // cancel is for; without one, PostgreSQL would ignore the cancel, and so does pgplex.
        if (client.conn.held_in.empty()) return;
        client.cancel_wanted = worker.now;
        if (client.state == ClientState::Waiting) resume(worker, client);  // answered now
        return;
    }
    if (client.state != ClientState::Active || client.server == io::nil) return;
    client.cancelled = worker.now;
    server::send_cancel(worker, worker.server(client.server));
}

}  // namespace pgplex::client
