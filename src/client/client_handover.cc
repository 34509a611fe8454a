// See client_handover.h.
#include "pgplex/client/client_handover.h"

#include <cstring>
#include <memory>
#include <string>

#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_failure.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_route.h"
#include "pgplex/client/client_work.h"
#include "pgplex/client/handover_state.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/server/server.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

static_assert(sizeof(CompactAddress) == std::tuple_size_v<decltype(HandedClient::peer)>);

bool holds_listens(const Session& session) {
    const pool::ClientListen* listen = session.listen.get();
    return listen != nullptr && (!listen->channels.empty() || !listen->pending.empty() ||
                                 !listen->held.empty() || !listen->backlog.empty());
}

bool statements_movable(const Session& session) {
    const pool::ClientStatements* mine = session.statements.get();
    return mine == nullptr ||
           (!mine->unnamed_sent && !mine->unnamed_is_local && !mine->portal_is_local);
}

// The secret its pools log in with came from, and the SCRAM keys it proved (if any).
void take_secret(const Client& client, HandedClient& out) {
    const Session& session = *client.session;
    if (session.routing) {
        out.secret = session.routing->base.password;
        out.scram_keys = session.routing->scram_keys;
        out.scram_client_key = session.routing->scram_client_key;
        out.scram_server_key = session.routing->scram_server_key;
        return;
    }
    if (client.pool == nullptr) return;
    out.secret = client.pool->target.password;
    if (client.pool->scram_keys_ready.load(std::memory_order_acquire)) {
        out.scram_keys = true;
        out.scram_client_key = client.pool->scram_client_key;
        out.scram_server_key = client.pool->scram_server_key;
    }
}

HandedClient take_state(const worker::Worker& worker, const Client& client) {
    const Session& session = *client.session;
    HandedClient out;
    if (client.listener < worker.listener_roles.size()) {
        const worker::ListenerRole& role = worker.listener_roles[client.listener];
        out.cluster = role.cluster;
        out.service = role.service;
        out.local = role.local;
    }
    out.connected = client.connected;
    out.addresses_known = client.addresses_known;
    memcpy(out.peer.data(), &client.peer, sizeof client.peer);
    memcpy(out.local_address.data(), &client.local, sizeof client.local);
    out.peer_uid = client.peer_uid;
    out.pid = session.handed_pid != 0 ? session.handed_pid
                                      : cancel_pid(worker, worker.client_slot(client));
    out.cancel_key = client.cancel_key;
    out.user = session.user;
    out.database = session.database;
    out.mode = uint8_t(session.mode);
    out.startup = pool::settings_of(session.startup);
    out.has_settings = session.settings != nullptr;
    out.settings = pool::settings_of(session.settings);
    out.sql_prepared = session.sql_prepared;
    out.lost = uint8_t(session.lost);
    out.lost_where = session.lost_where;
    take_secret(client, out);
    if (session.kept) out.parses = session.kept->parses;
    if (session.routing) {
        out.intent = uint8_t(session.routing->intent);
        out.ryw_lsn = session.routing->ryw_lsn;
    }
    if (session.statements) {
        for (const auto& [name, statement] : session.statements->names)
            out.statements.emplace_back(name, statement->parse_tail);
        out.has_unnamed = session.statements->unnamed != nullptr;
        if (out.has_unnamed) out.unnamed = session.statements->unnamed->parse_tail;
    }
    return out;
}

int listener_of(const worker::Worker& worker, const HandedClient& handed) {
    for (size_t i = 0; i < worker.listener_roles.size(); ++i) {
        const worker::ListenerRole& role = worker.listener_roles[i];
        if (role.cluster == handed.cluster && role.service == handed.service &&
            role.local == handed.local)
            return int(i);
    }
    return -1;
}

void restore_statements(worker::Worker& worker, Session& session, const HandedClient& handed) {
    if (handed.statements.empty() && !handed.has_unnamed) return;
    session.statements = std::make_unique<pool::ClientStatements>();
    for (const auto& [name, tail] : handed.statements) {
        pool::Statement*& slot = session.statements->names[name];
        if (slot == nullptr) slot = worker.statements.intern(tail);
    }
    if (handed.has_unnamed) session.statements->unnamed = worker.statements.intern(handed.unnamed);
}

}  // namespace

// --- the old pgplex -----------------------------------------------------------------------

