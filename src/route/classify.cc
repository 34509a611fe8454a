// The statement classifier (route.h, level 4): PostgreSQL's own grammar, through
// libpg_query, decides whether a text only reads. libpg_query prints the parse tree as
// JSON; rather than pull in a JSON library, a forward-only scanner reports object keys and
// scalar values with their nesting depth, and a small reader picks out the few things that
// decide the class. Object keys in that JSON are always node and field names, never user
// text (which only appears as values), so a key "InsertStmt" is an INSERT, whatever the
// statement's strings say.
//
// When in doubt the answer is Write: a read sent to the primary is only slower, a write
// sent to a replica fails.
#include <pg_query.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/base/assert.h"
#include "pgplex/route/route.h"

namespace pgplex::route {

const char* to_string(StatementClass value) {
    switch (value) {
        case StatementClass::Read:
            return "read";
        case StatementClass::Write:
            return "write";
        case StatementClass::ReadOnlyBlock:
            return "read-only block";
        case StatementClass::Unparsable:
            return "unparsable";
    }
    PGPLEX_UNREACHABLE();
}

namespace {

// Functions of PostgreSQL's catalog that neither write nor depend on session state a
// replica would not have, so a SELECT calling them may run on a replica. Sorted (checked
// below) for the binary search. Aggregates and window functions are FuncCalls too; COALESCE,
// GREATEST, LEAST, NULLIF, CURRENT_TIMESTAMP, CURRENT_USER... are not (the parser gives them
// nodes of their own), while SQL-syntax forms such as EXTRACT, SUBSTRING ... FROM, TRIM,
// POSITION, OVERLAY, AT TIME ZONE and SIMILAR TO become pg_catalog calls listed here.
// Deliberately absent: nextval, setval, currval, lastval, set_config, txid_current,
// pg_current_xact_id, pg_current_wal_*_lsn, pg_advisory_*, pg_notify, lo_*, dblink*.
constexpr auto read_only_builtins = std::to_array<std::string_view>({
    "abs",
    "acos",
    "age",
    "array_agg",
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_to_json",
    "array_to_string",
    "array_upper",
    "ascii",
    "asin",
    "atan",
    "atan2",
    "avg",
    "bit_and",
    "bit_length",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "cbrt",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "chr",
    "clock_timestamp",
    "concat",
    "concat_ws",
    "corr",
    "cos",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "current_database",
    "current_query",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_user",
    "date_bin",
    "date_part",
    "date_trunc",
    "decode",
    "degrees",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "extract",
    "first_value",
    "floor",
    "format",
    "format_type",
    "gen_random_uuid",
    "generate_series",
    "generate_subscripts",
    "has_any_column_privilege",
    "has_column_privilege",
    "has_database_privilege",
    "has_foreign_data_wrapper_privilege",
    "has_function_privilege",
    "has_language_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "has_server_privilege",
    "has_table_privilege",
    "has_tablespace_privilege",
    "has_type_privilege",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "initcap",
    "is_normalized",
    "isfinite",
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object",
    "json_object_agg",
    "json_object_keys",
    "json_populate_record",
    "json_populate_recordset",
    "json_strip_nulls",
    "json_to_record",
    "json_to_recordset",
    "json_typeof",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "jsonb_populate_record",
    "jsonb_populate_recordset",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_set_lax",
    "jsonb_strip_nulls",
    "jsonb_to_record",
    "jsonb_to_recordset",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lead",
    "left",
    "length",
    "like_escape",
    "ln",
    "log",
    "log10",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "max",
    "md5",
    "min",
    "mod",
    "mode",
    "normalize",
    "now",
    "nth_value",
    "ntile",
    "num_nonnulls",
    "num_nulls",
    "octet_length",
    "overlaps",
    "overlay",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_backend_pid",
    "pg_collation_for",
    "pg_column_size",
    "pg_conf_load_time",
    "pg_database_size",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_has_role",
    "pg_indexes_size",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_postmaster_start_time",
    "pg_relation_size",
    "pg_size_bytes",
    "pg_size_pretty",
    "pg_sleep",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_tablespace_size",
    "pg_total_relation_size",
    "pg_typeof",
    "pi",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "radians",
    "random",
    "rank",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_substr",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "session_user",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sign",
    "similar_to_escape",
    "sin",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "tan",
    "timeofday",
    "timezone",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "translate",
    "trunc",
    "txid_current_snapshot",
    "unnest",
    "upper",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "width_bucket",
});
static_assert(std::is_sorted(read_only_builtins.begin(), read_only_builtins.end()));

// Built-ins that write or read session state a replica lacks, yet change no setting, role
// or prepared statement of the session: a call to one needs no session check (the
// sequence functions' currval/lastval state does not move between servers in any case;
// pgplex.toml(5) says so). Sorted, like the list above.
constexpr auto session_inert_builtins = std::to_array<std::string_view>({
    "currval",
    "lastval",
    "nextval",
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_current_xact_id",
    "pg_notify",
    "setval",
    "txid_current",
});
static_assert(std::is_sorted(session_inert_builtins.begin(), session_inert_builtins.end()));
static_assert(std::adjacent_find(read_only_builtins.begin(), read_only_builtins.end()) ==
              read_only_builtins.end());

// The class of one statement, ordered so that the class of several is the greatest:
// anything with a Write is Write, reads after BEGIN READ ONLY are a ReadOnlyBlock, and
// statements that start nothing (COMMIT, FETCH) change nothing.
enum class Class : uint8_t { Neutral, Read, ReadOnlyBlock, Write };

// In libpg_query's JSON, {"version":N,"stmts":[{"stmt":{"<Kind>":{...}}}]}: the key naming
// each top-level statement's kind sits at this depth (counting '{' and '[').
constexpr int statement_depth = 4;

// Reports, in order: visit.key(depth, name) for each object key, visit.value(depth, text)
// for each string (without its quotes, escapes left as written) or other scalar, and
// visit.close(depth) after each '}' or ']' with the depth it returns to.
template <typename Visitor>
void scan_json(std::string_view json, Visitor& visit) {
    int depth = 0;
    size_t at = 0;
    auto skip_spaces = [&](size_t from) {
        while (from < json.size() && (json[from] == ' ' || json[from] == '\n')) from++;
        return from;
    };
    while (at < json.size()) {
        char ch = json[at];
        if (ch == '{' || ch == '[') {
            depth++;
            at++;
        } else if (ch == '}' || ch == ']') {
            depth--;
            at++;
            visit.close(depth);
        } else if (ch == '"') {
            size_t end = at + 1;
            while (end < json.size() && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
            end = std::min(end, json.size());
            std::string_view text = json.substr(at + 1, end - at - 1);
            at = skip_spaces(end + 1);
            if (at < json.size() && json[at] == ':') {
                visit.key(depth, text);
                at++;
            } else {
                visit.value(depth, text);
            }
        } else if (ch == ',' || ch == ':' || ch == ' ' || ch == '\n') {
            at++;
        } else {
            size_t end = at;
            while (end < json.size() && json[end] != ',' && json[end] != '}' && json[end] != ']')
                end++;
            visit.value(depth, json.substr(at, end - at));
            at = end;
        }
    }
}

// What the reader saw of one top-level statement.
struct Statement {
    std::string_view kind;              // "SelectStmt", "TransactionStmt", ...
    std::string_view query_kind;        // EXPLAIN / COPY / DECLARE: the statement inside
    std::string_view transaction_kind;  // TransactionStmt: "TRANS_STMT_BEGIN", ...
    bool writes = false;     // FOR UPDATE/SHARE, INTO, DML inside, a function not read-only
    bool analyze = false;    // EXPLAIN (ANALYZE ...)
    bool read_only = false;  // BEGIN / START TRANSACTION ... READ ONLY
    bool copy_from = false;  // COPY ... FROM
    bool copy_file = false;  // COPY ... TO 'file' / PROGRAM: a file on the server's host
    // Session state: a function not known to leave it alone, or a statement kind that may
    // change settings, role or authorization (set_session below).
    bool touches_session = false;
    bool set_local = false;     // VariableSetStmt: SET LOCAL (dies with the transaction)
    std::string_view set_name;  // VariableSetStmt: "TRANSACTION" for SET TRANSACTION
};

// Statement kinds that may change what a session carries from one transaction to the
// next: SET / RESET / SET SESSION CHARACTERISTICS (not SET LOCAL, not SET TRANSACTION),
// DISCARD, and code pgplex cannot see into (DO, CALL, EXECUTE of a prepared statement,
// LOAD, extension scripts).
bool may_touch_session(const Statement& statement) {
    std::string_view kind = statement.kind;
    if (kind == "VariableSetStmt")
        return !statement.set_local && statement.set_name != "TRANSACTION";
    return kind == "DiscardStmt" || kind == "DoStmt" || kind == "CallStmt" ||
           kind == "ExecuteStmt" || kind == "LoadStmt" || kind == "CreateExtensionStmt" ||
           kind == "AlterExtensionStmt" || kind == "AlterExtensionContentsStmt";
}

Class transaction_class(const Statement& statement) {
    std::string_view kind = statement.transaction_kind;
    // BEGIN is the enum's first value; a printer leaving defaults out would omit it.
    if (kind.empty() || kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START")
        return statement.read_only ? Class::ReadOnlyBlock : Class::Write;
    // COMMIT/ROLLBACK PREPARED act on the primary's prepared transactions.
    if (kind == "TRANS_STMT_COMMIT_PREPARED" || kind == "TRANS_STMT_ROLLBACK_PREPARED")
        return Class::Write;
    // COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, ROLLBACK TO, PREPARE TRANSACTION:
    // inside a transaction, which already has its node.
    return Class::Neutral;
}

bool is_select(std::string_view kind) {
    return kind == "SelectStmt" || kind == "DeclareCursorStmt";
}

Class statement_class(const Statement& statement) {
    std::string_view kind = statement.kind;
    Class select = statement.writes ? Class::Write : Class::Read;
    if (is_select(kind)) return select;
    if (kind == "VariableShowStmt") return Class::Read;
    if (kind == "TransactionStmt") return transaction_class(statement);
    if (kind == "FetchStmt" || kind == "ClosePortalStmt") return Class::Neutral;
    // EXPLAIN without ANALYZE plans and does not run the statement; with it (even
    // ANALYZE false: not worth reading the option's value) it runs as the statement does.
    if (kind == "ExplainStmt") {
        if (!statement.analyze) return Class::Read;
        return is_select(statement.query_kind) ? select : Class::Write;
    }
    if (kind == "CopyStmt") {
        if (statement.copy_from || statement.copy_file) return Class::Write;
        if (statement.query_kind.empty()) return Class::Read;  // COPY table TO STDOUT
        return is_select(statement.query_kind) ? select : Class::Write;
    }
    return Class::Write;  // DML, DDL, SET, LOCK, CALL, DO, LISTEN, PREPARE, EXECUTE, ...
}

bool is_write_key(std::string_view key) {
    return key == "lockingClause" || key == "intoClause" || key == "InsertStmt" ||
           key == "UpdateStmt" || key == "DeleteStmt" || key == "MergeStmt";
}

// Reads the events of scan_json for one parse result and combines the statements' classes.
class TreeReader {
  public:
    explicit TreeReader(const std::vector<std::string>& read_only_functions)
        : read_only_functions_(read_only_functions) {}

    void key(int depth, std::string_view key);
    void value(int depth, std::string_view value);
    void close(int depth);
    StatementClass result() const;
    bool touches_session() const { return touches_session_; }

  private:
    bool function_is_read_only() const;
    bool function_is_session_inert() const;

    const std::vector<std::string>& read_only_functions_;
    Class combined_ = Class::Neutral;
    bool touches_session_ = false;
    bool in_statement_ = false;
    Statement statement_;
    std::string_view last_key_;
    int last_key_depth_ = 0;
    // Inside "funcname":[{"String":{"sval":"schema"}},{"String":{"sval":"name"}}]: the
    // depth of that key, and the last two parts read.
    int funcname_depth_ = -1;
    std::string_view schema_, name_;
    int name_parts_ = 0;
    bool read_only_option_ = false;  // in a DefElem named transaction_read_only
};

void TreeReader::key(int depth, std::string_view key) {
    bool after_query = last_key_depth_ == statement_depth + 1 && last_key_ == "query";
    last_key_ = key;
    last_key_depth_ = depth;
    if (depth == statement_depth) {
        PGPLEX_ASSERT(!in_statement_);
        in_statement_ = true;
        statement_ = Statement{};
        statement_.kind = key;
        return;
    }
    if (!in_statement_ || depth < statement_depth) return;
    if (after_query && depth == statement_depth + 2) statement_.query_kind = key;
    if (is_write_key(key)) statement_.writes = true;
    if (key == "funcname") {
        funcname_depth_ = depth;
        name_parts_ = 0;
    }
    if (depth == statement_depth + 1 && (key == "filename" || key == "is_program"))
        statement_.copy_file = true;
}

void TreeReader::value(int depth, std::string_view value) {
    if (!in_statement_) return;
    if (funcname_depth_ >= 0 && depth > funcname_depth_) {
        schema_ = name_;
        name_ = value;
        name_parts_++;
        return;
    }
    if (last_key_ == "defname") {
        if (value == "analyze") statement_.analyze = true;
        // READ WRITE is an option of the same name with 0: the last one given wins.
        read_only_option_ = value == "transaction_read_only";
        if (read_only_option_) statement_.read_only = false;
    } else if (read_only_option_ && ((last_key_ == "ival" && value == "1") ||
                                     (last_key_ == "boolval" && value == "true"))) {
        statement_.read_only = true;
    } else if (depth == statement_depth + 1 && last_key_ == "is_local" && value == "true") {
        statement_.set_local = true;
    } else if (depth == statement_depth + 1 && last_key_ == "name") {
        statement_.set_name = value;
    } else if (depth == statement_depth + 1 && last_key_ == "kind") {
        statement_.transaction_kind = value;
    } else if (depth == statement_depth + 1 && last_key_ == "is_from" && value == "true") {
        statement_.copy_from = true;
    }
}

void TreeReader::close(int depth) {
    if (funcname_depth_ >= 0 && depth == funcname_depth_) {
        if (!function_is_read_only()) statement_.writes = true;
        if (!function_is_session_inert()) statement_.touches_session = true;
        funcname_depth_ = -1;
    }
    if (in_statement_ && depth == statement_depth - 1) {
        combined_ = std::max(combined_, statement_class(statement_));
        touches_session_ =
            touches_session_ || statement_.touches_session || may_touch_session(statement_);
        in_statement_ = false;
        read_only_option_ = false;
    }
}

// A built-in when unqualified or in pg_catalog; else in the config's list, by its bare
// name or schema.name. Names are compared as the parser left them (unquoted identifiers
// folded to lower case); one with escapes in its JSON never matches.
bool TreeReader::function_is_read_only() const {
    if (name_parts_ == 0 || name_.find('\\') != std::string_view::npos) return false;
    std::string_view schema = name_parts_ >= 2 ? schema_ : std::string_view();
    if ((schema.empty() || schema == "pg_catalog") &&
        std::binary_search(read_only_builtins.begin(), read_only_builtins.end(), name_))
        return true;
    for (const std::string& listed : read_only_functions_) {
        std::string_view entry = listed;
        if (entry == name_) return true;
        if (!schema.empty() && entry.size() == schema.size() + 1 + name_.size() &&
            entry.starts_with(schema) && entry[schema.size()] == '.' && entry.ends_with(name_))
            return true;
    }
    return false;
}

bool TreeReader::function_is_session_inert() const {
    if (function_is_read_only()) return true;
    if (name_parts_ == 0 || name_.find('\\') != std::string_view::npos) return false;
    std::string_view schema = name_parts_ >= 2 ? schema_ : std::string_view();
    return (schema.empty() || schema == "pg_catalog") &&
           std::binary_search(session_inert_builtins.begin(), session_inert_builtins.end(), name_);
}

// A text of only COMMITs and the like, or of nothing (comments), starts nothing: Read.
StatementClass TreeReader::result() const {
    PGPLEX_ASSERT(!in_statement_);
    switch (combined_) {
        case Class::Neutral:
            return StatementClass::Read;
        case Class::Read:
            return StatementClass::Read;
        case Class::ReadOnlyBlock:
            return StatementClass::ReadOnlyBlock;
        case Class::Write:
            return StatementClass::Write;
    }
    PGPLEX_UNREACHABLE();
}

struct ParseResult {
    PgQueryParseResult result;
    explicit ParseResult(const char* text) : result(pg_query_parse(text)) {}
    ~ParseResult() { pg_query_free_parse_result(result); }
    ParseResult(const ParseResult&) = delete;
    ParseResult& operator=(const ParseResult&) = delete;
};

}  // namespace

// The text is cut at its first NUL, as the data path cuts a Query's text.
StatementFacts facts_uncached(std::string_view text,
                              const std::vector<std::string>& read_only_functions) {
    std::string terminated(text.substr(0, text.find('\0')));
    ParseResult parsed(terminated.c_str());
    if (parsed.result.error != nullptr || parsed.result.parse_tree == nullptr)
        return StatementFacts{StatementClass::Unparsable, true};
    TreeReader reader(read_only_functions);
    scan_json(parsed.result.parse_tree, reader);
    return StatementFacts{reader.result(), reader.touches_session()};
}

StatementClass classify_uncached(std::string_view text,
                                 const std::vector<std::string>& read_only_functions) {
    return facts_uncached(text, read_only_functions).kind;
}

Classifier::Classifier(std::vector<std::string> read_only_functions, size_t capacity)
    : read_only_functions_(std::move(read_only_functions)), capacity_(capacity) {
    PGPLEX_ASSERT(capacity_ > 0);
    cache_.reserve(capacity_);
}

// Two texts with the same 64-bit hash share a class; at 2^-64 per pair that is accepted.
namespace {

bool is_word(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
           static_cast<unsigned char>(c) >= 0x80;
}

// The end of what starts at `at` when it is kept whole (a comment, a quoted identifier),
// or npos when it does not end.
size_t skip_kept(std::string_view text, size_t at) {
    if (text.compare(at, 2, "--") == 0) {
        size_t end = text.find('\n', at);
        return end == std::string_view::npos ? text.size() : end;
    }
    if (text.compare(at, 2, "/*") == 0) {
        int depth = 0;
        for (size_t i = at; i + 1 < text.size(); ++i) {
            if (text[i] == '/' && text[i + 1] == '*')
                depth++, i++;
            else if (text[i] == '*' && text[i + 1] == '/' && --depth == 0)
                return i + 2;
            else if (text[i] == '*' && text[i + 1] == '/')
                i++;
        }
        return std::string_view::npos;
    }
    size_t end = text.find('"', at + 1);  // "..." ("" inside ends and restarts: same result)
    return end == std::string_view::npos ? end : end + 1;
}

// The end of the string literal opening at `at`; npos when it does not end.
size_t skip_string(std::string_view text, size_t at, bool escapes) {
    for (size_t i = at + 1; i < text.size(); ++i) {
        if (escapes && text[i] == '\\') {
            ++i;
        } else if (text[i] == '\'') {
            if (i + 1 < text.size() && text[i + 1] == '\'') {
                ++i;
                continue;
            }
            return i + 1;
        }
    }
    return std::string_view::npos;
}

}  // namespace

void literal_shape(std::string_view text, std::string& out) {
    size_t start = out.size();
    for (size_t i = 0; i < text.size();) {
        char c = text[i];
        size_t end = 0;
        if (text.compare(i, 2, "--") == 0 || text.compare(i, 2, "/*") == 0 || c == '"') {
            end = skip_kept(text, i);
            if (end != std::string_view::npos) out.append(text.substr(i, end - i));
        } else if (c == '\'') {
            end = skip_string(text, i, i > 0 && (text[i - 1] == 'E' || text[i - 1] == 'e'));
            if (end != std::string_view::npos) out += '?';
        } else if (std::isdigit(static_cast<unsigned char>(c)) &&
                   (i == 0 || !is_word(text[i - 1]))) {
            end = i;
            while (end < text.size() && (is_word(text[end]) || text[end] == '.')) ++end;
            out += '?';
        } else {
            out += c;
            end = i + 1;
        }
        if (end == std::string_view::npos) {  // left open: the text as it is
            out.resize(start);
            out.append(text);
            return;
        }
        i = end;
    }
}

StatementFacts Classifier::facts(std::string_view text) {
    shape_.clear();
    literal_shape(text, shape_);
    uint64_t hash = XXH3_64bits(shape_.data(), shape_.size());
    auto found = cache_.find(hash);
    if (found != cache_.end()) return found->second;
    StatementFacts result = facts_uncached(text, read_only_functions_);
    parses_++;
    if (cache_.size() >= capacity_) cache_.clear();
    cache_.emplace(hash, result);
    PGPLEX_ASSERT(cache_.size() <= capacity_);
    return result;
}

StatementClass Classifier::classify(std::string_view text) {
    return facts(text).kind;
}

}  // namespace pgplex::route
