// A pooled client's named statements (pool/prepared.h), renamed on their way to a server.
//
// Parse of a named statement: the client's name is kept, the statement interned, and the
// server gets the Parse under the statement's server name, unless it already holds it
// (pgplex then answers ParseComplete itself, in order). Bind and Describe of a named
// statement carry the server name, after a Parse pgplex slips in when this server has not
// prepared it yet. Close of one forgets the client's name only: other clients may use the
// statement, and the server's least-recently-used bound (max_prepared_statements) decides
// when it goes. Replies to pgplex's own messages are dropped (server_expect.cc).
//
// The unnamed statement keeps its name on the server, but lives, as in PostgreSQL, until the
// client's next unnamed Parse or simple Query, while pgplex may lend another server after
// any Sync: it is kept too, and a Bind or Describe of it after a Sync gets a Parse of it first.
#include <cstring>
#include <string>

#include "pgplex/base/limits.h"
#include "pgplex/client/client_admin.h"
#include "pgplex/client/client_extended.h"
#include "pgplex/client/client_listen.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/session_state.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/server/internal.h"

namespace pgplex::client {

namespace {

using proto::FrontendMessage;
using server::Expect;
using server::Pending;
using server::Reply;

constexpr uint8_t type_of(FrontendMessage type) {
    return static_cast<uint8_t>(type);
}

// The zero-terminated string at body[at, size), or false when no zero ends it there.
bool read_cstring(const uint8_t* body, uint32_t size, uint32_t at, std::string_view& out) {
    if (at >= size) return false;
    const void* zero = memchr(body + at, 0, size - at);
    if (zero == nullptr) return false;
    out = std::string_view(reinterpret_cast<const char*>(body + at),
                           size_t(static_cast<const uint8_t*>(zero) - (body + at)));
    return true;
}

// Whether the message names a statement ('S'), and which.
bool names_statement(const uint8_t* body, uint32_t size, std::string_view& name) {
    return size >= 2 && body[0] == 'S' && read_cstring(body, size, 1, name);
}

void write_header(Outbound& out, uint8_t type, uint32_t length) {
    uint8_t header[5] = {type, uint8_t(length >> 24), uint8_t(length >> 16), uint8_t(length >> 8),
                         uint8_t(length)};
    out.copy(header, sizeof header);
}

void write_name(Outbound& out, const char (&name)[pool::server_name_bytes]) {
    out.copy(reinterpret_cast<const uint8_t*>(name), pool::server_name_bytes);
}

void expect(Outbound& out, Expect what, Reply reply = Reply::Forward, std::string text = {},
            bool listen = false) {
    Pending pending;
    pending.expect = what;
    pending.reply = reply;
    pending.text = std::move(text);
    pending.listen = listen;
    server::expect(out.worker, out.server, std::move(pending));
}

pool::ClientStatements& statements(Client& client) {
    Session& session = *client.session;
    if (!session.statements) session.statements = std::make_unique<pool::ClientStatements>();
    return *session.statements;
}

// A DEALLOCATE of one of the client's statements, or of ALL: the client's names go and
// pgplex answers with `tag`; the servers keep the statements other clients share.
bool takes_deallocate(Outbound& out, std::string_view query, std::string& tag) {
    std::string name;
    bool all = false;
    if (!pool::parse_deallocate(query, name, all)) return false;
    // The server forgets SQL-level PREPAREs with them: it must see this one.
    if (all && !out.client.session->sql_prepared.empty()) return false;
    pool::ClientStatements& mine = statements(out.client);
    if (all) {
        drop_statements(out.worker, out.client);
        tag = "DEALLOCATE ALL";
        return true;
    }
    auto found = mine.names.find(name);
    if (found == mine.names.end()) return false;  // not ours: the server answers
    out.worker.statements.unref(found->second);
    mine.names.erase(found);
    tag = "DEALLOCATE";
    return true;
}

pool::Statement* find(const Client& client, std::string_view name) {
    if (!client.session->statements) return nullptr;
    const auto& names = client.session->statements->names;
    auto found = names.find(name);
    return found == names.end() ? nullptr : found->second;
}

// An error pgplex answers in the server's place, in order; the client's messages up to
// its Sync are then ignored.
void fail_locally(Outbound& out, Expect what, const char* sqlstate, const std::string& message) {
    uint8_t bytes[2048];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, proto::Severity::Error, sqlstate,
                       std::string_view(message).substr(0, 1024));
    PGPLEX_ASSERT(writer.ok());
    Pending pending;
    pending.expect = what;
    pending.reply = Reply::Fail;
    pending.text.assign(reinterpret_cast<const char*>(writer.data()) + 5, writer.size() - 5);
    out.client.session->discarding = true;
    server::expect(out.worker, out.server, std::move(pending));
}

// Closes the server's least recently used statements beyond max_prepared_statements.
void make_room(Outbound& out) {
    pool::ServerStatements& prepared = out.server.prepared;
    size_t max = size_t(out.worker.config->max_prepared_statements);
    pool::StatementId victim;
    while (prepared.eviction_candidate(max, out.server.epoch, victim)) {
        char name[pool::server_name_bytes];
        pool::format_server_name(victim, name);
        write_header(out, type_of(FrontendMessage::Close), 4 + 1 + pool::server_name_bytes);
        const uint8_t statement_kind = 'S';
        out.copy(&statement_kind, 1);
        write_name(out, name);
        prepared.remove(victim);
        expect(out, Expect::Close, Reply::Swallow);
    }
}

// A Parse of the statement under its server name.
void send_parse(Outbound& out, pool::Statement* statement, Reply reply,
                std::string_view client_name) {
    make_room(out);
    const std::string& tail = statement->parse_tail;
    write_header(out, type_of(FrontendMessage::Parse),
                 uint32_t(4 + pool::server_name_bytes + tail.size()));
    write_name(out, statement->server_name);
    out.copy(reinterpret_cast<const uint8_t*>(tail.data()), uint32_t(tail.size()));
    out.server.prepared.add(statement->id, out.server.epoch);
    pool::StatementCache::ref(statement);
    Pending pending;
    pending.expect = Expect::Parse;
    pending.reply = reply;
    pending.prepares = true;
    pending.statement = statement;
    pending.text.assign(client_name);
    server::expect(out.worker, out.server, std::move(pending));
}

// A Bind of a renamed statement outside a transaction, with nothing of the client's
// before it still unanswered but Parses: what follows, to the Sync, is recorded so it can
// be sent again if the server's cached plan went stale (server_expect.cc).
bool begins_replay(Outbound& out) {
    server::Server& server = out.server;
    if (server.status != proto::TransactionStatus::Idle ||
        server.replay_record == server::ReplayRecord::Recording)
        return false;
    for (const Pending& pending : server.expected)
        if (pending.expect != Expect::Parse && pending.expect != Expect::Close) return false;
    server.replay_record = server::ReplayRecord::Recording;
    server.replay.clear();
    return true;
}

// The server must hold the statement before a message that uses it.
void ensure_prepared(Outbound& out, pool::Statement* statement) {
    if (out.server.prepared.contains(statement->id)) {
        out.server.prepared.touch(statement->id, out.server.epoch);
        return;
    }
    send_parse(out, statement, Reply::Swallow, {});
}

// Lets go of the client's unnamed statement: replaced, closed, destroyed by a simple Query,
// or the client is leaving.
void release_unnamed(worker::Worker& worker, pool::ClientStatements& mine) {
    if (mine.unnamed != nullptr) worker.statements.unref(mine.unnamed);
    mine.unnamed = nullptr;
    mine.unnamed_sent = false;
}

// The Pending text of the client's unnamed Parse: a zero, which no statement name holds, and
// the Parse's count, so that when it fails forget_statement undoes only the latest one.
// Five bytes: kept inside the string, not allocated.
std::string unnamed_key(uint32_t parses) {
    std::string key(1 + sizeof parses, '\0');
    memcpy(key.data() + 1, &parses, sizeof parses);
    return key;
}

// The client's own unnamed Parse goes on as it came; its statement is kept to be parsed again
// on the next server, unless the Parse fails (PostgreSQL then leaves no unnamed statement).
void pass_unnamed_parse(Outbound& out, const uint8_t* body, uint32_t size) {
    PGPLEX_ASSERT(size >= 1 && body[0] == 0);
    pool::ClientStatements& mine = statements(out.client);
    release_unnamed(out.worker, mine);
    mine.unnamed = out.worker.statements.intern(
        std::string_view(reinterpret_cast<const char*>(body) + 1, size - 1));
    mine.unnamed_sent = true;
    ++mine.unnamed_parses;
    out.pass(type_of(FrontendMessage::Parse), body, size);
    pool::StatementCache::ref(mine.unnamed);
    Pending pending;
    pending.expect = Expect::Parse;
    pending.statement = mine.unnamed;
    pending.text = unnamed_key(mine.unnamed_parses);
    server::expect(out.worker, out.server, std::move(pending));
}

// The unnamed statement: passed on, unless it is a DEALLOCATE or a LISTEN pgplex answers.
// Either way it replaces the client's previous one.
void on_unnamed_parse(Outbound& out, const uint8_t* body, uint32_t size) {
    std::string_view query;
    std::string tag;
    bool readable = read_cstring(body, size, 1, query);
    ListenParse listen = readable ? on_listen_parse(out, query, tag) : ListenParse::Pass;
    if (listen == ListenParse::Refuse) {
        release_unnamed(out.worker, statements(out.client));
        fail_locally(out, Expect::Parse, sqlstate::feature_not_supported, tag);
        return;
    }
    if (listen == ListenParse::Local ||
        (readable && pool::may_deallocate(query) && takes_deallocate(out, query, tag))) {
        pool::ClientStatements& mine = statements(out.client);
        release_unnamed(out.worker, mine);
        mine.unnamed_is_local = true;
        mine.local_tag = std::move(tag);
        mine.local_listen = listen == ListenParse::Local;
        expect(out, Expect::Parse, Reply::Synthesize);
        return;
    }
    if (out.client.session->statements) out.client.session->statements->unnamed_is_local = false;
    if (readable) {
        pass_unnamed_parse(out, body, size);
        return;
    }
    out.pass(type_of(FrontendMessage::Parse), body, size);  // malformed: the server says so
    expect(out, Expect::Parse);
}

// Before a Bind or Describe of the client's unnamed statement: unless it was parsed since
// the client's last Sync, the server now lent may lack it (another server, or one that ran
// another client's or pgplex's own queries since), so it is parsed again, the reply dropped.
// Its error, if any, reaches the client in the Bind's place; the client keeps the statement
// (its own Parse did succeed, and this one also fails when skipped after an earlier error).
void ensure_unnamed(Outbound& out) {
    pool::ClientStatements* mine = out.client.session->statements.get();
    if (mine == nullptr || mine->unnamed == nullptr || mine->unnamed_sent) return;
    const std::string& tail = mine->unnamed->parse_tail;
    write_header(out, type_of(FrontendMessage::Parse), uint32_t(4 + 1 + tail.size()));
    const uint8_t no_name = 0;
    out.copy(&no_name, 1);
    out.copy(reinterpret_cast<const uint8_t*>(tail.data()), uint32_t(tail.size()));
    mine->unnamed_sent = true;
    expect(out, Expect::Parse, Reply::Swallow);
}

// A Bind of pgplex's own unnamed statement (a DEALLOCATE): answered here, portal and all.
bool bind_locally(Outbound& out, std::string_view portal, std::string_view name) {
    pool::ClientStatements* local = out.client.session->statements.get();
    if (local == nullptr || !name.empty()) return false;
    if (!local->unnamed_is_local) {
        if (local->portal_is_local && portal == local->local_portal) local->portal_is_local = false;
        return false;
    }
    local->portal_is_local = true;
    local->local_portal.assign(portal);
    expect(out, Expect::Bind, Reply::Synthesize);
    return true;
}

// Describe / Close of pgplex's own unnamed statement or portal.
bool is_local(Outbound& out, const uint8_t* body, uint32_t size) {
    pool::ClientStatements* local = out.client.session->statements.get();
    std::string_view name;
    if (local == nullptr || size < 2 || !read_cstring(body, size, 1, name)) return false;
    if (body[0] == 'S') return name.empty() && local->unnamed_is_local;
    return local->portal_is_local && name == local->local_portal;
}

bool describes_locally(Outbound& out, const uint8_t* body, uint32_t size) {
    if (!is_local(out, body, size)) return false;
    expect(out, Expect::Describe, Reply::Synthesize, std::string(1, char(body[0])));
    return true;
}

bool closes_locally(Outbound& out, const uint8_t* body, uint32_t size) {
    if (!is_local(out, body, size)) return false;
    pool::ClientStatements& local = *out.client.session->statements;
    if (body[0] == 'S')
        local.unnamed_is_local = false;
    else
        local.portal_is_local = false;
    expect(out, Expect::Close, Reply::Synthesize);
    return true;
}

}  // namespace

