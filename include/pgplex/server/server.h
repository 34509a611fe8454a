// A server connection: pgplex's session with one PostgreSQL node, lent to clients.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pgplex/base/clock.h"
#include "pgplex/base/log.h"
#include "pgplex/io/conn.h"
#include "pgplex/pool/prepared.h"
#include "pgplex/pool/session_state.h"
#include "pgplex/proto/message.h"
#include "pgplex/tls/scram.h"

namespace pgplex::pool {
struct Pool;
}

namespace pgplex::worker {
class Worker;
}

namespace pgplex::server {

enum class ServerState : uint8_t {
    Free,        // slot unused: no file, no op in flight
    Connecting,  // connect submitted; pool reserved a place for it
    Login,       // StartupMessage sent; authenticating, then ParameterStatus until ReadyForQuery
    Idle,        // logged in, in its pool's idle list on this worker; client == nil
    Syncing,     // linked to a client; running the SET for the client's parameters
    Active,      // linked to a client; bytes flow both ways
    Resetting,   // client gone; server_reset_query runs; client == nil
    Cancelling,  // a one-off connection carrying a CancelRequest; no pool
    Adopting,    // a slot kept for a server another worker hands over; no file yet;
                 // counted in the pool's connecting
    Yielding,    // was Idle; being handed to another worker (recv stopping, then the file
                 // sent); not in the idle list
    Listening,   // listener == true: its pool's LISTEN connection (server_listen.cc); never
                 // lent, not in the idle list, not counted in the pool
    Closing,     // close requested; becomes Free when every op has completed
};

inline constexpr size_t server_state_count = size_t(ServerState::Closing) + 1;

const char* to_string(ServerState state);

enum class CloseReason : uint8_t {
    ServerGone,   // EOF or reset from the server
    LoginFailed,  // error or protocol trouble during login
    ProtocolViolation,
    Unusable,     // client left mid-transaction or mid-query
    IdleTimeout,  // server_idle_timeout
    Lifetime,     // server_lifetime
    PoolWanted,   // closed so another worker's waiter can connect
    ConnectTimeout,
    Shutdown,
    CancelDone,     // the server closed a cancel request's connection: it signalled
    CancelTimeout,  // a cancel request's connection was not closed by the server in time
    HandedOver,     // given to another worker, which now owns the socket
    Direct,         // a direct service's server: its client left
    Killed,         // the management console's KILL
    Reconnect,      // the management console's RECONNECT
};

const char* to_string(CloseReason reason);

// What the server owes for one message pgplex sent it (or answered for it), oldest first:
// how its reply ends and what to do with it. Replies come in the order of the messages, so
// pgplex can drop the replies to its own messages and put its own replies, for messages it
// did not send, exactly where the server's would have been (server_expect.cc).
enum class Expect : uint8_t { Parse, Bind, Close, Describe, Execute, Sync, Query, FunctionCall };

enum class Reply : uint8_t {
    Forward,     // the server's reply goes to the client
    Swallow,     // pgplex's own message (a lazy Parse, an eviction Close): reply dropped
    Synthesize,  // not sent: pgplex answers ParseComplete / CloseComplete / DEALLOCATE
    Fail,        // not sent: pgplex answers with the ErrorResponse in `text`
};

enum class ReplayRecord : uint8_t { Off, Recording, Complete };

struct Pending {
    Expect expect = Expect::Sync;
    Reply reply = Reply::Forward;
    bool prepares = false;  // a Parse that prepares `statement` on the server
    // A LISTEN/UNLISTEN pgplex answers (Synthesize): `text` holds it (pool/notify.h), and
    // the reply is written by client/client_listen.cc.
    bool listen = false;
    // A Bind of `statement` that began the replay record: if it fails with "cached plan
    // must not change result type", pgplex prepares the statement again and replays.
    bool retry = false;
    pool::Statement* statement = nullptr;  // Parse, retry Bind: holds a reference
    // A client's named Parse: its name, forgotten again if the Parse fails or is skipped.
    // Fail: the ErrorResponse body.
    std::string text;
    // Session pooling: a named Parse (text: its body) or a Close of a named statement (text:
    // the name) that the session's record of its statements follows once answered.
    bool session_record = false;
};

struct ServerLogin {
    std::unique_ptr<tls::scram::ClientExchange> scram;
    std::vector<uint8_t> assembly;
    bool awaiting_ssl = false;  // an SSLRequest went out: the next byte is 'S' or 'N'
    // Direct TLS (server_tls_negotiation = "direct"): the server must have chosen ALPN
    // "postgresql"; checked at its first message.
    bool check_alpn = false;
};

struct Server {
    io::Conn conn;
    ServerState state = ServerState::Free;
    CloseReason close_reason = CloseReason::ServerGone;
    uint32_t client = io::nil;     // linked client slot (Syncing, Active)
    uint32_t idle_next = io::nil;  // idle list link (Idle) / free list link (Free)
    uint32_t idle_prev = io::nil;
    pool::Pool* pool = nullptr;
    // The pool's listener connection (server_listen.cc): from claim to close, in any state;
    // it holds no place in the pool.
    bool listener = false;
    uint32_t backend_pid = 0;
    uint32_t backend_key = 0;
    uint32_t pending_syncs = 0;  // Query, Sync and FunctionCall sent, ReadyForQuery to come
    bool unsynced = false;       // extended-protocol messages sent after the last Sync
    proto::TransactionStatus status = proto::TransactionStatus::Idle;
    base::Milliseconds created = 0;
    base::Milliseconds since = 0;  // when the current state began
    // When the transaction it is in began (its client's first request), for SHOW STATS'
    // total_xact_time; 0 while it is outside one.
    base::Milliseconds transaction_started = 0;
    uint32_t cancel_pid = 0;  // Cancelling: what to send
    uint32_t cancel_key = 0;
    // Cancelling: the server whose statement it cancels (slot, and its generation then).
    uint32_t cancel_of = io::nil;
    uint32_t cancel_of_generation = 0;
    // Its cancel requests not yet known to have been delivered. PostgreSQL signals the
    // backend when the request arrives, whatever it runs then: until the request's
    // connection is closed by the server (the signal is sent), it is lent to nobody else.
    uint16_t cancels_in_flight = 0;
    bool cancel_unsure = false;  // one was never confirmed: it is closed, not lent again
    // Every ParameterStatus the server reported.
    std::vector<std::pair<std::string, std::string>> parameters;
    // Its session's settings (session_state.h): what pgplex replayed and what the last
    // settings check read, so exactly what the server has in force with source "session".
    pool::Settings applied;
    // The SQL-level PREPAREs it holds for its client of the moment; unknown after a
    // transaction that touched them failed (DEALLOCATE ALL sets it right).
    std::vector<pool::Setting> sql_prepared;
    bool sql_prepared_unknown = false;
    std::vector<uint8_t> pending_error;  // Syncing: the ErrorResponse body the SET got
    // Syncing: the query is pgplex's count of the client's session state (session_state.h),
    // and the count it returned (-1: none yet).
    bool checking = false;
    int64_t session_state_count = -1;
    // Syncing: the query reads the WAL position after the linked client's write, for read
    // your writes (route/router.h); the same DataRow reader fills session_state_count.
    bool reading_lsn = false;
    // Syncing: the query is settings_check_sql; the rows read so far.
    bool reading_settings = false;
    std::vector<pool::Setting> checked;
    // Syncing: auth_query runs for the linked client, still logging in (server_lookup.cc):
    // the rows it returned, and the first one (a DataRow body).
    bool looking_up = false;
    uint32_t lookup_rows = 0;
    std::string lookup_row;
    // Syncing, lent: the replay's first Query sets the client's settings (sync_settings);
    // replies counts its ReadyForQuerys, and settings_failed says the first one failed.
    bool sync_settings = false;
    bool sync_settings_failed = false;
    uint32_t sync_replies = 0;
    std::deque<Pending> expected;  // replies owed for the linked client's messages
    // An extended-protocol error: the server ignores everything until the next Sync.
    bool skipping = false;
    // A CopyInResponse, CopyOutResponse or CopyBothResponse went to the client since the last
    // ReadyForQuery: a failure now cannot be answered in the server's place.
    bool copying = false;
    // Syncing: pgplex's BEGIN and failing statement put the server in an aborted transaction
    // block for a client whose block was lost with its last server (server_lease.cc).
    bool aborting = false;
    // The FATAL ErrorResponse body the server sent before it closed (transaction pooling):
    // not forwarded; what the client is told of its failure names it.
    std::vector<uint8_t> last_words;
    uint32_t epoch = 0;  // counts lendings; what this one used is not evicted
    // The bytes from a retry Bind to its Sync, kept to send again (server_expect.cc).
    ReplayRecord replay_record = ReplayRecord::Off;
    std::string replay;
    pool::ServerStatements prepared;  // named statements it holds (transaction pooling)
    uint32_t yield_worker = 0;        // Yielding: who gets it, and at which file index
    uint32_t yield_file = 0;
    struct Transfer* transfer = nullptr;  // Yielding: sent, not yet known to have arrived
    std::unique_ptr<ServerLogin> login;
    std::unique_ptr<uint8_t[]> assembly;  // an inspected message split across buffers
};

// What travels with a server's file from one worker to another (server_lease.cc).
struct Transfer {
    uint32_t file_index = 0;  // where the receiving worker's table holds the file
    uint32_t backend_pid = 0;
    uint32_t backend_key = 0;
    base::Milliseconds created = 0;
    std::vector<std::pair<std::string, std::string>> parameters;
    pool::Settings applied;
    pool::ServerStatements prepared;
    std::vector<pool::Setting> sql_prepared;
    bool sql_prepared_unknown = false;
    std::unique_ptr<tls::Session> tls;  // its TLS session, when it has one
};

// The one way a server changes state (server.cc): asserts the edge is allowed, keeps the
// worker's count of servers per state, and notes when the state began (since).
void set_state(worker::Worker& worker, Server& server, ServerState state);

// A value from parameters, or null.
const std::string* parameter(const Server& server, const std::string& name);
// What a log line says of a server, as key=value pairs: "server=HOST:PORT pool=DB/USER
// backend_pid=N" (the pid once its login gave it).
base::LogText log_context(const Server& server);
void set_parameter(Server& server, const std::string& name, const std::string& value);

}  // namespace pgplex::server
