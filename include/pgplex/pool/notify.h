// LISTEN/NOTIFY in transaction and statement pooling: what pgplex reads of a client's
// LISTEN and UNLISTEN statements, and the state it keeps for them.
//
// A pooled client holds no server between transactions, so no server of the pool can
// LISTEN for it. pgplex answers LISTEN and UNLISTEN itself, keeps each client's channels,
// and keeps ONE listener connection per pool (server/server_listen.cc), on the pool's home
// worker (pool id modulo the worker count, the worker that also keeps it at min_pool_size),
// which LISTENs on the union of the channels its clients want. Every NotificationResponse
// the listener receives goes to the workers whose clients want that channel, and from each
// to those clients, between their messages (client/client_listen.cc).
//
// Each worker keeps, per pool, the channels its clients want (LocalChannel) and tells the
// home worker when a channel becomes wanted or unwanted there; the home worker's Hub keeps,
// per channel, which workers want it. They talk by IORING_OP_MSG_RING carrying a pointer
// to a ListenMessage, one per message, freed by whoever receives it. Nothing here is shared
// between threads: each structure belongs to one worker.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pgplex/base/clock.h"
#include "pgplex/pool/prepared.h"

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

// --- a client's channels ----------------------------------------------------------------

struct ClientListen {
    std::vector<std::string> channels;  // in force: notifications on them are delivered
    // LISTEN/UNLISTEN inside the transaction under way: in force at its COMMIT, forgotten
    // when it fails or rolls back.
    std::vector<ListenChange> pending;
    // A LISTEN answered between transactions waits, before its reply, until the listener
    // LISTENs on every new channel, so that a NOTIFY committed after the client saw the
    // reply is never missed. Until then the client's further messages wait too.
    std::vector<ListenChange> held;
    uint32_t awaiting = 0;   // channels of `held` not yet confirmed
    std::string held_error;  // a channel failed: the ErrorResponse body to answer
    // Notifications that arrived while the client was inside a transaction (or waiting for
    // a server, or for its LISTEN's reply): sent right after it, bounded.
    std::string backlog;
    uint32_t backlog_count = 0;
    uint32_t dropped = 0;  // notifications dropped since the backlog last went out
};

// --- one worker's channels of one pool ----------------------------------------------------

struct LocalChannel {
    uint64_t seq = 0;               // of the message that made it wanted on this worker
    bool confirmed = false;         // the listener LISTENs on it
    std::vector<uint32_t> clients;  // client slots it is in force for
    std::vector<uint32_t> waiting;  // client slots whose held LISTEN waits for confirmation
};

// --- the listener of a pool, on its home worker -----------------------------------------

struct HubWorker {
    uint32_t worker = 0;
    uint64_t seq = 0;       // of the newest message from it about the channel
    bool awaiting = false;  // wants to hear when the listener LISTENs on it
};

struct HubChannel {
    std::vector<HubWorker> workers;  // the workers that want it
    uint32_t inflight = 0;           // LISTEN/UNLISTEN sent for it, replies to come
    bool sent_listen = false;        // the last of them was a LISTEN
    bool listening = false;          // and its reply came: the listener LISTENs on it
};

enum class HubState : uint8_t {
    Off,         // no listener connection, none wanted (no channel) or none tried yet
    Connecting,  // server != nil: connecting or logging in
    Ready,       // server != nil, Listening: LISTEN/UNLISTEN go out as channels change
    Backoff,     // the connection failed or was lost: a new one is opened at retry_ms
};

struct Hub {
    HubState state = HubState::Off;
    uint32_t server = 0xffffffffu;  // the listener's server slot (Connecting, Ready)
    base::Milliseconds since = 0;   // when the state began
    base::Milliseconds retry_ms = 0;
    base::Milliseconds backoff_ms = 0;      // the next wait after a failure
    base::Milliseconds unwanted_since = 0;  // Ready with no channel wanted: since when
    std::map<std::string, HubChannel, std::less<>> channels;
    // Channels whose LISTEN/UNLISTEN are in flight, oldest first: each Query gets one
    // ReadyForQuery.
    std::deque<std::string> commands;
    std::string command_error;  // the ErrorResponse body the oldest one got, if any
};

struct PoolListen {
    std::unordered_map<std::string, LocalChannel, NameHash, std::equal_to<>> channels;
    uint64_t next_seq = 1;     // numbers this worker's messages to the hub, so a late one loses
    std::unique_ptr<Hub> hub;  // only on the pool's home worker
};

// One message between workers about a pool's channel.
struct ListenMessage {
    enum class Kind : uint8_t {
        Want,          // to the hub: `wanted` says whether `worker` wants `channel` now
        Confirmed,     // from the hub: the listener LISTENs on it (answers Want `seq`)
        Failed,        // from the hub: it could not; `bytes` is the ErrorResponse body
        Notification,  // from the hub: `bytes` is the whole NotificationResponse
    };
    Kind kind = Kind::Want;
    uint32_t pool_id = 0;
    uint32_t worker = 0;  // the sender
    uint64_t seq = 0;
    bool wanted = false;
    std::string channel;
    std::string bytes;
};

}  // namespace pgplex::pool
