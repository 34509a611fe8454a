// See console.h. The commands check their argument against the config snapshot, change
// Console, and answer with PgBouncer's tag (or its error text, SQLSTATE 08P01 as PgBouncer
// sends every console error).
#include "pgplex/admin/console.h"

#include <signal.h>

#include <algorithm>
#include <charconv>

#include "pgplex/admin/words.h"
#include "pgplex/base/assert.h"
#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/writer.h"

namespace pgplex::admin {

namespace {

bool is_admin_database(std::string_view name) {
    return name == "pgplex" || name == "pgbouncer";
}

// PgBouncer answers console errors with 08P01 (send_pooler_error's default).
CommandOutcome fail(std::vector<uint8_t>& out, std::string_view message,
                    const char* code = sqlstate::protocol_violation) {
    uint32_t capacity = uint32_t(64 + message.size());
    size_t at = out.size();
    out.resize(at + capacity);
    proto::Writer writer(out.data() + at, capacity);
    proto::write_error(writer, proto::Severity::Error, code, message);
    PGPLEX_ASSERT(writer.ok());
    out.resize(at + writer.size());
    return CommandOutcome::Failed;
}

CommandOutcome done(std::vector<uint8_t>& out, std::string_view tag) {
    out.push_back(uint8_t(proto::BackendMessage::CommandComplete));
    uint32_t length = uint32_t(4 + tag.size() + 1);
    for (int i = 0; i < 4; ++i) out.push_back(uint8_t(length >> (24 - 8 * i)));
    out.insert(out.end(), tag.begin(), tag.end());
    out.push_back(0);
    return CommandOutcome::Done;
}

bool known_database(const Context& context, std::string_view name) {
    return std::any_of(context.config.aliases.begin(), context.config.aliases.end(),
                       [name](const config::Alias& alias) { return alias.name == name; });
}

// The database argument of PAUSE, RESUME, DISABLE, ENABLE: "" when none was given and
// required is false; false with the error written when it is missing or unknown.
bool database_argument(const Context& context, std::string_view rest, bool required,
                       std::string_view verb, std::string& database, std::vector<uint8_t>& out) {
    std::string_view word = next_word(rest);
    if (!next_word(rest).empty()) return fail(out, "syntax error"), false;
    database = std::string(word);
    if (database.size() >= 2 && database.front() == '"' && database.back() == '"')
        database = database.substr(1, database.size() - 2);
    if (database.empty() && required) return fail(out, "a database is required"), false;
    if (database.empty()) return true;
    if (is_admin_database(database))
        return fail(out, "cannot " + std::string(verb) + " admin db: " + database), false;
    if (!known_database(context, database))
        return fail(out, "no such database: " + database), false;
    return true;
}

CommandOutcome pause_or_resume(const Context& context, std::string_view rest, bool pause,
                               std::vector<uint8_t>& out) {
    std::string database, reason;
    if (!database_argument(context, rest, false, pause ? "pause" : "resume", database, out))
        return CommandOutcome::Failed;
    bool ok = pause ? context.console->pause(database, *context.pool_table, reason)
                    : context.console->resume(database, *context.pool_table, reason);
    if (!ok) return fail(out, reason);
    return done(out, pause ? "PAUSE" : "RESUME");
}

CommandOutcome disable_or_enable(const Context& context, std::string_view rest, bool disable,
                                 std::vector<uint8_t>& out) {
    std::string database;
    if (!database_argument(context, rest, true, disable ? "disable" : "enable", database, out))
        return CommandOutcome::Failed;
    context.console->set_disabled(database, disable);
    return done(out, disable ? "DISABLE" : "ENABLE");
}

CommandOutcome kill_client(const Context& context, std::string_view rest,
                           std::vector<uint8_t>& out) {
    uint32_t id = 0;
    if (!parse_client_id(rest, id)) return fail(out, "invalid client pointer supplied");
    context.console->kill(id);
    return done(out, "KILL_CLIENT");
}

// KILL [db]: PgBouncer's, which pauses the database (new clients wait for RESUME) and drops
// its connections with "database removed".
CommandOutcome kill_database(const Context& context, std::string_view rest,
                             std::vector<uint8_t>& out) {
    std::string database, reason;
    if (!database_argument(context, rest, false, "kill", database, out))
        return CommandOutcome::Failed;
    if (!context.console->kill_database(database, context.now_ms, *context.pool_table, reason))
        return fail(out, reason);
    return done(out, "KILL");
}

// RECONNECT [db]: every server of the database's pools (of every pool) opened until now is
// closed once released, as PgBouncer's; new ones connect as the pool needs them.
CommandOutcome reconnect(const Context& context, std::string_view rest, std::vector<uint8_t>& out) {
    std::string database;
    if (!database_argument(context, rest, false, "reconnect", database, out))
        return CommandOutcome::Failed;
    pool::PoolTable& pools = *context.pool_table;
    // One past now: a server opened in this very millisecond is older than the command.
    int64_t before = context.now_ms + 1;
    for (uint32_t id = 0; id < pools.capacity(); ++id) {
        pool::Pool* pool = pools.by_id(id);
        if (pool != nullptr && (database.empty() || pool_of(*pool, database)))
            pool->reconnect_before_ms.store(before, std::memory_order_relaxed);
    }
    return done(out, "RECONNECT");
}

// SET key = value: checked as the file's [pgplex] would be, then applied by a reload (as
// RELOAD, within 200 ms) with every SET so far laid over the file, until a RELOAD.
CommandOutcome set_setting(const Context& context, std::string_view rest,
                           std::vector<uint8_t>& out) {
    size_t equals = rest.find('=');
    std::string_view key = rest.substr(0, equals), value;
    if (equals != std::string_view::npos) value = rest.substr(equals + 1);
    key = trimmed(key), value = trimmed(value);
    if (key.empty() || value.empty()) return fail(out, "syntax error: SET key = value");
    std::string reason;
    if (!config::check_override(key, value, reason))
        return fail(out, reason, sqlstate::invalid_parameter_value);
    config::set_override(key, value);
    context.console->signal.store(SIGHUP, std::memory_order_release);
    return done(out, "SET");
}

CommandOutcome shutdown(const Context& context, std::string_view rest, std::vector<uint8_t>& out) {
    std::string_view mode = next_word(rest);
    // As PgBouncer's: SHUTDOWN at once (SIGQUIT), WAIT_FOR_SERVERS each client closed once
    // idle between transactions (SIGINT), WAIT_FOR_CLIENTS once every client has left
    // (SIGTERM); shutdown_timeout bounds the waits.
    int signal = SIGQUIT;
    if (same_word(mode, "wait_for_servers"))
        signal = SIGINT;
    else if (same_word(mode, "wait_for_clients"))
        signal = SIGTERM;
    else if (!mode.empty() || !next_word(rest).empty())
        return fail(out, "syntax error");
    context.console->signal.store(signal, std::memory_order_release);
    return done(out, "SHUTDOWN");
}

}  // namespace

bool parse_client_id(std::string_view text, uint32_t& id) {
    std::string_view word = next_word(text);
    if (word.empty() || !next_word(text).empty()) return false;
    auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), id);
    return error == std::errc() && end == word.data() + word.size();
}

