// A worker: one thread, one ring, and the fixed slot tables of the clients and servers it
// drives. Completions are reaped in batches, handled, and everything they prepared is
// submitted at once: one io_uring_enter per loop turn.
//
// Client slot i is fixed file i (accept picks a free index in [0, client_capacity));
// server slot j is fixed file client_capacity + j. A slot is free again only when every
// operation on it has completed and its file is closed, so completions never meet a reused
// slot (the generation check remains as a defence, counted in stale_completions).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "pgplex/admin/console.h"
#include "pgplex/admin/show.h"
#include "pgplex/base/clock.h"
#include "pgplex/base/unique_fd.h"
#include "pgplex/client/client.h"
#include "pgplex/client/handover_state.h"
#include "pgplex/cluster/requests.h"
#include "pgplex/cluster/suspects.h"
#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"
#include "pgplex/io/loop.h"
#include "pgplex/io/user_data.h"
#include "pgplex/pool/auth_lookup.h"
#include "pgplex/pool/moved_cancels.h"
#include "pgplex/pool/pool.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/pool/prepared.h"
#include "pgplex/route/router.h"
#include "pgplex/server/server.h"
#include "pgplex/tls/scram.h"

namespace pgplex::worker {

class Worker;

// What a worker last published of its resources (each tick), for SHOW WORKERS and SHOW MEM:
// written by that worker only, read by any.
struct WorkerStats {
    std::array<std::atomic<uint32_t>, client::client_state_count> clients_in{};
    std::array<std::atomic<uint32_t>, server::server_state_count> servers_in{};
    std::atomic<uint32_t> pinned{0};  // transaction-pooled clients pinned now
    std::atomic<uint32_t> ring_in_use{0}, ring_count{0}, buffer_size{0};
    std::atomic<uint32_t> out_in_use{0}, out_count{0}, chunks_in_use{0}, chunk_count{0};
    std::atomic<uint64_t> bytes_queued{0};  // in send queues and held input, all conns
    // Hostile or broken clients, counted since start (Counters).
    std::atomic<uint64_t> tls_failures{0}, auth_failures{0}, logins_refused{0};
    std::atomic<uint64_t> protocol_violations{0};
    std::atomic<uint64_t> auth_queries{0}, auth_query_failures{0}, clients_stalled{0},
        clients_kept{0};
    // Routed clients waiting now for a primary, and requests answered 57P03 after
    // failover_wait_timeout since start.
    std::atomic<uint32_t> primary_waiting{0};
    // Servers a RECONNECT marked that are still open (WAIT_CLOSE waits for none anywhere).
    std::atomic<uint32_t> close_needed{0};
    std::atomic<uint64_t> primary_wait_timeouts{0}, requests_rerun{0};
    std::atomic<bool> published{false};
    // SUSPEND (admin/console.h): this worker stopped accepting and reading its clients, and
    // the bytes its send queues still hold, clients' and servers' (SUSPEND answers at 0).
    std::atomic<bool> suspended{false};
    std::atomic<uint64_t> bytes_unsent{0};
    // Bumped on every tick: the control thread pings systemd's watchdog only while every
    // worker's count moves (src/systemd.cc). Transactions ended since start, for STATUS=.
    std::atomic<uint64_t> ticks{0}, transactions{0};
};

// SHOW CLIENTS: one worker's list of its clients, for a request (serial) of another's client.
struct ClientList {
    uint32_t serial = 0;
    std::vector<admin::ClientRow> rows;
};

// Where worker W leaves its list for worker A (Shared::client_lists[A * workers + W]). Whoever
// exchanges a list in or out owns it from then on: no lock, and no list read while written.
struct ClientListSlot {
    std::atomic<ClientList*> list{nullptr};
    ~ClientListSlot() { delete list.load(); }
};

// pgplex --takeover (takeover.h): clients on their way from one process to the other, each
// its socket and its encoded state (client/handover_state.h).
struct HandoverItem {
    base::UniqueFd fd;
    std::string payload;
};

struct HandoverQueue {
    void push(HandoverItem item) {
        std::lock_guard<std::mutex> guard(mutex);
        items.push_back(std::move(item));
        size.fetch_add(1, std::memory_order_release);
    }
    std::vector<HandoverItem> take() {
        std::lock_guard<std::mutex> guard(mutex);
        size.store(0, std::memory_order_release);
        return std::exchange(items, {});
    }
    std::mutex mutex;
    std::vector<HandoverItem> items;
    std::atomic<uint32_t> size{0};  // read without the lock: anything to take?
};

// What all workers and the control thread share. Written by the control thread, read by
// the workers on their tick.
struct Shared {
    explicit Shared(uint32_t pool_capacity) : pools(pool_capacity) {}

