// One appliance's part in the gossip between pgplex appliances and in the decisions they make
// together: SWIM membership (probe, indirect probe, suspect, dead, incarnations), each
// appliance's view of every node spread by piggybacking, and per cluster the epoch and primary
// a majority of the configured appliances accepted, with a lease that lets an appliance route
// writes only while a majority still stands behind that epoch.
//
// A pure state machine: no sockets, no clock, no randomness of its own. The control plane
// (cluster/monitor.cc) feeds it datagrams, the local monitors' view and the time, and sends
// what it hands out; the simulation (tests/sim) does the same with a simulated network. The
// public API below is the contract between the two; internals live in src/gossip/.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/topology.h"

namespace pgplex::dcs {
class DecisionStore;
}

namespace pgplex::gossip {

// What an appliance may decide about a cluster.
struct ClusterPolicy {
    std::string name;
    bool promote = false;  // failover = "promote": the appliances choose and promote a replica
    int64_t max_failover_lag_bytes = -1;  // a replica further behind is never chosen; -1 any
};

struct Settings {
    std::string self;                // this appliance's address, "ip:port": its identity
    std::vector<std::string> peers;  // the other configured appliances, "ip:port"
    std::vector<uint8_t> key;        // the shared HMAC key, at least 32 bytes
    std::vector<ClusterPolicy> clusters;
    int64_t probe_interval_ms = 500;    // SWIM: one member probed per interval
    int64_t probe_timeout_ms = 200;     // before indirect probes
    int64_t suspect_timeout_ms = 2000;  // suspect → dead without a refutation
    int64_t lease_ms = 1000;            // a majority's grant lets writes go on this long
    // This appliance's boot id: must grow from one start to the next (peers refuse datagrams
    // of an older boot once they heard a newer one). The control plane passes the wall clock
    // in microseconds at start (CLOCK_REALTIME); 0 derives it from now_ms and the seed, which
    // only grows across restarts while the monotonic clock does (no reboot in between).
    uint64_t boot_id = 0;
};

struct Datagram {
    std::string to;  // "ip:port"
    std::vector<uint8_t> bytes;
};

// Where this appliance stands on a cluster.
struct Decision {
    uint64_t epoch = 0;     // the highest epoch chosen by a majority that this appliance knows
    std::string primary;    // the node chosen primary in it ("host:port"); empty: none yet
    bool writable = false;  // a majority's lease on that epoch is current: writes may be routed
    // Until when (now_ms's clock) the lease lets writes go on, if nothing renews it; only
    // meaningful while writable. The data path checks it itself, so a stale snapshot (a
    // process stopped and resumed) can never route a write past it.
    int64_t writable_until_ms = 0;
};

// A promotion this appliance must carry out (failover = "promote"): pg_promote() on `node`,
// chosen primary of `cluster` in `epoch`.
struct Promotion {
    std::string cluster;
    std::string node;
    uint64_t epoch = 0;
};

enum class MemberState : uint8_t { Alive, Suspect, Dead };
const char* to_string(MemberState state);

struct MemberRow {  // SHOW MEMBERS
    std::string address;
    bool self = false;
    MemberState state = MemberState::Alive;
    uint64_t incarnation = 0;
    int64_t heard_ms = -1;  // when a message from it was last accepted; -1 never
};

// One appliance's demand on a budgeted node (RecordKind::Demand).
struct NodeDemand {
    std::string appliance;  // numeric address, as config::Gossip::appliances
    std::string node;       // the node's endpoint, "host:port"
    int64_t held = 0;       // servers it holds there
    int64_t waiting = 0;    // its clients waiting for one
    int64_t limit = 0;      // the limit it keeps itself to there
    int64_t heard_ms = 0;   // when it was received (the receiver's clock)
};

struct Counters {
    uint64_t received = 0;
    uint64_t sent = 0;
    uint64_t forged = 0;     // bad HMAC, or from an address that is not a configured appliance
    uint64_t replayed = 0;   // a sequence number already seen, or an older boot
    uint64_t malformed = 0;  // authentic but unreadable
};

class Engine {
  public:
    // `seed` drives every random choice (probe order, back-off); `now_ms` is monotonic.
    Engine(Settings settings, uint64_t seed, int64_t now_ms);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // --- inputs ---
    // A datagram from `from` ("ip:port"). Anything unauthenticated, replayed or malformed is
    // dropped and counted, never trusted.
    void receive(std::string_view from, std::span<const uint8_t> bytes, int64_t now_ms);
    // What the local monitors see of a cluster now (health, role, LSNs of each node).
    void observe(const cluster::ClusterStatus& local, int64_t now_ms);
    // Runs timers: probes, suspicion, lease renewal, proposals. Call at next_tick_ms() or later.
    void tick(int64_t now_ms);
    // A CancelRequest for a client of appliance `to` (request = pid << 32 | key): sent to it
    // in an authenticated datagram of its own, now.
    void forward_cancel(std::string_view to, uint64_t request, int64_t now_ms);
    // This appliance's demand on each budgeted node: sent to every configured peer now.
    void send_demands(const std::vector<NodeDemand>& demands, int64_t now_ms);
    // A promotion handed out by take_promotions() failed (the node refused or is gone).
    void promotion_failed(const Promotion& promotion, int64_t now_ms);

    // [dcs]: from now on epochs and primaries are the store's (dcs/store.h); gossip still
    // spreads membership and the views of the nodes. `store` outlives the engine.
    void use_store(dcs::DecisionStore* store);

    // --- outputs ---
    std::vector<Datagram> take_outgoing();
    std::vector<Promotion> take_promotions();
    // CancelRequests other appliances forwarded to this one (pid << 32 | key).
    std::vector<uint64_t> take_cancels();
    int64_t next_tick_ms() const;
    // For a cluster the settings name; a default Decision for any other.
    Decision decision(std::string_view cluster, int64_t now_ms) const;
    // The latest demand each peer sent for each node, heard within max_age_ms.
    std::vector<NodeDemand> peer_demands(int64_t now_ms, int64_t max_age_ms) const;
    // Whether this appliance reaches a majority of the configured appliances.
    bool quorum(int64_t now_ms) const;
    std::vector<MemberRow> members() const;
    Counters counters() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pgplex::gossip