bool is_pause(std::string_view sql) {
    return same_word(next_word(sql), "pause");
}

bool comment_command(std::string_view sql, std::string_view& command, bool& alone) {
    constexpr std::string_view prefix = "--!pgplex";
    sql = trimmed(sql);
    if (!sql.starts_with(prefix)) return false;
    sql.remove_prefix(prefix.size());
    if (sql.empty() || !is_space(sql.front())) return false;  // "--!pgplexfoo": a comment
    size_t end = sql.find('\n');
    command = trimmed(sql.substr(0, end));
    std::string_view first = command;
    first = next_word(first);
    if (first.empty() || first.find('=') != std::string_view::npos) return false;
    std::string_view after = end == std::string_view::npos ? "" : sql.substr(end + 1);
    alone = std::all_of(after.begin(), after.end(), [](char c) { return is_space(c) || c == ';'; });
    return true;
}

bool is_suspend(std::string_view sql) {
    return same_word(next_word(sql), "suspend");
}

bool is_wait_close(std::string_view sql) {
    return same_word(next_word(sql), "wait_close");
}

CommandOutcome answer_console_command(std::string_view command, const Context& context,
                                      std::vector<uint8_t>& out) {
    std::string_view rest = command;
    std::string_view verb = next_word(rest);
    auto is = [verb](std::string_view name) { return same_word(verb, name); };
    bool known = is("pause") || is("resume") || is("disable") || is("enable") ||
                 is("kill_client") || is("reload") || is("shutdown") || is("suspend") ||
                 is("kill") || is("reconnect") || is("wait_close") || is("set");
    if (!known) return CommandOutcome::NotMine;
    if (context.console == nullptr || context.pool_table == nullptr)
        return fail(out, "the console is not ready", sqlstate::feature_not_supported);
    if (is("pause") || is("resume")) return pause_or_resume(context, rest, is("pause"), out);
    if (is("disable") || is("enable")) return disable_or_enable(context, rest, is("disable"), out);
    if (is("kill_client")) return kill_client(context, rest, out);
    if (is("kill")) return kill_database(context, rest, out);
    if (is("reconnect")) return reconnect(context, rest, out);
    if (is("wait_close")) {
        // The wait itself is the caller's (client_admin.cc): checked here, answered later.
        std::string database;
        if (!database_argument(context, rest, false, "wait_close", database, out))
            return CommandOutcome::Failed;
        return done(out, "WAIT_CLOSE");
    }
    if (is("suspend")) {
        // The wait for the workers and the flush is the caller's (client_admin.cc), as PAUSE.
        std::string reason;
        if (!next_word(rest).empty()) return fail(out, "syntax error");
        if (!context.console->suspend(reason)) return fail(out, reason);
        return done(out, "SUSPEND");
    }
    if (is("shutdown")) return shutdown(context, rest, out);
    if (is("set")) return set_setting(context, rest, out);
    if (is("reload")) {
        if (!next_word(rest).empty()) return fail(out, "syntax error");
        config::clear_overrides();  // the file alone, as PgBouncer's RELOAD
        context.console->signal.store(SIGHUP, std::memory_order_release);
        return done(out, "RELOAD");
    }
    return fail(out, "pgplex does not have " + std::string(verb) + " yet",
                sqlstate::feature_not_supported);
}