    std::shared_ptr<const config::Config> config_snapshot() const;
    void publish(std::shared_ptr<const config::Config> config);
    // What the monitors see (cluster/monitor.h); published by the monitor thread.
    std::shared_ptr<const cluster::Topology> topology_snapshot() const;
    void publish_topology(std::shared_ptr<const cluster::Topology> topology);
    std::atomic<uint64_t> topology_generation{0};
    route::NodeLoads node_loads{1024};
    // Nodes whose connections failed on the data path, for the monitor to check at once.
    cluster::Suspects suspects;
    // CancelRequests for clients of other appliances, pid << 32 | key, for the monitor
    // thread to send on by gossip (client_cancel.cc).
    cluster::Mailbox cancels;
    // UNFENCE and SWITCHOVER from the management database, for the monitor thread.
    cluster::Requests requests;
    // PAUSE, DISABLE, KILL_CLIENT, RELOAD and SHUTDOWN from the management console.
    admin::Console console;
    // Derived SCRAM secrets for plain-text auth file passwords, made with the snapshot.
    std::atomic<uint64_t> config_generation{0};

    pool::PoolTable pools;
    std::atomic<int> clients{0};  // client connections, all workers
    // Failed logins per client address in the current minute (auth_failure_limit): a
    // slot per hash of the address, {minute << 32 | count}, changed by compare-and-swap.
    // Addresses that share a slot share a count (4096 slots: rare, and only stricter).
    static constexpr size_t address_slots = 4096;
    std::array<std::atomic<uint64_t>, address_slots> auth_failures{};
    // Per address slot, likewise: new connections in the current second
    // ({second << 32 | count}, client_connect_rate_limit) and logins in progress
    // (client_login_limit), client/client_limits.h.
    std::array<std::atomic<uint64_t>, address_slots> connect_rate{};
    std::array<std::atomic<uint32_t>, address_slots> logins_in_progress{};
    std::atomic<bool> shutdown{false};  // SIGINT or SIGTERM: drain then exit
    // SIGTERM: with shutdown, clients are not let go at the end of a transaction; the worker
    // waits for them to leave (or for shutdown_deadline_ms).
    std::atomic<bool> wait_for_clients{false};
    std::atomic<bool> immediate{false};  // SIGQUIT, or a second signal: exit now
    std::atomic<int64_t> shutdown_deadline_ms{0};
    std::vector<int> ring_fds;                       // index: worker
    std::unique_ptr<WorkerStats[]> stats;            // index: worker
    std::unique_ptr<ClientListSlot[]> client_lists;  // index: asker * workers + lister
    std::atomic<uint32_t> client_list_serial{0};
    std::atomic<bool> started{false};  // every ring exists: workers may message
    // The old pgplex of a takeover: every client found idle between transactions goes to
    // the new one (client_handover.h), by handed_out, which the takeover thread sends on.
    std::atomic<bool> handing_over{false};
    HandoverQueue handed_out;
    // The new pgplex of a takeover: clients for each worker to adopt (index: worker), and
    // where the cancels of adopted clients go: (old pid << 32 | key) → (worker << 32 | slot).
    std::unique_ptr<HandoverQueue[]> handed_in;
    std::unique_ptr<pool::MovedCancels> moved_cancels;  // made before the workers start
    std::atomic<int> finished_workers{0};