void Outbound::pass(uint8_t type, const uint8_t* body, uint32_t size) {
    auto at = reinterpret_cast<uintptr_t>(body);
    auto start = reinterpret_cast<uintptr_t>(base);
    // Whole in the buffer, header included (a header split across buffers leaves the body
    // fewer than 5 bytes in).
    if (at >= start + 5 && at + size <= start + worker.buffers.buffer_size()) {
        worker.buffers.append(server.conn.out, buffer, uint32_t(at - start - 5), size + 5);
        record(body - 5, size + 5);
        return;
    }
    write_header(*this, type, size + 4);
    copy(body, size);
}

void Outbound::copy(const uint8_t* data, uint32_t size) {
    worker.buffers.append_copy(server.conn.out, data, size);
    record(data, size);
}

void Outbound::record(const uint8_t* data, uint32_t size) {
    if (server.replay_record != server::ReplayRecord::Recording) return;
    if (server.replay.size() + size > limits::replay_bytes_max) {
        server.replay_record = server::ReplayRecord::Off;  // too much to keep: no retry
        server.replay.clear();
        return;
    }
    server.replay.append(reinterpret_cast<const char*>(data), size);
}

bool renames_statements(const worker::Worker& worker, const Client& client) {
    return client.session && client.session->mode != config::PoolMode::Session &&
           worker.config->max_prepared_statements > 0;
}

