// Named prepared statements in transaction pooling.
//
// A client's Parse names a statement for its own session; the server that runs it may be
// any of the pool's, and other clients prepare the same text under names of their own.
// pgplex therefore interns each distinct statement (query text and parameter types) once
// per worker, gives it a server-side name derived from a 128-bit xxHash of those bytes
// ("_pgplex_" and 32 hex digits, the same on every worker and every server), and keeps:
//   - per client, its names → statements (ClientStatements);
//   - per server, which statements it has prepared, in least-recently-used order and
//     bounded by max_prepared_statements (ServerStatements).
// A statement is prepared on a server only when a client bound or described it there
// (client/client_extended.cc rewrites the messages; server/server_expect.cc keeps the
// replies in order).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgplex::pool {

struct StatementId {
    uint64_t low = 0;
    uint64_t high = 0;
    bool operator==(const StatementId&) const = default;
};

struct StatementIdHash {
    size_t operator()(const StatementId& id) const { return size_t(id.low); }
};

// "_pgplex_" and the id in hex: 40 characters and a terminating zero.
inline constexpr uint32_t server_name_bytes = 41;
void format_server_name(const StatementId& id, char (&out)[server_name_bytes]);

struct Statement {
    StatementId id;
    char server_name[server_name_bytes] = {};
    // The Parse body after the statement name: query text, its zero, the parameter count
    // and type oids, exactly as the client sent them.
    std::string parse_tail;
    uint32_t refs = 0;  // client names and replies in flight that point here
    // A server accepted it once: a client's Parse of it between transactions is answered
    // without taking a server (any error would show at its first Bind).
    bool validated = false;
    // Its text may change the session's settings (route::StatementFacts): each Bind of it
    // makes pgplex check them when the transaction ends, not only the Parse.
    bool touches_session = false;
};

// Every statement the clients of one worker prepared. Only that worker touches it.
class StatementCache {
  public:
    // The statement for these bytes, created if new, with one more reference.
    Statement* intern(std::string_view parse_tail);
    // The statement for these bytes if it exists (no reference taken), else null.
    Statement* find(std::string_view parse_tail) const;
    static void ref(Statement* statement) { ++statement->refs; }
    void unref(Statement* statement);
    size_t size() const { return statements_.size(); }

  private:
    std::unordered_map<StatementId, std::unique_ptr<Statement>, StatementIdHash> statements_;
};

struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view name) const { return std::hash<std::string_view>{}(name); }
};

// One client's named statements (the unnamed statement is never renamed).
struct ClientStatements {
    std::unordered_map<std::string, Statement*, NameHash, std::equal_to<>> names;
    // The client's unnamed statement, kept (with a reference) so it can be parsed again on
    // the next server: PostgreSQL keeps it until the next unnamed Parse or simple Query, while
    // pgplex may lend another server after any Sync. Null: none, or one too long to keep.
    Statement* unnamed = nullptr;
    uint32_t unnamed_parses = 0;  // counts the client's unnamed Parses: whose reply is whose
    // The server the client holds has it: parsed there since the client's last Sync (no
    // server is given back, and pgplex sends none of its own queries, before a Sync).
    bool unnamed_sent = false;
    // A DEALLOCATE of the client's own statements sent through the extended protocol (as
    // psycopg does) is answered by pgplex: its unnamed statement, and the portal bound to
    // it, then exist only in pgplex.
    bool unnamed_is_local = false;
    bool portal_is_local = false;
    std::string local_portal;
    std::string local_tag;      // "DEALLOCATE" or "DEALLOCATE ALL", or a LISTEN's changes
    bool local_listen = false;  // it is a LISTEN/UNLISTEN (client_listen.cc), not a DEALLOCATE
};

// The statements one server has prepared under their server names.
class ServerStatements {
  public:
    bool contains(const StatementId& id) const { return index_.count(id) != 0; }
    // Marks it used during `epoch` (one lending of the server) and most recent.
    void touch(const StatementId& id, uint32_t epoch);
    void add(const StatementId& id, uint32_t epoch);
    void remove(const StatementId& id);
    void clear();
    size_t size() const { return index_.size(); }
    // The least recently used statement not used during `epoch`, to make room while the
    // server holds `max` or more; false when none may go (it is over max until later).
    bool eviction_candidate(size_t max, uint32_t epoch, StatementId& out) const;

  private:
    struct Entry {
        StatementId id;
        uint32_t epoch;
    };
    std::list<Entry> order_;  // most recently used first
    std::unordered_map<StatementId, std::list<Entry>::iterator, StatementIdHash> index_;
};

}  // namespace pgplex::pool