  private:
    mutable std::mutex config_mutex_;  // control-plane only: taken on reload and tick
    std::shared_ptr<const config::Config> config_;
    std::shared_ptr<const cluster::Topology> topology_;
};

// What a listening socket serves: the main listener (empty names) or a service.
struct ListenerRole {
    std::string cluster;
    std::string service;
    bool local = false;  // a Unix socket: hba "local" lines; TLS is never required there
};

struct Counters {
    uint64_t stale_completions = 0;
    uint64_t clients_accepted = 0;
    uint64_t servers_connected = 0;
    uint64_t pinned_clients = 0;         // transaction-pooled clients pinned by session state
    uint64_t tls_failures = 0;           // clients whose TLS handshake or a record failed
    uint64_t auth_failures = 0;          // wrong passwords, unknown users, failed certificates
    uint64_t logins_refused = 0;         // refused by auth_failure_limit, hba reject or no match
    uint64_t protocol_violations = 0;    // clients closed with 08P01
    uint64_t auth_queries = 0;           // auth_query lookups run on a server
    uint64_t auth_query_failures = 0;    // ... that failed (an error, a bad row, no server)
    uint64_t clients_stalled = 0;        // closed by client_stall_timeout
    uint64_t clients_kept = 0;           // their server failed; answered, kept (client_failure.h)
    uint64_t primary_wait_timeouts = 0;  // requests answered 57P03 after failover_wait_timeout
    uint64_t requests_rerun = 0;         // re-sent after a replica died (client_failure.h)
    uint64_t transactions = 0;           // ReadyForQuery "idle" forwarded to a client
    // How many clients and servers are in each state now (Free not counted), kept by their
    // set_state().
    std::array<uint32_t, client::client_state_count> clients_in{};
    std::array<uint32_t, server::server_state_count> servers_in{};
};

class Worker : public io::Loop {
  public:
    // Must be constructed on the thread that will run it: with SINGLE_ISSUER the ring
    // belongs to the thread that made it.
    Worker(uint32_t index, Shared& shared, std::shared_ptr<const config::Config> config,
           std::vector<base::UniqueFd> listeners, std::vector<ListenerRole> roles);
    ~Worker();

    // The loop, until shutdown has drained every connection.
    void run();

    // --- used by client/, server/ and pool/ code ---
    uint32_t index;
    Shared& shared;
    std::shared_ptr<const config::Config> config;  // the newest snapshot this worker saw
    base::Milliseconds now = 0;
    uint32_t client_capacity;
    uint32_t server_capacity;
    std::vector<client::Client> clients;
    std::vector<server::Server> servers;
    std::vector<pool::PoolLocal> pools;  // index: Pool::id
    Counters counters;
    // SCRAM secrets derived from plain-text auth file passwords (PBKDF2 is slow by design).
    std::unordered_map<std::string, tls::scram::Secret> scram_cache;
    // auth_query's results, kept auth_cache_ttl.
    pool::AuthCache auth_cache;
    // Named statements of this worker's clients (transaction pooling), interned.
    pool::StatementCache statements;
    // Clients being handed over (client_handover.h), by slot: their state, and their socket
    // once installed in the fd table.
    struct HandingOver {
        std::unique_ptr<client::HandedClient> state;  // its input grows until shipped
        base::UniqueFd fd;
    };
    std::unordered_map<uint32_t, HandingOver> handing;
    // Startup settings shared by the clients that logged in with the same ones.
    pool::SettingsCache settings;
    // Routing: the newest topology this worker saw, and its router (rebuilt on reload).
    std::shared_ptr<const cluster::Topology> topology;
    std::unique_ptr<route::Router> router;
    std::vector<ListenerRole> listener_roles;  // index: listener

    client::Client& client(uint32_t slot) { return clients[slot]; }
    server::Server& server(uint32_t slot) { return servers[slot]; }
    const client::Client& client(uint32_t slot) const { return clients[slot]; }
    const server::Server& server(uint32_t slot) const { return servers[slot]; }
    uint32_t client_slot(const client::Client& c) const { return uint32_t(&c - clients.data()); }
    uint32_t server_slot(const server::Server& s) const { return uint32_t(&s - servers.data()); }
    uint32_t server_file(uint32_t slot) const { return client_capacity + slot; }