bool has_statements(const Client& client) {
    if (!client.session || !client.session->statements) return false;
    const pool::ClientStatements& mine = *client.session->statements;
    return !mine.names.empty() || mine.unnamed_is_local || mine.portal_is_local ||
           (mine.unnamed != nullptr && !mine.unnamed_sent);
}

bool has_local_portal(const Client& client) {
    return client.session && client.session->statements &&
           client.session->statements->portal_is_local;
}

void on_parse(Outbound& out, const uint8_t* body, uint32_t size) {
    std::string_view name;
    if (!read_cstring(body, size, 0, name) || name.empty()) {
        on_unnamed_parse(out, body, size);
        return;
    }
    if (find(out.client, name) != nullptr) {
        fail_locally(out, Expect::Parse, sqlstate::duplicate_prepared_statement,
                     "prepared statement \"" + std::string(name) + "\" already exists");
        return;
    }
    std::string_view tail(reinterpret_cast<const char*>(body) + name.size() + 1,
                          size - name.size() - 1);
    std::string refusal;
    if (refuses_prepared_listen(tail.substr(0, tail.find('\0')), refusal)) {
        fail_locally(out, Expect::Parse, sqlstate::feature_not_supported, refusal);
        return;
    }
    pool::Statement* statement = out.worker.statements.intern(tail);
    if (out.worker.router->classifier().facts(tail.substr(0, tail.find('\0'))).touches_session)
        statement->touches_session = true;
    statements(out.client).names.emplace(std::string(name), statement);
    if (!out.server.prepared.contains(statement->id)) {
        send_parse(out, statement, Reply::Forward, name);
        return;
    }
    out.server.prepared.touch(statement->id, out.server.epoch);
    pool::StatementCache::ref(statement);
    Pending pending;
    pending.expect = Expect::Parse;
    pending.reply = Reply::Synthesize;
    pending.statement = statement;
    pending.text.assign(name);
    server::expect(out.worker, out.server, std::move(pending));
}