namespace {

// Session pooling: the session is between transactions on its server, which owes it nothing,
// and pgplex knows all it holds there (client_failure.h, session_movable): its next server
// can be given it.
bool session_between_transactions(const worker::Worker& worker, const Client& client) {
    const Session& session = *client.session;
    if (client.state != ClientState::Active || client.server == io::nil) return false;
    const server::Server& server = worker.server(client.server);
    return session.mode == config::PoolMode::Session && session_movable(session) &&
           !session.check_settings &&
           (!session.kept ||
            (session.kept->channels.empty() && session.kept->parse_follow_up.empty())) &&
           server.pending_syncs == 0 && !server.unsynced &&
           server.status == proto::TransactionStatus::Idle && server.expected.empty() &&
           server.conn.all_sent() && server.conn.held_in.empty() &&
           server.conn.frame.between_messages();
}

// Transaction pooling: between transactions, holding nothing pgplex cannot give it again.
bool idle_between_transactions(const Client& client) {
    const Session& session = *client.session;
    return client.state == ClientState::Idle && session.mode != config::PoolMode::Session &&
           client.server == io::nil && !session.pinned && !session.pin_suspect &&
           !session.check_settings && session.pending.empty() && !holds_listens(session) &&
           statements_movable(session) && !session.kept;
}

}  // namespace

bool may_hand_over(const worker::Worker& worker, const Client& client) {
    if (!client.session || !worker.shared.handing_over.load(std::memory_order_acquire))
        return false;
    const Session& session = *client.session;
    const io::Conn& conn = client.conn;
    // Only its recv may be in flight: no send, no read of its addresses.
    uint16_t recv_only = conn.recv_armed ? 1 : 0;
    return !session.admin && !conn.tls && !conn.closing && conn.inflight == recv_only &&
           conn.all_sent() && conn.held_in.empty() && conn.frame.between_messages() &&
           !client.addresses_asked && !client.assembly && !client.consuming &&
           !session.discarding && session.rerun.empty() && !session.rerun_recording &&
           !session.admin_wait &&
           (!session.routing ||
            (!session.routing->needs_lsn && !session.routing->awaits_primary)) &&
           (idle_between_transactions(client) || session_between_transactions(worker, client));
}

void hand_over(worker::Worker& worker, Client& client) {
    PGPLEX_ASSERT(may_hand_over(worker, client));
    uint32_t slot = worker.client_slot(client);
    worker::Worker::HandingOver& handing = worker.handing[slot];
    handing.state = std::make_unique<HandedClient>(take_state(worker, client));
    handing.fd.reset();
    release(worker, client);  // a session's server is reset before anyone else has it
    set_state(worker, client, ClientState::Closing);
    client.close_reason = CloseReason::HandedOver;
    worker.request_handover(client.conn, io::Op::ClientInstalled, io::Op::ClientShutdown, slot);
}

void on_handover_input(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    auto found = worker.handing.find(worker.client_slot(client));
    if (found == worker.handing.end()) return;
    found->second.state->input.append(reinterpret_cast<const char*>(data), size);
}

void on_handover_installed(worker::Worker& worker, Client& client, int res) {
    auto found = worker.handing.find(worker.client_slot(client));
    if (found == worker.handing.end()) {
        if (res >= 0) ::close(res);
        return;
    }
    if (res >= 0) {
        found->second.fd.reset(res);
        return;
    }
    log_warning("%s: cannot hand it over (%s): its connection ends here",
                log_context(worker, client).c_str(), strerror(-res));
}

void ship_handover(worker::Worker& worker, Client& client) {
    auto found = worker.handing.find(worker.client_slot(client));
    if (found == worker.handing.end()) return;
    worker::Worker::HandingOver handing = std::move(found->second);
    worker.handing.erase(found);
    if (!handing.fd.valid()) return;
    if (worker.config->log_disconnections)
        log_info("%s: handed over to the pgplex taking over (age=%llds)",
                 log_context(worker, client).c_str(),
                 (long long)((worker.now - client.connected) / 1000));
    worker.shared.handed_out.push({std::move(handing.fd), encode(*handing.state)});
}

// --- the new pgplex -----------------------------------------------------------------------

