// Session state that follows a client from server to server in transaction pooling.
//
// Settings (every GUC a SET, RESET, set_config or DISCARD left in force, the role and the
// session authorization) are never guessed from text. A client's settings are its startup
// parameters overlaid by what the server reported after the client's last transaction that
// may have changed them (route::StatementFacts decides which may): pgplex asks the server
// (settings_check_sql) before the server goes back to the pool, and takes the answer as
// the truth for the client and for the server alike. Before a server is lent, the
// difference between the client's settings and the server's is replayed (settings_sync),
// pipelined ahead of the client's own messages, so the client always finds its settings,
// and never another client's.
//
// SQL-level PREPAREs are kept from the text (parse_set_statements), as their statement
// text must be replayed as written; each is replayed as its own Query, so one that cannot
// be prepared again (its table is gone) fails alone and harms nobody.
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
    // A SQL-level PREPARE: the client's settings it was prepared under (effective()), which
    // its replay puts back around it; null while a settings check is still to tell.
    std::shared_ptr<const std::vector<Setting>> context;
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
    ResetLocal,     // SET LOCAL name TO DEFAULT
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
// Whether a query has DISCARD ALL among its statements.
bool discards_all(std::string_view query);

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

// The query that reads what a server's session carries between transactions: every setting
// whose source is the session (SET, set_config; a function's own SET clause dies with the
// call), the role, the session authorization, and the names of its SQL-level prepared
// statements (as "prepared statement", and the name's length, ':', the name and the start
// of the text it was prepared from: which of two PREPAREs of one name a failed transaction
// left is told by its text). Two text columns: the name in lower case, the value as
// current_setting shows it (which SET takes back unchanged, as pg_dump relies on).
inline constexpr const char* settings_check_sql =
    "SELECT pg_catalog.lower(name), pg_catalog.current_setting(name) FROM pg_catalog.pg_settings "
    "WHERE source = 'session' UNION ALL SELECT 'role', pg_catalog.current_setting('role') "
    "UNION ALL SELECT 'session_authorization', session_user::pg_catalog.text "
    "UNION ALL SELECT 'prepared statement', pg_catalog.length(name)::pg_catalog.text || ':' || "
    "name || pg_catalog.left(statement, 3000) FROM pg_catalog.pg_prepared_statements "
    "WHERE from_sql";

// The pseudo-settings replayed with SET ROLE / SET SESSION AUTHORIZATION.
inline constexpr std::string_view role_name = "role";
inline constexpr std::string_view authorization_name = "session_authorization";

// Adds a row of settings_check_sql to `out`, unless it says the server's own default: no
// role, or the session authorization of `login_user`.
void add_checked(std::vector<Setting>& out, std::string_view name, std::string_view value,
                 std::string_view login_user);

// The value a list holds for a name, or null.
const std::string* value_of(const std::vector<Setting>& settings, std::string_view name);

// Whether a value the client wants for `name` may stand as the server's own (its default,
// not set in its session) when the two agree. Not when the client's session set it over a
// different startup value: a settings check reads only what the session set, and would take
// the missing row for the startup value (SET application_name = '' over a startup name).
bool default_may_stand(const std::vector<Setting>& startup, const std::vector<Setting>& session,
                       std::string_view name);

// What the client sees: its startup parameters, overlaid by its session's settings.
std::vector<Setting> effective(const std::vector<Setting>& startup,
                               const std::vector<Setting>& session);

// Whether two lists hold the same names with the same values, in the same order.
bool same_settings(const std::vector<Setting>& a, const std::vector<Setting>& b);

// The Query that takes a server whose session settings are `applied` to `wanted` (one
// implicit transaction: it applies whole or not at all), and what the server's session
// settings are once it ran. `reported(name)` gives the server's ParameterStatus value, or
// null: a wanted value the server reports already needs no SET. Order: back to the login
// user when a role or authorization is in force (settings change as that user), RESETs, the
// GUCs, then the session authorization, then the role (a new authorization drops the role).
// local: the same as SET LOCAL, for the transaction block a replayed PREPARE runs in.
struct SettingsSync {
    std::string sql;
    std::vector<Setting> applied;
};
template <typename Reported>
SettingsSync settings_sync(const std::vector<Setting>& wanted, const std::vector<Setting>& applied,
                           Reported reported, bool local = false);

// The three Queries that run a client's PREPARE under the settings it was prepared under
// (its context), on a server whose session settings are `applied`, and leave them as they
// were: BEGIN and the settings as SET LOCAL, the PREPARE alone (pg_prepared_statements shows
// its text), COMMIT. If the settings fail, the PREPARE does too, and nothing stays.
std::vector<std::string> prepare_in_context(const Setting& prepare,
                                            const std::vector<Setting>& applied);

// The query that counts the session state a server holds for its session (one row, one
// column: 0 when it can be lent to anyone).
inline constexpr const char* session_state_check_sql =
    "SELECT (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = "
    "pg_catalog.pg_backend_pid()) + (SELECT count(*) FROM pg_catalog.pg_cursors WHERE "
    "is_holdable) + (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = "
    "pg_catalog.pg_my_temp_schema())";

// Session pooling reads more of a session than its settings (client.h, Session::parses):
// settings_check_sql's rows, then the names of its protocol-level prepared statements
// ("protocol statement"), the channels it listens on ("listen"), and the count of
// session_state_check_sql ("session state"): what no other server can be given.
const std::string& session_check_sql();
inline constexpr std::string_view protocol_statement_row = "protocol statement";
inline constexpr std::string_view listen_row = "listen";
inline constexpr std::string_view session_state_row = "session state";