proto::Fate on_parse_head(Outbound& out, const uint8_t* head, uint32_t head_size,
                          uint32_t body_size) {
    std::string_view name;
    if (read_cstring(head, head_size, 0, name) && !name.empty()) {
        fail_locally(out, Expect::Parse, sqlstate::program_limit_exceeded,
                     "prepared statement \"" + std::string(name) +
                         "\" is too long for pgplex to keep (over " +
                         std::to_string(limits::kept_statement_bytes_max) + " bytes)");
        return proto::Fate::Drop;
    }
    // An unnamed statement too long to keep: the client's previous one is gone all the same.
    if (pool::ClientStatements* mine = out.client.session->statements.get()) {
        mine->unnamed_is_local = false;
        release_unnamed(out.worker, *mine);
    }
    write_header(out, type_of(FrontendMessage::Parse), body_size + 4);
    out.copy(head, head_size);
    expect(out, Expect::Parse);
    return proto::Fate::Forward;
}

proto::Fate on_bind_head(Outbound& out, const uint8_t* head, uint32_t head_size,
                         uint32_t body_size) {
    std::string_view portal, name;
    pool::Statement* statement = nullptr;
    Pending retry_pending;
    if (read_cstring(head, head_size, 0, portal) &&
        read_cstring(head, head_size, uint32_t(portal.size() + 1), name)) {
        if (bind_locally(out, portal, name)) return proto::Fate::Drop;
        if (!name.empty()) statement = find(out.client, name);
        if (statement != nullptr && statement->touches_session)
            out.client.session->check_settings = true;
        if (name.empty()) ensure_unnamed(out);
    }
    if (statement == nullptr) {
        write_header(out, type_of(FrontendMessage::Bind), body_size + 4);
        out.copy(head, head_size);
    } else {
        ensure_prepared(out, statement);
        if (begins_replay(out)) {
            pool::StatementCache::ref(statement);
            Pending pending;
            pending.expect = Expect::Bind;
            pending.retry = true;
            pending.statement = statement;
            retry_pending = std::move(pending);
        }
        uint32_t names_end = uint32_t(portal.size() + 1 + name.size() + 1);
        write_header(out, type_of(FrontendMessage::Bind),
                     uint32_t(4 + body_size - name.size() - 1 + pool::server_name_bytes));
        out.copy(head, uint32_t(portal.size() + 1));
        write_name(out, statement->server_name);
        out.copy(head + names_end, head_size - names_end);
    }
    if (retry_pending.retry)
        server::expect(out.worker, out.server, std::move(retry_pending));
    else
        expect(out, Expect::Bind);
    return proto::Fate::Forward;
}