namespace {

// The connection as the old pgplex had it, in `slot`.
void restore_connection(worker::Worker& worker, Client& client, uint32_t slot, int listener,
                        const HandedClient& handed) {
    uint32_t generation = client.conn.generation + 1;
    client.conn = io::Conn{};
    client.conn.generation = generation;
    client.conn.file = slot;
    client.listener = uint16_t(listener < 0 ? 0 : listener);
    client.connected = handed.connected;
    client.request = client.sent_at = worker.now;
    client.cancelled = client.cancel_wanted = 0;
    client.addresses_known = handed.addresses_known;
    client.addresses_asked = false;
    memcpy(&client.peer, handed.peer.data(), sizeof client.peer);
    memcpy(&client.local, handed.local_address.data(), sizeof client.local);
    client.peer_uid = handed.peer_uid;
    client.cancel_key = handed.cancel_key;
    worker.shared.clients.fetch_add(1, std::memory_order_acq_rel);
    if (worker.shared.moved_cancels &&
        !worker.shared.moved_cancels->insert(
            pool::MovedCancels::key_of(handed.pid, handed.cancel_key),
            uint64_t(worker.index) << 32 | slot))
        log_warning(
            "takeover: too many handed-over clients to keep their cancel keys; client "
            "%u.%u's cancels will do nothing",
            worker.index, slot);
}

// What pgplex keeps of the session between transactions, but its pool and statements.
void restore_session(worker::Worker& worker, Session& session, const HandedClient& handed) {
    session.user = handed.user;
    session.database = handed.database;
    session.mode = config::PoolMode(handed.mode);
    session.startup = worker.settings.intern(handed.startup);
    if (handed.has_settings)
        session.settings = std::make_shared<const std::vector<pool::Setting>>(handed.settings);
    session.sql_prepared = handed.sql_prepared;
    session.lost = TransactionLost(handed.lost);
    session.lost_where = handed.lost_where;
    session.handed_pid = handed.pid;
    if (!handed.parses.empty()) {
        SessionKept& kept = kept_of(session);
        kept.parses = handed.parses;
        for (const auto& [name, body] : kept.parses) kept.parse_bytes += body.size();
    }
}

}  // namespace

bool adopt_handed(worker::Worker& worker, uint32_t slot, std::string_view payload) {
    HandedClient handed;
    if (!decode(payload, handed)) {
        log_warning("takeover: a client's state did not decode; closing its connection");
        return false;
    }
    Client& client = worker.client(slot);
    PGPLEX_ASSERT(client.state == ClientState::Free);
    int listener = listener_of(worker, handed);
    restore_connection(worker, client, slot, listener, handed);
    client.session = std::make_unique<Session>();
    Session& session = *client.session;
    restore_session(worker, session, handed);
    set_state(worker, client, ClientState::Idle);
    worker.arm_recv(client.conn, io::Op::ClientRecv, slot);
    if (listener < 0) {
        fail(worker, client, CloseReason::LoginFailed, proto::Severity::Fatal,
             sqlstate::invalid_catalog_name,
             "the service this connection was made to is not in pgplex's configuration any "
             "more",
             "pgplex was upgraded (--takeover) with a configuration without service \"" +
                 handed.cluster + "." + handed.service + "\"");
        return true;
    }
    Resolved resolved;
    if (!resolve_login(worker, client, "", resolved)) return true;
    if (resolved.admin) {
        fail(worker, client, CloseReason::LoginFailed, proto::Severity::Fatal,
             sqlstate::invalid_catalog_name,
             "database \"" + session.database + "\" is pgplex's management database now");
        return true;
    }
    const config::Config& config = *worker.config;
    session.pin_allowed = resolved.alias ? config.pin_on_session_state_of(*resolved.alias)
                                         : config.pin_on_session_state;
    Login login;
    login.secret = handed.secret;
    login.user_known = true;
    if (handed.scram_keys) login.password_key = handed.scram_client_key;
    if (attach_session(worker, client, login) == Attached::Failed) return true;
    if (session.routing) {
        session.routing->intent = route::Intent(handed.intent);
        session.routing->ryw_lsn = handed.ryw_lsn;
    }
    restore_statements(worker, session, handed);
    if (worker.config->log_connections)
        log_info("%s: adopted from the pgplex it took over (age=%llds)",
                 log_context(worker, client).c_str(),
                 (long long)((worker.now - client.connected) / 1000));
    if (!handed.input.empty()) {
        worker.buffers.append_copy(client.conn.held_in,
                                   reinterpret_cast<const uint8_t*>(handed.input.data()),
                                   uint32_t(handed.input.size()));
        resume(worker, client);
    }
    return true;
}

void forget_handed(worker::Worker& worker, Client& client) {
    if (!client.session || client.session->handed_pid == 0 || !worker.shared.moved_cancels) return;
    worker.shared.moved_cancels->erase(
        pool::MovedCancels::key_of(client.session->handed_pid, client.cancel_key),
        uint64_t(worker.index) << 32 | worker.client_slot(client));
}

uint32_t handed_cancel_pid(worker::Worker& worker, uint32_t pid, uint32_t key) {
    uint64_t found = 0;
    if (!worker.shared.moved_cancels ||
        !worker.shared.moved_cancels->find(pool::MovedCancels::key_of(pid, key), found))
        return pid;
    return limits::cancel_pid(worker.config->gossip.index, uint32_t(found >> 32), uint32_t(found));
}

}  // namespace pgplex::client
