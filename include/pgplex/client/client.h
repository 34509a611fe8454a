// A client connection: the state machine of one application's session with pgplex.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pgplex/base/clock.h"
#include "pgplex/base/log.h"
#include "pgplex/config/config.h"
#include "pgplex/io/conn.h"
#include "pgplex/pool/budget.h"
#include "pgplex/pool/notify.h"
#include "pgplex/pool/prepared.h"
#include "pgplex/pool/session_state.h"
#include "pgplex/tls/scram.h"

namespace pgplex::pool {
struct Pool;
}

namespace pgplex::route {
struct Routing;
}

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

enum class ClientState : uint8_t {
    Free,     // slot unused: no file, no op in flight, login and session null
    Startup,  // reading the startup packet (an SSLRequest/GSSENCRequest may come first);
              // login != null
    Auth,     // a password or SASL exchange is under way; login != null, pool set
    Idle,     // transaction pooling, between transactions: no server; the next message puts
              // the client in line for one
    Waiting,  // authenticated; queued for a server in the pool's waiter list on this worker
    Syncing,  // server linked; pgplex's SET that gives it the client's parameters runs
    Active,   // server linked for the session; bytes flow both ways
    Asking,   // the management database: a SHOW that lists every worker's clients waits
              // for the other workers' answers (client_admin.cc); its input is held
    Closing,  // close requested; becomes Free when every op has completed
};

inline constexpr size_t client_state_count = size_t(ClientState::Closing) + 1;

const char* to_string(ClientState state);

enum class CloseReason : uint8_t {
    ClientTerminated,   // Terminate received
    ClientGone,         // EOF or reset from the client
    ProtocolViolation,  // 08P01 sent
    LoginFailed,        // an authentication or startup error sent
    LoginTimeout,
    WaitTimeout,     // query_wait_timeout
    ServerFailed,    // the linked server closed or broke
    TooManyClients,  // max_client_conn
    Shutdown,
    CancelRequest,     // a cancel connection, done
    TransactionBlock,  // statement pooling: the client opened a transaction block
    TlsFailed,         // the TLS handshake or a record failed (nothing can be said to it)
    Stalled,           // it read nothing of its queued output for client_stall_timeout
    Killed,            // the management console's KILL_CLIENT
    HandedOver,        // given, socket and session, to the pgplex taking over (takeover.h)
};

const char* to_string(CloseReason reason);

// Failed: a wrong password, answered after auth_failure_delay (on_tick); input is dropped.
enum class AuthStep : uint8_t { None, Md5, Cleartext, ScramFirst, ScramFinal, Failed };

// auth_query (client_auth_query.h): InLine waits for a server of the lookup pool (in its
// waiter list, client.pool set); Running: the query runs there; Done: the secret is in.
enum class LookupStep : uint8_t { None, InLine, Running, Done };

// Only while logging in: the assembly of the startup packet and the auth exchange.
struct Login {
    std::vector<uint8_t> packet;  // startup packet bytes gathered so far
    AuthStep step = AuthStep::None;
    uint8_t md5_salt[4] = {};
    std::string secret;  // the auth file's (or auth_query's) secret for this user
    bool user_known = false;
    std::unique_ptr<tls::scram::ServerExchange> scram;
    // A password given in clear that matched a SCRAM secret: its ClientKey.
    std::optional<tls::scram::Key> password_key;
    std::vector<uint8_t> assembly;     // a PasswordMessage split across buffers
    bool ssl_answered = false;         // 'S' was just queued: nothing may follow in clear
    bool awaiting_addresses = false;   // auth_type = "hba": the rules wait for its address
    base::Milliseconds failed_at = 0;  // Failed: when the wrong password came
    bool direct_tls = false;           // the connection began with a TLS ClientHello
    LookupStep lookup = LookupStep::None;
    // Its count in Shared::logins_in_progress (client_limits.h), given back with the login.
    std::atomic<uint32_t>* login_slot = nullptr;

    Login() = default;
    Login(const Login&) = delete;
    Login& operator=(const Login&) = delete;
    ~Login() {
        if (login_slot != nullptr) login_slot->fetch_sub(1, std::memory_order_acq_rel);
    }
};

// Transaction pooling: the client's server failed while it was in a transaction block
// (client_failure.h). Untold: nothing of its was in flight, so its next request is answered
// 08006 in the block's place. Aborted: it has been told, and believes itself in a failed
// block; every server it gets is first put in one (server_lease.cc), until a ReadyForQuery
// says idle (its ROLLBACK ran).
enum class TransactionLost : uint8_t { None, Untold, Aborted };