void on_describe(Outbound& out, const uint8_t* body, uint32_t size) {
    std::string_view name;
    pool::Statement* statement = nullptr;
    if (describes_locally(out, body, size)) return;
    bool of_statement = names_statement(body, size, name);
    if (of_statement && !name.empty()) statement = find(out.client, name);
    if (statement == nullptr) {
        if (of_statement && name.empty()) ensure_unnamed(out);
        out.pass(type_of(FrontendMessage::Describe), body, size);
    } else {
        ensure_prepared(out, statement);
        write_header(out, type_of(FrontendMessage::Describe), 4 + 1 + pool::server_name_bytes);
        out.copy(body, 1);
        write_name(out, statement->server_name);
    }
    expect(out, Expect::Describe);
}

void on_close(Outbound& out, const uint8_t* body, uint32_t size) {
    std::string_view name;
    if (closes_locally(out, body, size)) return;
    bool of_statement = names_statement(body, size, name);
    if (of_statement && !name.empty() && find(out.client, name) != nullptr) {
        auto& names = out.client.session->statements->names;
        auto found = names.find(name);
        out.worker.statements.unref(found->second);
        names.erase(found);
        expect(out, Expect::Close, Reply::Synthesize);
        return;
    }
    // The client's unnamed statement: closed on the server only if it was parsed there since
    // the last Sync, but gone for the client either way, as in PostgreSQL.
    if (of_statement && name.empty() && out.client.session->statements)
        release_unnamed(out.worker, *out.client.session->statements);
    out.pass(type_of(FrontendMessage::Close), body, size);
    expect(out, Expect::Close);
}