void pause_signal(Console& console, pool::PoolTable& pools, bool pause) {
    std::string reason;
    bool ok = pause ? console.pause("", pools, reason) : console.resume("", pools, reason);
    if (ok)
        log_info("%s: %s every database", pause ? "SIGUSR1" : "SIGUSR2",
                 pause ? "pausing" : "resuming");
    else
        log_warning("%s: %s", pause ? "SIGUSR1" : "SIGUSR2", reason.c_str());
}

// --- Console ---------------------------------------------------------------------------------

bool pool_of(const pool::Pool& pool, std::string_view database) {
    std::string_view alias = pool.target.alias;
    return alias == database ||
           (alias.size() > database.size() && alias.substr(0, database.size()) == database &&
            alias[database.size()] == '@');
}

bool Console::is_paused(const std::string& database) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return std::find(paused_.begin(), paused_.end(), database) != paused_.end();
}

bool Console::is_disabled(const std::string& database) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return std::find(disabled_.begin(), disabled_.end(), database) != disabled_.end();
}

void Console::count_named() {
    named.store(uint32_t(paused_.size() + disabled_.size()), std::memory_order_release);
}

bool Console::pause(std::string_view database, pool::PoolTable& pools, std::string& reason) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (paused_all.load()) {
        reason = "already suspended/paused";
        return false;
    }
    if (database.empty()) {
        paused_all.store(true, std::memory_order_release);
        return true;
    }
    if (std::find(paused_.begin(), paused_.end(), database) == paused_.end())
        paused_.emplace_back(database);
    count_named();
    for (uint32_t id = 0; id < pools.capacity(); ++id)
        if (pool::Pool* pool = pools.by_id(id); pool != nullptr && pool_of(*pool, database))
            pool->paused.store(true, std::memory_order_release);
    return true;
}