// For the whole session: who the client is and the state it expects on any server.
// Session pooling: what pgplex keeps of a session beyond its settings, to give it to another
// server should its own fail (server_lease.cc, sync_session).
struct SessionKept {
    // Its named protocol-level statements (name, Parse body), kept when the server answers
    // ParseComplete, dropped at CloseComplete or when a check no longer finds the name (a
    // DEALLOCATE, a DISCARD ALL); and the channels it LISTENs on, as the last check read them.
    std::vector<std::pair<std::string, std::string>> parses;
    size_t parse_bytes = 0;
    std::vector<std::string> channels;
    // pgplex's Query that gives the client its startup values back after a Parse of the batch
    // may have reset them (client_work.cc, follow_resets), sent after the batch's Sync.
    // Transaction pooling needs none: each lease syncs the settings anew.
    std::string parse_follow_up;
};

// The management database: a command that answers once the workers have (client_admin.cc).
struct AdminWait {
    std::string query;  // Asking: the Query it answers once every worker has
    // Asking after PAUSE: its answer, held until no server is lent (admin_on_tick).
    std::vector<uint8_t> reply;
    bool pausing = false;
    bool waiting_close = false;  // WAIT_CLOSE: reply goes once no marked server is open
    bool suspending = false;     // SUSPEND: reply goes once every worker is suspended
};

// A client socket's address in 28 bytes where sockaddr_storage takes 128, as every client slot
// holds two: IPv4 and IPv6 whole, a Unix socket by its family alone (its path says nothing
// of the client).
struct CompactAddress {
    sockaddr_in6 address{};
    void set(const sockaddr_storage& from);
    sockaddr_storage full() const;
    sa_family_t family() const { return address.sin6_family; }
};

struct Session {
    std::string user;
    std::string database;
    // Its places in max_db_client_connections and max_user_client_connections (pool/budget.h),
    // held from its login until the session ends.
    pool::ClientCharge database_clients;
    pool::ClientCharge user_clients;
    config::PoolMode mode = config::PoolMode::Session;
    // Startup parameters and "-c name=value" options (name, value): what RESET goes back to.
    pool::Settings startup;
    // Transaction pooling: the session's settings as the server reported them after the
    // client's last transaction that may have changed them (session_state.h). Every server
    // lent to the client has startup overlaid by these in force.
    pool::Settings settings;
    // A statement of the transaction under way may have changed the settings: the server
    // is asked before it goes back (route::StatementFacts).
    bool check_settings = false;
    // Consecutive replays of its settings that a server refused (server_lease.cc).
    uint8_t replay_failures = 0;
    // Transaction pooling: its SQL-level PREPAREs (name, statement), replayed like settings.
    std::vector<pool::Setting> sql_prepared;
    // PREPARE/DEALLOCATE sent in the transaction under way; kept when it commits.
    std::vector<pool::SetChange> pending;
    bool transaction_failed = false;       // an ErrorResponse since the last idle
    bool transaction_rolled_back = false;  // a ROLLBACK since the last idle
    // pending belongs to a transaction that failed: the settings check decides what stands.
    bool pending_unsure = false;
    // pgplex answered a message with an error: the client's messages up to its Sync are
    // ignored, as PostgreSQL ignores them after an error.
    bool discarding = false;
    TransactionLost lost = TransactionLost::None;
    std::string lost_where;  // Untold: the node that failed and its last words, for the error
    // Transaction pooling and session state (session_state.h, detect_session_state):
    bool pin_allowed = true;   // the alias's pin_on_session_state
    bool pin_suspect = false;  // a statement that may create some ran in this transaction
    bool pinned = false;       // it holds some: it keeps its server
    // Session pooling: the session holds state on its server that pgplex cannot give another
    // server, for the rest of the session (a named statement too long to keep, past
    // limits::session_parse_bytes_max, or a check of the session that failed), or as the
    // last check counted (`unmovable`: a temporary table, an advisory lock, a WITH HOLD
    // cursor). Until then it survives its server (client_failure.cc): the next one is given
    // its settings, SQL-level and protocol-level prepared statements and LISTENs, which
    // pgplex follows as below.
    bool state_on_server = false;
    bool unmovable = false;
    // Session pooling: a transaction that may have changed what the session holds ended
    // (ReadyForQuery idle) and the check that reads it (server_lease.cc) has not run yet.
    bool state_unread = false;
    // Session pooling: what moves with the session to another server (SessionKept); made
    // when there first is any (kept_of).
    std::unique_ptr<SessionKept> kept;
    // Transaction pooling: its named prepared statements (client/client_extended.cc).
    std::unique_ptr<pool::ClientStatements> statements;
    // Transaction pooling: the channels it LISTENs on (client/client_listen.cc).
    std::unique_ptr<pool::ClientListen> listen;
    // A routed request outside a transaction block on a replica (client_failure.cc): the
    // client's bytes since its lease began, kept to be sent to another node if the replica
    // dies before any byte of the answer reached the client. Recording stops (and the bytes
    // are dropped) at the first byte to the client or past limits::rerun_bytes_max.
    std::string rerun;
    bool rerun_recording = false;
    uint8_t reruns = 0;  // re-runs of the request under way
    // A client of a cluster (route/router.h): where its transactions go. Null otherwise.
    std::shared_ptr<route::Routing> routing;
    bool admin = false;  // the management database (client/client_admin.cc)
    // Handed over by an earlier pgplex: the process id its BackendKeyData named there, which
    // its cancels still carry (Shared::moved_cancels maps it here); 0 otherwise.
    uint32_t handed_pid = 0;
    // An admin's command that waits for the workers; made when one first does (a session
    // carries no room for it otherwise: tens of thousands of them are idle application
    // clients).
    std::unique_ptr<AdminWait> admin_wait;
};