bool on_deallocate(Outbound& out, std::string_view query) {
    std::string tag;
    if (!takes_deallocate(out, query, tag)) return false;
    expect(out, Expect::Query, Reply::Synthesize, std::move(tag));
    return true;
}

void refuse_session_state(Outbound& out, bool query, uint8_t kinds) {
    std::string message = pool::describe_session_state(kinds) +
                          " are not supported in transaction pooling: the next transaction may "
                          "run on another server connection";
    uint8_t bytes[2048];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, proto::Severity::Error, sqlstate::feature_not_supported, message, {},
                       "Set pin_on_session_state = true for this database in pgplex, so the "
                       "client keeps its server connection while it holds them, or use "
                       "pool_mode \"session\".");
    PGPLEX_ASSERT(writer.ok());
    Pending pending;
    pending.expect = query ? Expect::Query : Expect::Parse;
    pending.reply = Reply::Fail;
    pending.text.assign(reinterpret_cast<const char*>(writer.data()) + 5, writer.size() - 5);
    if (!query) out.client.session->discarding = true;
    server::expect(out.worker, out.server, std::move(pending));
}

void on_execute(Outbound& out, const uint8_t* body, uint32_t size) {
    std::string_view portal;
    pool::ClientStatements* local = out.client.session->statements.get();
    if (local != nullptr && local->portal_is_local && read_cstring(body, size, 0, portal) &&
        portal == local->local_portal) {
        expect(out, Expect::Execute, Reply::Synthesize, local->local_tag, local->local_listen);
        return;
    }
    out.pass(type_of(FrontendMessage::Execute), body, size);
    expect(out, Expect::Execute);
}

void on_sync(Client& client) {
    if (!client.session->statements) return;
    client.session->statements->portal_is_local = false;
    client.session->statements->unnamed_sent = false;  // the server may go back after it
}

void on_simple_query(worker::Worker& worker, Client& client) {
    if (!client.session || !client.session->statements) return;
    client.session->statements->unnamed_is_local = false;
    release_unnamed(worker, *client.session->statements);
}

// `name` is a named Parse's name, or unnamed_key() for the client's unnamed Parse.
void forget_statement(worker::Worker& worker, Client& client, std::string_view name,
                      const pool::Statement* statement) {
    if (!client.session || !client.session->statements) return;
    pool::ClientStatements& mine = *client.session->statements;
    if (name.size() == 1 + sizeof mine.unnamed_parses && name[0] == '\0') {
        // The client's unnamed Parse failed: forgotten, unless a later one replaced it.
        if (name == unnamed_key(mine.unnamed_parses) && statement == mine.unnamed)
            release_unnamed(worker, mine);
        return;
    }
    auto& names = mine.names;
    auto found = names.find(name);
    if (found == names.end() || found->second != statement) return;
    worker.statements.unref(found->second);
    names.erase(found);
}

