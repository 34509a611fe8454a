// Every fixed limit of pgplex, with its reason. Related limits are tied by static_assert.
#pragma once

#include <cstdint>

namespace pgplex::limits {

// PostgreSQL's MAX_STARTUP_PACKET_LENGTH (src/include/libpq/pqcomm.h): a longer startup
// packet is refused by the server too.
inline constexpr uint32_t startup_packet_bytes_max = 10000;

// PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (src/backend/libpq/pqcomm.c): no message of the v3
// protocol may be longer, in either direction.
inline constexpr uint32_t message_bytes_max = 0x3fffffff;

// PostgreSQL's PQ_SMALL_MESSAGE_LIMIT: messages with fixed or small bodies (Sync, Flush,
// Terminate, Describe, Close, Execute, PasswordMessage...) never need more.
inline constexpr uint32_t small_message_bytes_max = 10000;

// Messages pgplex assembles to read (authentication, ParameterStatus, ErrorResponse while
// no client is attached): bounded so a hostile peer cannot make pgplex buffer much.
inline constexpr uint32_t assembled_message_bytes_max = 16384;

// The longest Parse whose statement pgplex keeps to prepare again on other servers
// (transaction pooling renames named statements). A longer named Parse is refused with
// 54000; unnamed ones of any length pass through.
inline constexpr uint32_t kept_statement_bytes_max = 1u << 20;

// The most of a Bind-to-Sync run pgplex keeps to send again when the server's cached plan
// of a prepared statement went stale after a schema change; beyond it, no retry.
inline constexpr uint32_t replay_bytes_max = 65536;

// A request re-run after the replica running it died (client_failure.cc) is kept, as the
// client sent it, up to this size: the usual read is far smaller, and a larger one is
// answered 08006 as before rather than held in memory for every routed client.
inline constexpr uint32_t rerun_bytes_max = 8192;
// Session pooling: the named protocol-level statements pgplex keeps of a session to prepare
// again on another server, in bytes of their Parse messages; a session past it holds state
// pgplex cannot move (client.h, Session::parses).
inline constexpr uint32_t session_parse_bytes_max = 1u << 20;
// Re-runs of one request: a node that keeps dying under it gets the client an 08006.
inline constexpr uint8_t request_reruns_max = 2;

// A role name or database name: PostgreSQL's NAMEDATALEN - 1.
inline constexpr uint32_t name_bytes_max = 63;
// Nodes in one [clusters] table: a primary and its replicas; the monitors run them all.
inline constexpr uint32_t cluster_nodes_max = 64;

// PgBouncer's MAX_PASSWORD: long enough for a SCRAM secret or a long plain password.
inline constexpr uint32_t password_bytes_max = 996;

// auth_query: results a worker keeps (auth_lookup.h); past it the cache starts over, so a
// flood of made-up user names costs lookups, not memory.
inline constexpr uint32_t auth_cache_entries_max = 10000;
// auth_query: server connections of one lookup pool. A lookup is one round trip, and the
// cache answers repeated logins of a user: a few connections serve a storm of logins.
inline constexpr int auth_lookup_servers_max = 2;

// A CancelRequest is exactly this long (length, code, pid, key).
inline constexpr uint32_t cancel_request_bytes = 16;

// Chunks one send may gather (iovec entries of one sendmsg).
inline constexpr uint32_t send_iovecs_max = 32;

// A connection whose peer has this many received buffers queued and not yet sent stops
// receiving until the peer drains below half of it: the provided buffer ring is shared
// by every connection of a worker, and one fast producer must not starve the others.
inline constexpr uint32_t queued_buffers_max = 16;
// TLS: ciphertext encrypted ahead of the socket's sends; the rest waits as plaintext, where
// flow control counts it.
inline constexpr uint32_t sealed_bytes_max = 256 * 1024;

// Slot indexes are packed in 24 bits of io_uring user_data (see io/user_data.h).
inline constexpr uint32_t slots_per_worker_max = 1u << 24;

// The BackendKeyData process id pgplex gives a client names the appliance (its place among
// the [gossip] appliances, 0 alone), the worker and the client slot, so a CancelRequest finds
// its client on any worker of any appliance: pid = 1 << 30 | appliance << 26 | worker << 20 |
// slot. Bit 30 keeps it from ever being 0 (libpq reads a pid of 0 as "unknown", and the first
// client of worker 0 would get it); it stays positive, as PostgreSQL's pids do.
inline constexpr uint32_t appliances_max = 16;
inline constexpr uint32_t workers_max = 64;
inline constexpr uint32_t cancel_slot_bits = 20;
inline constexpr uint32_t cancel_worker_bits = 6;
inline constexpr uint32_t cancel_appliance_shift = cancel_slot_bits + cancel_worker_bits;
inline constexpr uint32_t client_slots_per_worker_max = 1u << cancel_slot_bits;
inline constexpr uint32_t cancel_pid_mark = 1u << 30;
static_assert(client_slots_per_worker_max <= slots_per_worker_max);
static_assert(workers_max == 1u << cancel_worker_bits);
static_assert(appliances_max << cancel_appliance_shift == cancel_pid_mark);
static_assert((cancel_pid_mark | (cancel_pid_mark - 1)) <= 0x7fffffffu, "pid must stay positive");

constexpr uint32_t cancel_pid(uint32_t appliance, uint32_t worker, uint32_t slot) {
    return cancel_pid_mark | appliance << cancel_appliance_shift | worker << cancel_slot_bits |
           slot;
}
constexpr uint32_t pid_appliance(uint32_t pid) {
    return (pid >> cancel_appliance_shift) & (appliances_max - 1);
}
constexpr uint32_t pid_worker(uint32_t pid) {
    return (pid >> cancel_slot_bits) & (workers_max - 1);
}
constexpr uint32_t pid_slot(uint32_t pid) {
    return pid & (client_slots_per_worker_max - 1);
}

// Buffer ids of the provided buffer ring are 16 bits in a CQE.
inline constexpr uint32_t ring_buffers_max = 32768;

// How long a worker with sends just submitted waits for one completion more than it
// submitted (io/ring.cc): the cost of a send that did not complete inline.
inline constexpr long send_wait_us = 200;

// Housekeeping (timeouts, idle servers, reload pickup) runs at this period on each worker.
inline constexpr int64_t tick_ms = 200;

// A cancel request's connection not closed by the server (which it does once it has signalled
// the backend) within this long is given up; the server it cancelled is then not lent again.
inline constexpr int64_t cancel_confirm_ms = 5000;

// SHOW CLIENTS waits this long for every worker to list its clients; a worker that has not
// answered by then (stuck, or shutting down) is left out of the answer and logged.
inline constexpr int64_t admin_gather_ms = 1000;

// SUSPEND answers once every send queue is empty, or after this long with what is still
// queued logged (PgBouncer's suspend_timeout default; pgplex closes nothing for it).
inline constexpr int64_t suspend_flush_ms = 10000;

// After a server login of a pool fails, min_pool_size opens no server for it for this long
// (PgBouncer's server_login_retry default), so a server that is down is not asked again on
// every tick.
inline constexpr int64_t min_pool_retry_ms = 15'000;

// LISTEN/NOTIFY in transaction pooling (pool/notify.h).
// The most LISTEN/UNLISTEN statements pgplex answers in one Query: their CommandCompletes
// (14 bytes at most each) and the ReadyForQuery fit the 2 KiB a synthesized reply is
// written into (server_expect.cc). A longer run is refused with 0A000.
inline constexpr uint32_t listen_statements_per_query_max = 100;
inline constexpr uint32_t synthesized_reply_bytes_max = 4096;
static_assert(listen_statements_per_query_max * 14 + 6 <= synthesized_reply_bytes_max);
// A client's notifications not sent yet (held while it is inside a transaction, or queued
// to a client that does not read): beyond either bound a notification is dropped, the
// client gets a NoticeResponse saying how many, and a line is logged. PostgreSQL itself
// queues up to 8 GB of notifications on disk; pgplex keeps them in memory, per client.
inline constexpr uint32_t listen_backlog_notifications_max = 1000;
inline constexpr uint32_t listen_backlog_bytes_max = 1u << 20;
// A pool's listener connection that failed or was lost is opened again after this wait,
// doubled at each failure up to the max (PgBouncer's server_login_retry is 15 s).
inline constexpr int64_t listener_retry_ms_min = 500;
inline constexpr int64_t listener_retry_ms_max = 30'000;

// Routing (route/route.h).
// PCRE2's match limit for [[rules]] and [[rewrites]] (pcre2_set_match_limit): a pattern
// that backtracks catastrophically on some statement gives up after this many steps (a few
// milliseconds) instead of holding a worker; that statement is then taken as not matching.
// PCRE2's own default is 10,000,000.
inline constexpr uint32_t rule_match_steps_max = 1'000'000;
// The JIT stack each compiled rule set may grow to (pcre2_jit_stack_create), enough for
// patterns that recurse deeply on long statements; beyond it the match fails as above.
inline constexpr uint32_t rule_jit_stack_bytes_max = 1u << 20;

}  // namespace pgplex::limits