struct Client {
    io::Conn conn;
    ClientState state = ClientState::Free;
    CloseReason close_reason = CloseReason::ClientGone;
    uint32_t server = io::nil;     // linked server slot (Syncing, Active)
    uint32_t wait_prev = io::nil;  // waiter list links (Waiting)
    uint32_t wait_next = io::nil;
    pool::Pool* pool = nullptr;
    uint32_t cancel_key = 0;
    uint16_t listener = 0;             // the listener it came in by: main or a service
    base::Milliseconds since = 0;      // when the current state began
    base::Milliseconds connected = 0;  // when it was accepted
    base::Milliseconds request = 0;    // when its last bytes came in
    base::Milliseconds cancelled = 0;  // when a cancel of its statement went to its server
    // When its socket last took bytes, or (on a tick) had nothing queued: a client that
    // reads nothing of its output for client_stall_timeout is closed.
    base::Milliseconds sent_at = 0;
    // When a cancel came for a request not yet at a server: the request is answered 57014
    // unsent (client_cancel.h).
    base::Milliseconds cancel_wanted = 0;
    bool cancel_answered = false;  // Waiting: a cancelled request was answered (consume_held)
    // Waiting for a primary: failover_wait_timeout ran out; its request is answered 57P03
    // unsent (client_cancel.h), as a cancelled one is answered 57014.
    bool primary_wait_expired = false;
    // Its address and the listener's, once io::Loop::ask_addresses has read them.
    bool addresses_asked = false;  // the read is in flight or done
    bool addresses_known = false;
    CompactAddress peer;
    CompactAddress local;
    uint32_t peer_uid = 0xffffffffu;  // on a Unix socket, the client's user id (hba peer)
    uint32_t asking = 0;              // Asking: the serial of its request to the workers
    uint32_t asking_left = 0;         // Asking: workers yet to answer it
    bool consuming = false;           // inside consume_held(): no re-entry
    bool wait_logged = false;         // Waiting: its long wait was logged (client_work.cc)
    std::unique_ptr<Login> login;
    std::unique_ptr<Session> session;
    std::unique_ptr<uint8_t[]> assembly;  // an inspected Query split across buffers
};

// The one way a client changes state (client.cc): asserts the edge is allowed, keeps the
// worker's count of clients per state, and notes when the state began (since).
void set_state(worker::Worker& worker, Client& client, ClientState state);

// The session's SessionKept, made on first use.
inline SessionKept& kept_of(Session& session) {
    if (!session.kept) session.kept = std::make_unique<SessionKept>();
    return *session.kept;
}

// What a log line says of a client, as key=value pairs: "client=W.S addr=IP:PORT user=U
// db=D" (worker and slot, as SHOW CLIENTS; the address once read; user and database once
// its login named them). A value with a blank, a quote or an equals sign is quoted.
base::LogText log_context(const worker::Worker& worker, const Client& client);
// The client's address without its port ("unix" on a Unix socket, "unknown" before read).
std::string address_text(const Client& client);

}  // namespace pgplex::client
