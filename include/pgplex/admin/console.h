// The management console's control commands, as PgBouncer's (doc/usage.md "Process
// controlling commands"): PAUSE, RESUME, SUSPEND, DISABLE, ENABLE, KILL_CLIENT, RELOAD,
// SHUTDOWN.
// What they change lives in Console, one per process (worker::Shared): flags the data path
// reads with relaxed loads, and lists that only the control plane and logins of a process
// with a paused or disabled database lock. The commands themselves are answered like every
// other, from a Context (show.h); the workers act on them at their next tick and the control
// thread (control.cc) on RELOAD and SHUTDOWN within its 200 ms wait.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/admin/failover_commands.h"
#include "pgplex/pool/pool_table.h"

namespace pgplex::admin {

struct Console {
    // PAUSE (every database) or SIGUSR1, until RESUME or SIGUSR2: no server is lent, clients
    // wait; servers lent already finish their transaction.
    std::atomic<bool> paused_all{false};
    // SUSPEND, until RESUME (or SIGUSR2): paused_all, and every worker stops accepting and
    // stops reading the clients of databases (worker.cc suspend_tick); the management
    // database's clients go on, so RESUME can arrive.
    std::atomic<bool> suspended{false};
    // Grows at each RESUME: a worker that sees it grow serves the clients it kept waiting.
    std::atomic<uint64_t> resumed{0};
    // A signal number for the control thread: SIGHUP (RELOAD), SIGINT (SHUTDOWN), SIGTERM
    // (SHUTDOWN WAIT_FOR_CLIENTS); 0: none.
    std::atomic<int> signal{0};
    // How many databases are paused or disabled by name: 0 spares a login the lock.
    std::atomic<uint32_t> named{0};
    // KILL_CLIENT ids not yet closed by their worker; 0 spares a tick the lock.
    std::atomic<uint32_t> kills_pending{0};
    // Grows at each KILL [db]: a worker that sees it grow closes the clients and idle
    // servers of the databases killed since (killed_since).
    std::atomic<uint64_t> killed{0};

    bool is_paused(const std::string& database) const;
    bool is_disabled(const std::string& database) const;
    // The ids (BackendKeyData pids) KILL_CLIENT named for this worker, taken out.
    std::vector<uint32_t> take_kills(uint32_t worker);

    // PAUSE [db] / RESUME [db]: false, with the reason, when refused (PgBouncer's words).
    bool pause(std::string_view database, pool::PoolTable& pools, std::string& reason);
    bool resume(std::string_view database, pool::PoolTable& pools, std::string& reason);
    // SUSPEND: false, with PgBouncer's reason, when already paused or suspended.
    bool suspend(std::string& reason);
    void set_disabled(const std::string& database, bool disabled);
    void kill(uint32_t id);
    // KILL [db] ("" every database): PAUSE it, then every worker closes its connections.
    // at_ms (monotonic): the command's time; clients accepted after it are not closed (they
    // wait for RESUME), whenever a worker gets to it.
    bool kill_database(std::string_view database, int64_t at_ms, pool::PoolTable& pools,
                       std::string& reason);
    // The databases killed after generation `seen` ("" for all) and when, oldest first.
    struct Killed {
        uint64_t generation;
        std::string database;
        int64_t at_ms;
    };
    std::vector<Killed> killed_since(uint64_t seen) const;

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> paused_, disabled_;
    std::vector<uint32_t> kills_;
    // The last KILLs: {generation, database}; a worker more than this many behind (it would
    // have to miss 64 KILLs within one 200 ms tick) closes what the last ones name.
    static constexpr size_t killed_kept = 64;
    std::vector<Killed> killed_;
    void count_named();
};

// SIGUSR1 (pause) and SIGUSR2 (resume) of every database, logged; as PAUSE and RESUME.
void pause_signal(Console& console, pool::PoolTable& pools, bool pause);

// Whether a pool's alias ("alias" or "alias@node") is database.
bool pool_of(const pool::Pool& pool, std::string_view database);

// KILL_CLIENT's argument: SHOW CLIENTS' id, in decimal.
bool parse_client_id(std::string_view text, uint32_t& id);

// The first word of a command is PAUSE (whose answer waits until no server is lent).
bool is_pause(std::string_view sql);
// SUSPEND: answered once every worker is suspended and their send queues are empty.
bool is_suspend(std::string_view sql);
// WAIT_CLOSE [db]: answered, like PAUSE, once no server a RECONNECT marked is open.
bool is_wait_close(std::string_view sql);

// Console commands in a comment, from a client of any database (pgplex.8, MANAGEMENT
// DATABASE): a Query whose text is one line "--!pgplex COMMAND" where COMMAND's first word
// has no '=' (a routing hint, route/route.h, is key=value pairs: "--!pgplex route=replica").
// False: not such a Query. True: `command` is COMMAND, and `alone` whether nothing but
// blanks and ';' follows the comment's line (else the Query mixes a command with SQL).
bool comment_command(std::string_view sql, std::string_view& command, bool& alone);

// Answers a control command; NotMine for anything else. Context::console null: refused.
CommandOutcome answer_console_command(std::string_view command, const Context& context,
                                      std::vector<uint8_t>& out);

}  // namespace pgplex::admin
