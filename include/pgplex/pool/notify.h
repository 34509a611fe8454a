// LISTEN/NOTIFY in transaction and statement pooling: what pgplex reads of a client's
// LISTEN and UNLISTEN statements. A pooled client holds no server between transactions, so
// no server of the pool can LISTEN for it: pgplex answers LISTEN and UNLISTEN itself, and
// must read them as PostgreSQL does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgplex::pool {

// --- reading LISTEN and UNLISTEN (sql-listen.html, sql-unlisten.html) ---------------------

enum class ListenKind : uint8_t { Listen, Unlisten, UnlistenAll };

struct ListenChange {
    ListenKind kind = ListenKind::Listen;
    std::string channel;  // as PostgreSQL names it: folded to lower case unless quoted
};

enum class ListenQuery : uint8_t {
    None,        // no LISTEN or UNLISTEN: an ordinary query
    Only,        // LISTEN and UNLISTEN statements only (empty ones aside), read into changes
    Mixed,       // LISTEN or UNLISTEN among other statements
    TooMany,     // more than limits::listen_statements_per_query_max of them
    Unreadable,  // one pgplex cannot read (a Unicode escape, a syntax error)
};

// A cheap first look: whether the text may hold a LISTEN or UNLISTEN at all.
bool may_listen(std::string_view query);
// Reads a simple Query's (or a Parse's) text. Quotes, dollar quotes and comments are
// honoured when the text is split at semicolons.
ListenQuery parse_listen(std::string_view query, std::vector<ListenChange>& changes);
// Why pgplex refuses a query of this kind (Mixed, TooMany, Unreadable).
const char* listen_refusal(ListenQuery kind);
// "LISTEN" or "UNLISTEN": the CommandComplete tag.
const char* listen_tag(ListenKind kind);
// The statement the listener connection runs: `LISTEN "name"`, quotes doubled.
std::string listen_sql(ListenKind kind, std::string_view channel);
// The channels after the changes, in order: LISTEN adds (once), UNLISTEN removes.
void apply_listen(std::vector<std::string>& channels, const std::vector<ListenChange>& changes);

// A LISTEN answered in order with the server's replies travels in a Pending's text
// (server.h): the changes, or the ErrorResponse body to answer instead.
std::string encode_listen(const std::vector<ListenChange>& changes);
std::string encode_listen_error(std::string_view error_body);
// Returns false for an error, which is then in error_body.
bool decode_listen(std::string_view text, std::vector<ListenChange>& changes,
                   std::string_view& error_body);

}  // namespace pgplex::pool
