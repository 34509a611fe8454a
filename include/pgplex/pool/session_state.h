// Session state that follows a client from server to server in transaction pooling.
//
// pgplex reads the SET and RESET statements a client sends in simple Query messages and
// keeps, per GUC, the statement that put the client's value in force. Before a server is
// lent, the difference between the client's settings and the server's is replayed (one
// Query, pipelined ahead of the client's own messages), so the client always finds its
// settings, and never another client's. SET LOCAL, SET TRANSACTION and SET CONSTRAINTS
// live and die with their transaction and are not kept.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pgplex::pool {

struct Setting {
    std::string name;   // the GUC, lower case ("search_path", "timezone", "role")
    std::string sql;    // the statement that puts it in force, replayed as is
    std::string value;  // for startup parameters: the value, to compare with ParameterStatus
};

// A list of settings, immutable once made and shared: most clients of a pool log in with
// the same startup parameters, and a server's applied settings are the last client's.
// Changed by making a new list (copy on write).
using Settings = std::shared_ptr<const std::vector<Setting>>;

// The list for an empty Settings pointer.
const std::vector<Setting>& settings_of(const Settings& settings);

// Interns lists of startup settings so clients with the same ones share one (per worker;
// lists nobody holds are dropped as the cache grows).
class SettingsCache {
  public:
    Settings intern(std::vector<Setting> settings);
    size_t size() const { return lists_.size(); }

  private:
    std::unordered_multimap<uint64_t, std::weak_ptr<const std::vector<Setting>>> lists_;
    size_t purge_at_ = 64;
};

enum class SetKind : uint8_t {
    Set,            // name = sql
    Reset,          // RESET name / SET name TO DEFAULT
    ResetAll,       // RESET ALL / DISCARD ALL
    Prepare,        // SQL-level PREPARE name AS ...: name, sql
    Deallocate,     // DEALLOCATE [PREPARE] name
    DeallocateAll,  // DEALLOCATE [PREPARE] ALL / DISCARD ALL
};

struct SetChange {
    SetKind kind = SetKind::Set;
    std::string name;
    std::string sql;
};

// The session-level SET/RESET statements in a simple Query's text, in order, and the
// SQL-level PREPARE / DEALLOCATE ones (DISCARD ALL gives ResetAll and DeallocateAll). Other
// statements are skipped; quotes, dollar quotes and comments are honoured when the text is
// split at semicolons.
std::vector<SetChange> parse_set_statements(std::string_view query);

// Whether a query's text may contain one (a cheap first look, on every Query).
bool may_set(std::string_view query);

// A query that is one DEALLOCATE [PREPARE] {name | ALL} and nothing else (a trailing
// semicolon aside), as drivers send to drop a statement they prepared: its name, or
// `all`. False for anything else.
bool parse_deallocate(std::string_view query, std::string& name, bool& all);
// A cheap first look: whether the text may start with DEALLOCATE.
bool may_deallocate(std::string_view query);

// Whether a query drops every prepared statement of the session (DISCARD ALL, DEALLOCATE
// ALL among its statements).
bool drops_prepared(std::string_view query);

// Session state a server cannot be lent on with, as a statement may create it.
enum SessionStateKind : uint8_t {
    no_session_state = 0,
    advisory_lock = 1,  // pg_advisory_lock(...), pg_try_advisory_lock(...), _shared
    hold_cursor = 2,    // DECLARE ... WITH HOLD
    temp_table = 4,     // CREATE [GLOBAL | LOCAL] TEMP[ORARY] ..., SELECT ... INTO TEMP
};
// Which kinds the statements of a query may create (a bit set of SessionStateKind).
uint8_t detect_session_state(std::string_view query);
// What the bits name, for messages: "a session advisory lock", ...
std::string describe_session_state(uint8_t kinds);

// The query that counts the session state a server holds for its session (one row, one
// column: 0 when it can be lent to anyone).
inline constexpr const char* session_state_check_sql =
    "SELECT (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = "
    "pg_catalog.pg_backend_pid()) + (SELECT count(*) FROM pg_catalog.pg_cursors WHERE "
    "is_holdable) + (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = "
    "pg_catalog.pg_my_temp_schema())";

// Applies a change to a session's SQL-level prepared statements (Setting: name, and the
// PREPARE statement as sql); other kinds leave them alone.
void apply_prepare_change(std::vector<Setting>& prepared, const SetChange& change);

// The SQL that takes a server holding `server` SQL-level prepared statements to the
// client's: DEALLOCATE of what differs or the client lacks, then the client's PREPAREs.
std::string prepared_sync_sql(const std::vector<Setting>& client,
                              const std::vector<Setting>& server);

// The small lexer these readers share (and pool/notify.cc): skips whitespace and comments
// from `at`; the end of the statement starting at `at`, i.e. the next semicolon outside
// quotes, dollar quotes and comments, or the end of the text.
size_t skip_blank(std::string_view text, size_t at);
size_t statement_end(std::string_view text, size_t at);

// Applies a change to a list of settings.
void apply_change(std::vector<Setting>& settings, const SetChange& change);

// The SQL that takes a server whose pgplex-applied settings are `server` to the client's
// `client` settings: SETs the server lacks, RESETs of what it has and the client does not.
// `reported(name)` gives the server's ParameterStatus value, or null, so a startup
// parameter the server already reports at that value needs no SET.
template <typename Reported>
std::string sync_sql(const std::vector<Setting>& client, const std::vector<Setting>& server,
                     Reported reported) {
    std::string out;
    for (const Setting& want : client) {
        bool have = false;
        for (const Setting& got : server)
            if (got.name == want.name) have = got.sql == want.sql;
        if (!have && !want.value.empty()) {
            const std::string* current = reported(want.name);
            have = current != nullptr && *current == want.value;
        }
        if (!have) out += want.sql + ";";
    }
    for (const Setting& got : server) {
        bool wanted = false;
        for (const Setting& want : client) wanted = wanted || want.name == got.name;
        if (!wanted) out += "RESET " + got.name + ";";
    }
    return out;
}

}  // namespace pgplex::pool