void drop_statements(worker::Worker& worker, Client& client) {
    if (!client.session || !client.session->statements) return;
    for (auto& [name, statement] : client.session->statements->names)
        worker.statements.unref(statement);
    client.session->statements->names.clear();
    release_unnamed(worker, *client.session->statements);
}

}  // namespace pgplex::client

namespace pgplex::client {

namespace {

// One message whole in data[at, size): its type and body, else false.
bool next_message(const uint8_t* data, uint32_t size, uint32_t& at, uint8_t& type,
                  const uint8_t*& body, uint32_t& body_size) {
    if (size - at < 5) return false;
    uint32_t length = proto::read_be32(data + at + 1);
    if (length < 4 || length - 4 > size - at - 5) return false;
    type = data[at];
    body = data + at + 5;
    body_size = length - 4;
    at += 1 + length;
    return true;
}

// The validated statement a named Parse prepares, or null.
pool::Statement* known_parse(worker::Worker& worker, const Client& client, const uint8_t* body,
                             uint32_t size, std::string_view& name) {
    if (!read_cstring(body, size, 0, name) || name.empty() || find(client, name) != nullptr)
        return nullptr;
    std::string_view tail(reinterpret_cast<const char*>(body) + name.size() + 1,
                          size - name.size() - 1);
    pool::Statement* statement = worker.statements.find(tail);
    return statement != nullptr && statement->validated ? statement : nullptr;
}

// Whether data starts with named Parses of validated statements and Closes of statements,
// then a Sync; `end` is just past the Sync.
bool answerable(worker::Worker& worker, const Client& client, const uint8_t* data, uint32_t size,
                uint32_t& end) {
    uint32_t at = 0;
    uint8_t type = 0;
    const uint8_t* body = nullptr;
    uint32_t body_size = 0;
    std::string_view name;
    uint32_t count = 0;
    while (next_message(data, size, at, type, body, body_size)) {
        if (type == type_of(FrontendMessage::Sync)) {
            end = at;
            return count > 0;
        }
        bool parse = type == type_of(FrontendMessage::Parse) &&
                     known_parse(worker, client, body, body_size, name) != nullptr;
        bool close = type == type_of(FrontendMessage::Close) && body_size >= 2 && body[0] == 'S' &&
                     read_cstring(body, body_size, 1, name) && !name.empty();
        if (!parse && !close) return false;
        ++count;
    }
    return false;
}

}  // namespace

uint32_t answer_between_transactions(worker::Worker& worker, Client& client, const uint8_t* data,
                                     uint32_t size) {
    // "--!pgplex SHOW POOLS": the console answers, never a server (client_admin.h).
    if (uint32_t used = answer_comment_command(worker, client, data, size); used > 0) return used;
    uint32_t end = 0;
    if (!renames_statements(worker, client) || !answerable(worker, client, data, size, end))
        return 0;
    uint8_t reply[5] = {0, 0, 0, 0, 4};
    uint32_t at = 0;
    uint8_t type = 0;
    const uint8_t* body = nullptr;
    uint32_t body_size = 0;
    while (next_message(data, end, at, type, body, body_size)) {
        std::string_view name;
        if (type == type_of(FrontendMessage::Parse)) {
            pool::Statement* statement = known_parse(worker, client, body, body_size, name);
            pool::StatementCache::ref(statement);
            statements(client).names.emplace(std::string(name), statement);
            reply[0] = uint8_t(proto::BackendMessage::ParseComplete);
        } else if (type == type_of(FrontendMessage::Close)) {
            read_cstring(body, body_size, 1, name);
            forget_statement(worker, client, name, find(client, name));
            reply[0] = uint8_t(proto::BackendMessage::CloseComplete);
        } else {
            break;
        }
        queue(worker, client, reply, sizeof reply);
    }
    const uint8_t ready[6] = {uint8_t(proto::BackendMessage::ReadyForQuery), 0, 0, 0, 5,
                              uint8_t(proto::TransactionStatus::Idle)};
    queue(worker, client, ready, sizeof ready);
    return end;
}

}  // namespace pgplex::client