// Applies a change to a session's SQL-level prepared statements (Setting: name, and the
// PREPARE statement as sql); other kinds leave them alone.
void apply_prepare_change(std::vector<Setting>& prepared, const SetChange& change);

// The small lexer these readers share (and pool/notify.cc): skips whitespace and comments
// from `at`; the end of the statement starting at `at`, i.e. the next semicolon outside
// quotes, dollar quotes and comments, or the end of the text.
size_t skip_blank(std::string_view text, size_t at);
size_t statement_end(std::string_view text, size_t at);

// Whether a server whose session settings are `applied` shows a client exactly
// effective(startup, session) already: the common case, answered without allocating.
template <typename Reported>
bool in_sync(const std::vector<Setting>& startup, const std::vector<Setting>& session,
             const std::vector<Setting>& applied, Reported reported) {
    auto holds = [&](const Setting& want, bool may_be_reported) {
        if (const std::string* have = value_of(applied, want.name)) return *have == want.value;
        if (!may_be_reported || want.name == role_name || want.name == authorization_name)
            return false;
        const std::string* current = reported(want.name);
        return current != nullptr && *current == want.value;
    };
    for (const Setting& have : applied) {
        const std::string* want = value_of(session, have.name);
        if (want == nullptr) want = value_of(startup, have.name);
        if (want == nullptr || *want != have.value) return false;
    }
    for (const Setting& want : session)
        if (!holds(want, true)) return false;
    for (const Setting& want : startup)
        if (value_of(session, want.name) == nullptr && !holds(want, true)) return false;
    return true;
}

// RESET goes back to the session's startup value (sql-reset.html), but a server's startup
// values are pgplex's, not the client's. After a client's Query whose RESET, RESET ALL,
// SET ... TO DEFAULT or DISCARD ALL may have reset a startup parameter of the client's,
// pgplex sends this Query (its replies dropped): each such parameter whose source is no
// longer the session (the RESET took effect) gets the client's startup value back, for the
// transaction only after SET LOCAL ... TO DEFAULT. Empty when the Query resets none.
std::string reset_follow_up_sql(const std::vector<Setting>& startup,
                                const std::vector<SetChange>& changes);

// The SQL-level prepared statements to replay, one Query each: DEALLOCATE of what the
// server holds and the client lacks (as sql), then the client's PREPAREs the server lacks
// (as the client holds them). A statement of the same name and text prepared under other
// settings is not the same statement (its table names may resolve elsewhere).
std::vector<Setting> prepared_sync(const std::vector<Setting>& client,
                                   const std::vector<Setting>& server);

// A string literal, E'...', holding text exactly.
std::string quote_literal(std::string_view text);
// A quoted identifier, "...".
std::string quote_identifier(std::string_view text);

// The part of settings_sync after its GUCs: the authorization and the role, from `have` to
// `want` (null: the login user's own).
void identity_sync(std::string& sql, const std::string* want_authorization,
                   const std::string* have_authorization, const std::string* want_role,
                   const std::string* have_role, bool local);

template <typename Reported>
SettingsSync settings_sync(const std::vector<Setting>& wanted, const std::vector<Setting>& applied,
                           Reported reported, bool local) {
    SettingsSync out;
    auto special = [](const std::string& name) {
        return name == role_name || name == authorization_name;
    };
    std::string resets, values;
    for (const Setting& have : applied)
        if (!special(have.name) && value_of(wanted, have.name) == nullptr)
            resets += local ? "SET LOCAL " + quote_identifier(have.name) + " TO DEFAULT;"
                            : "RESET " + quote_identifier(have.name) + ";";
    for (const Setting& want : wanted) {
        if (special(want.name)) continue;
        const std::string* have = value_of(applied, want.name);
        if (have == nullptr) {
            const std::string* current = reported(want.name);
            if (current != nullptr && *current == want.value) continue;  // the server's own
        }
        out.applied.push_back(want);
        if (have != nullptr && *have == want.value) continue;
        values += std::string(values.empty() ? "" : ",") + "(" + quote_literal(want.name) + "," +
                  quote_literal(want.value) + ")";
    }
    const std::string* want_authorization = value_of(wanted, authorization_name);
    const std::string* have_authorization = value_of(applied, authorization_name);
    const std::string* want_role = value_of(wanted, role_name);
    const std::string* have_role = value_of(applied, role_name);
    // Settings change as the login user: one the client set before its SET ROLE may be one
    // that role may not set.
    if ((have_authorization != nullptr || have_role != nullptr) &&
        (!resets.empty() || !values.empty())) {
        identity_sync(out.sql, nullptr, have_authorization, nullptr, have_role, local);
        have_authorization = have_role = nullptr;
    }
    out.sql += resets;
    if (!values.empty())
        out.sql += std::string("SELECT pg_catalog.set_config(n, v, ") + (local ? "true" : "false") +
                   ") FROM (VALUES " + values + ") AS s(n, v);";
    identity_sync(out.sql, want_authorization, have_authorization, want_role, have_role, local);
    if (want_authorization != nullptr)
        out.applied.push_back({std::string(authorization_name), {}, *want_authorization, {}});
    if (want_role != nullptr) out.applied.push_back({std::string(role_name), {}, *want_role, {}});
    return out;
}

}  // namespace pgplex::pool