bool Console::suspend(std::string& reason) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (paused_all.load() || suspended.load()) {
        reason = "already suspended/paused";
        return false;
    }
    paused_all.store(true, std::memory_order_release);
    suspended.store(true, std::memory_order_release);
    return true;
}

bool Console::resume(std::string_view database, pool::PoolTable& pools, std::string& reason) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto named_here = std::find(paused_.begin(), paused_.end(), database);
    if (database.empty() && !paused_all.load() && paused_.empty()) {
        reason = "pooler is not paused/suspended";
        return false;
    }
    if (!database.empty() && suspended.load()) {
        reason = "pooler is suspended: RESUME without a database first";
        return false;
    }
    if (!database.empty() && named_here == paused_.end()) {
        reason = "database " + std::string(database) + " is not paused";
        return false;
    }
    if (database.empty()) {
        suspended.store(false, std::memory_order_release);
        paused_all.store(false, std::memory_order_release);
        paused_.clear();
    } else {
        paused_.erase(named_here);
    }
    count_named();
    for (uint32_t id = 0; id < pools.capacity(); ++id) {
        pool::Pool* pool = pools.by_id(id);
        if (pool != nullptr && (database.empty() || pool_of(*pool, database)))
            pool->paused.store(false, std::memory_order_release);
    }
    resumed.fetch_add(1, std::memory_order_acq_rel);
    return true;
}

bool Console::kill_database(std::string_view database, int64_t at_ms, pool::PoolTable& pools,
                            std::string& reason) {
    if (!pause(database, pools, reason)) return false;
    std::lock_guard<std::mutex> guard(mutex_);
    uint64_t generation = killed.load() + 1;
    killed_.push_back(Killed{generation, std::string(database), at_ms});
    if (killed_.size() > killed_kept) killed_.erase(killed_.begin());
    killed.store(generation, std::memory_order_release);
    return true;
}

std::vector<Console::Killed> Console::killed_since(uint64_t seen) const {
    std::lock_guard<std::mutex> guard(mutex_);
    std::vector<Killed> out;
    for (const Killed& entry : killed_)
        if (entry.generation > seen) out.push_back(entry);
    return out;
}

void Console::set_disabled(const std::string& database, bool disabled) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto at = std::find(disabled_.begin(), disabled_.end(), database);
    if (disabled && at == disabled_.end()) disabled_.push_back(database);
    if (!disabled && at != disabled_.end()) disabled_.erase(at);
    count_named();
}

void Console::kill(uint32_t id) {
    std::lock_guard<std::mutex> guard(mutex_);
    kills_.push_back(id);
    kills_pending.store(uint32_t(kills_.size()), std::memory_order_release);
}

std::vector<uint32_t> Console::take_kills(uint32_t worker) {
    std::lock_guard<std::mutex> guard(mutex_);
    std::vector<uint32_t> mine;
    auto theirs = std::partition(kills_.begin(), kills_.end(), [worker](uint32_t id) {
        return limits::pid_worker(id) != worker;
    });
    mine.assign(theirs, kills_.end());
    kills_.erase(theirs, kills_.end());
    kills_pending.store(uint32_t(kills_.size()), std::memory_order_release);
    return mine;
}

}  // namespace pgplex::admin