    // Socket operations on clients and servers: io::Loop's (arm/pause/resume recv, send,
    // close).
    bool shutting_down() const { return shutting_down_; }
    // Shutting down and not waiting for clients to leave (SIGTERM): a client is let go at
    // the end of its transaction.
    bool letting_clients_go() const { return shutting_down_ && !waiting_for_clients_; }
    // Submits an IORING_OP_MSG_RING to another worker.
    void message(uint32_t worker, io::MessageKind kind, uint32_t payload_high,
                 uint32_t payload_low);

    uint32_t server_acquire();  // a free server slot, or nil
    void server_release_slot(uint32_t slot);
    uint32_t random_u32();
    // Takes the newest published topology if it changed since this worker last looked: a
    // routing decision never waits for the next tick to see a lost quorum or a new primary.
    void refresh_topology();

  private:
    void loop_turn();
    void dispatch(io_uring_cqe* cqe);
    void arm_accepts();
    uint32_t free_client_slots() const;
    void arm_tick();
    void on_accept(io_uring_cqe* cqe, uint32_t listener);
    void on_recv(io_uring_cqe* cqe, io::Op op);
    void on_client_addresses(io_uring_cqe* cqe);
    void on_yield_sent(io_uring_cqe* cqe);
    void on_server_connected(io_uring_cqe* cqe);
    void on_client_installed(io_uring_cqe* cqe);
    void hand_over_idle_clients();
    void adopt_handed_clients();
    void on_adopted(io_uring_cqe* cqe);
    void on_tls_recv(client::Client& client, uint32_t slot, uint32_t buffer, uint32_t size);
    void on_tls_recv(server::Server& server, uint32_t slot, uint32_t buffer, uint32_t size);
    void on_send(io_uring_cqe* cqe, io::Op op);
    void on_close(io_uring_cqe* cqe, io::Op op);
    void on_shutdown_done(io_uring_cqe* cqe, io::Op op);
    void on_message(io_uring_cqe* cqe);
    void on_tick();
    void roll_stats();
    void console_tick();
    void suspend_tick();
    void cancel_accepts();
    io::Conn& conn_at(io::Op op, uint32_t slot);
    void begin_shutdown();
    void publish_stats(uint32_t pinned, uint32_t primary_waiting, uint64_t bytes_queued);
    bool drained() const;
    bool has_clients() const;  // a client slot not Free

    std::vector<base::UniqueFd> listeners_;
    // Accepts in flight per listener, and in all: never more than free client slots, so a
    // connection the kernel hands over always has a slot (accept_direct cannot give one
    // back: it would be closed). Past that, connections wait in the listen queue.
    std::vector<uint32_t> accepts_armed_;
    uint32_t accepts_in_flight_ = 0;
    uint32_t adopts_in_flight_ = 0;  // handed-over clients whose fixed file is being made
    base::Milliseconds slots_full_logged_ms_ = 0;
    uint32_t server_free_ = io::nil;
    uint32_t server_high_ = 0;  // slots [0, server_high_) have been used
    uint32_t client_high_ = 0;
    __kernel_timespec tick_{};
    base::Milliseconds accept_error_logged_ms_ = -100000;
    base::Milliseconds address_error_logged_ms_ = 0;
    bool shutting_down_ = false;
    bool suspended_ = false;  // Console::suspended seen: no accept armed, client reads paused
    bool waiting_for_clients_ = false;  // shutting down on SIGTERM, clients still connected
    bool done_ = false;
    uint64_t seen_generation_ = 0;
    uint64_t seen_topology_ = 0;
    uint64_t seen_resumed_ = 0;  // Console::resumed
    uint64_t seen_killed_ = 0;   // Console::killed
    base::Milliseconds handover_scanned_ = 0;
    uint64_t random_state_;
};

}  // namespace pgplex::worker
