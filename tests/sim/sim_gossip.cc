// Deterministic simulation of pgplex appliances deciding a cluster's primary by gossip
// (gossip/engine.h), in the spirit of TigerBeetle's simulator: 3 or 5 Engines over a
// simulated network (loss, delay, reordering, duplication, partitions that heal), appliance
// crashes and restarts (a fresh Engine with a newer boot), and a simulated cluster of one
// primary and two replicas (node crashes and restarts, promotions carried out after a delay,
// an external manager promoting in follow mode), each appliance seeing the nodes through its
// own monitor, which may be cut off from some of them. Forged and replayed datagrams are
// injected and must be counted and ignored.
//
// After every 10 ms step: never two primaries chosen in one epoch (across all appliances);
// never two appliances writable at once towards different primaries. After the chaos, a
// quiet period: the network heals (except, in half the runs, a minority kept apart),
// appliances come back, and nodes too (except, in a third, one lost for good, perhaps the
// primary). At its end every appliance of the majority side must agree on one chosen,
// writable primary that is up and primary (liveness), and none of the minority be writable.
//
//   sim_gossip [--seeds A-B | --seed S] [--verbose]
//
// With --store the appliances decide through a modelled decision store (dcs/store.h, the
// [dcs] path) instead of their own quorum: one linearizable store with revisions, reached by
// each appliance over its own link with delays; compare-and-swap races between appliances,
// leases that lapse or are revoked, links cut for a while, the whole store unreachable. The
// same invariants hold, and more: epochs only grow on every appliance, the store's epoch only
// grows, and an appliance cut off from the store for confirm_ms routes no writes. In the
// quiet period the minority is cut off from the store as well as from the others.
//
// Every run is a pure function of its seed; a failing seed prints itself and the command
// line that replays it.
#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "pgplex/cluster/topology.h"
#include "pgplex/dcs/store.h"
#include "pgplex/gossip/engine.h"
#include "pgplex/gossip/outbox.h"
#include "pgplex/gossip/wire.h"

namespace {

using pgplex::cluster::Role;
using pgplex::gossip::Engine;
using pgplex::gossip::Rng;

constexpr int64_t step_ms = 10;
constexpr int64_t chaos_ms = 40000;
constexpr int64_t quiet_ms = 30000;
constexpr int64_t observe_ms = 200;  // each appliance's monitor round
constexpr int64_t promote_delay_ms = 300;
constexpr int64_t manager_delay_ms = 3000;  // follow mode: primary missing this long
const char* const cluster_name = "main";

bool verbose = false;
bool store_mode = false;  // --store
const char* program = "sim_gossip";

constexpr int64_t store_confirm_ms = 2000;  // [dcs] ttl = 2
constexpr int64_t store_read_ms = store_confirm_ms / 4;
constexpr int64_t store_keepalive_ms = store_confirm_ms / 3;

using pgplex::dcs::Reading;
using pgplex::dcs::StoredDecision;

// One appliance's side of the modelled store: what its reads returned, its lease, and the
// compare-and-swaps its decider asked for (the Sim carries them to the store).
class SimStore final : public pgplex::dcs::DecisionStore {
  public:
    struct Proposal {
        std::string cluster;
        int64_t expected;
        StoredDecision next;
    };
    std::optional<Reading> reading(std::string_view cluster) const override {
        auto it = readings.find(std::string(cluster));
        if (it == readings.end()) return std::nullopt;
        return it->second;
    }
    int64_t lease_until_ms() const override { return lease_until; }
    int64_t confirm_ms() const override { return store_confirm_ms; }
    void propose(std::string_view cluster, int64_t expected, const StoredDecision& next) override {
        proposals.push_back(Proposal{std::string(cluster), expected, next});
    }

    std::map<std::string, Reading> readings;
    int64_t lease_until = 0;
    bool lease_lost = false;  // the store said the lease is gone: grant a new one
    std::vector<Proposal> proposals;
};

enum class StoreOpKind : uint8_t { Read, Cas, Keepalive };

// A request on its way to the store, or its answer on its way back.
struct StoreOp {
    int64_t at;
    uint64_t order;
    size_t appliance;
    uint64_t instance;
    StoreOpKind kind;
    bool answer;      // false: travelling to the store; true: back to the appliance
    int64_t sent_ms;  // when the appliance sent it
    SimStore::Proposal cas;
    StoredDecision read;  // the answer of a Read
    bool lease_ok = false;
};

struct Node {
    std::string name;
    bool up = true;
    Role role = Role::Replica;
    uint64_t lsn = 1000;
    int64_t up_at = -1;       // scheduled restart; -1 none
    int64_t promote_at = -1;  // a promotion completes then; -1 none
};

struct Appliance {
    std::string address;
    std::unique_ptr<Engine> engine;
    uint64_t instance = 0;   // grows with every (re)start
    int64_t up_at = -1;      // down until then; -1 up
    int group = 0;           // partition group
    std::set<size_t> blind;  // nodes its monitor cannot reach
    int64_t blind_until = 0;
    int64_t next_observe = 0;
    uint64_t forged_injected = 0;
    uint64_t replayed_injected = 0;
    // --store
    std::unique_ptr<SimStore> store;
    int64_t store_cut_until = 0;   // its link to the store is cut until then
    int64_t store_cut_since = -1;  // -1: the link is up
    int64_t next_read = 0;
    int64_t next_keepalive = 0;
    uint64_t epoch_seen = 0;  // the highest epoch its engine reported (this instance)
};

struct Packet {
    int64_t at;
    uint64_t order;  // ties broken by send order: deterministic
    std::string from;
    std::string to;
    std::vector<uint8_t> bytes;
};

struct Delivered {  // kept to replay later at the same receiver instance
    std::string from;
    size_t to;
    uint64_t instance;
    std::vector<uint8_t> bytes;
};

class Sim {
  public:
    explicit Sim(uint64_t seed) : seed_(seed), rng_(seed * 0x9e3779b97f4a7c15ULL + 1) {}
    bool run();
    int64_t now() const { return now_; }
    uint64_t steps = 0;
    uint64_t epochs() const { return chosen_.size(); }
    uint64_t promotions = 0;
    uint64_t replays_across_restarts = 0;
    int64_t settled_ms = -1;  // into the quiet period, when it first became live
    uint64_t cas_won = 0, cas_lost = 0, leases_lost = 0;

  private:
    pgplex::gossip::Settings settings_for(size_t i) const;
    void start(size_t i);
    void chaos();
    void quiet_start();
    void step_nodes();
    void step_network();
    void step_appliances();
    void handle_promotions(size_t i);
    void observe(size_t i);
    void send_all(size_t i);
    void inject(size_t i);
    void store_chaos();
    void step_store();
    void store_send(size_t i);
    void store_arrive(StoreOp& op);
    bool store_link(size_t i) const;
    bool check_store(size_t i, const pgplex::gossip::Decision& d);
    bool check_step();
    bool check_live();
    std::string live_problem();
    bool fail(const std::string& why);
    bool reaches(const std::string& from, const std::string& to) const;
    size_t index_of(const std::string& address) const;
    void log(const char* format, ...) __attribute__((format(printf, 2, 3)));

    uint64_t seed_;
    Rng rng_;
    int64_t now_ = 0;
    bool promote_ = false;
    bool quiet_ = false;
    size_t minority_ = 0;  // appliances 0..minority_-1 kept apart in the quiet period
    uint64_t loss_pct_ = 0, dup_pct_ = 0;
    int64_t partition_until_ = 0;
    int64_t no_primary_since_ = -1;
    uint64_t order_ = 0;
    std::vector<Appliance> appliances_;
    std::vector<Node> nodes_;
    std::deque<Packet> wire_;
    std::deque<Delivered> delivered_;
    std::map<uint64_t, std::string> chosen_;  // epoch -> primary, over all appliances
    // --store: the store itself.
    std::map<std::string, StoredDecision> stored_;
    int64_t revision_ = 0;
    std::map<size_t, int64_t> leases_;  // appliance -> when its lease expires
    int64_t store_down_until_ = 0;      // the whole store unreachable until then
    std::deque<StoreOp> store_wire_;
    uint64_t store_regressions_ = 0;
};

void Sim::log(const char* format, ...) {
    if (!verbose) return;
    va_list args;
    va_start(args, format);
    std::fprintf(stderr, "[%7" PRId64 "] ", now_);
    std::vfprintf(stderr, format, args);
    std::fputc('\n', stderr);
    va_end(args);
}

pgplex::gossip::Settings Sim::settings_for(size_t i) const {
    pgplex::gossip::Settings settings;
    settings.self = appliances_[i].address;
    for (const Appliance& other : appliances_)
        if (other.address != settings.self) settings.peers.push_back(other.address);
    settings.key.assign(32, 0x5a);
    settings.clusters.push_back({cluster_name, promote_, promote_ ? 1 << 20 : -1});
    // The wall clock in microseconds at start: grows across restarts.
    settings.boot_id = uint64_t(now_) * 1000 + 1000000;
    return settings;
}

void Sim::start(size_t i) {
    Appliance& a = appliances_[i];
    ++a.instance;
    a.engine = std::make_unique<Engine>(settings_for(i), seed_ * 1000 + a.instance, now_);
    a.epoch_seen = 0;
    a.store_cut_since = -1;
    if (store_mode) {
        a.store = std::make_unique<SimStore>();
        a.engine->use_store(a.store.get());
        a.next_read = now_;
        a.next_keepalive = now_;
    }
    a.up_at = -1;
    a.next_observe = now_;
    a.forged_injected = 0;
    a.replayed_injected = 0;
    log("appliance %zu starts (instance %" PRIu64 ")", i, a.instance);
}

size_t Sim::index_of(const std::string& address) const {
    for (size_t i = 0; i < appliances_.size(); ++i)
        if (appliances_[i].address == address) return i;
    return appliances_.size();
}

bool Sim::reaches(const std::string& from, const std::string& to) const {
    size_t a = index_of(from), b = index_of(to);
    return appliances_[a].group == appliances_[b].group;
}

// Random faults, each drawn once per step with a small probability.
void Sim::chaos() {
    if (store_mode) store_chaos();
    if (now_ >= partition_until_ && rng_.below(300) == 0) {
        for (Appliance& a : appliances_) a.group = int(rng_.below(2));
        partition_until_ = now_ + 1000 + int64_t(rng_.below(7000));
        log("partition until %" PRId64, partition_until_);
    } else if (now_ >= partition_until_) {
        for (Appliance& a : appliances_) a.group = 0;
    }
    for (size_t i = 0; i < appliances_.size(); ++i) {
        Appliance& a = appliances_[i];
        if (a.up_at < 0 && rng_.below(5000) == 0) {
            a.engine.reset();
            a.up_at = now_ + 1000 + int64_t(rng_.below(5000));
            log("appliance %zu crashes until %" PRId64, i, a.up_at);
        }
        if (now_ >= a.blind_until && rng_.below(2000) == 0) {
            a.blind = {size_t(rng_.below(nodes_.size()))};
            a.blind_until = now_ + 2000 + int64_t(rng_.below(4000));
        } else if (now_ >= a.blind_until) {
            a.blind.clear();
        }
    }
    for (size_t n = 0; n < nodes_.size(); ++n) {
        if (nodes_[n].up && rng_.below(nodes_[n].role == Role::Primary ? 1000 : 3000) == 0) {
            nodes_[n].up = false;
            nodes_[n].promote_at = -1;
            nodes_[n].up_at = now_ + 2000 + int64_t(rng_.below(8000));
            log("node %zu (%s) crashes", n, to_string(nodes_[n].role));
        }
    }
}

// --- the modelled store (--store) ---------------------------------------------------------

// Links cut, the whole store down, leases revoked: each drawn once per step.
void Sim::store_chaos() {
    if (now_ >= store_down_until_ && rng_.below(8000) == 0) {
        store_down_until_ = now_ + 1000 + int64_t(rng_.below(4000));
        log("the store is unreachable until %" PRId64, store_down_until_);
    }
    for (size_t i = 0; i < appliances_.size(); ++i) {
        Appliance& a = appliances_[i];
        if (now_ >= a.store_cut_until && rng_.below(3000) == 0) {
            a.store_cut_until = now_ + 1000 + int64_t(rng_.below(6000));
            log("appliance %zu cut off from the store until %" PRId64, i, a.store_cut_until);
        }
        if (leases_.count(i) != 0 && rng_.below(5000) == 0) {
            leases_.erase(i);
            log("the store revokes appliance %zu's lease", i);
        }
    }
}

bool Sim::store_link(size_t i) const {
    if (now_ < store_down_until_ || now_ < appliances_[i].store_cut_until) return false;
    return !(quiet_ && i < minority_);
}

// An appliance's reads (every confirm/4), keepalives (every confirm/3, a grant when its lease
// was lost) and compare-and-swaps leave for the store; over a cut link they are lost.
void Sim::store_send(size_t i) {
    Appliance& a = appliances_[i];
    std::vector<StoreOp> out;
    auto op = [&](StoreOpKind kind) {
        return StoreOp{0, 0, i, a.instance, kind, false, now_, {}, {}, false};
    };
    for (SimStore::Proposal& proposal : a.store->proposals) {
        StoreOp cas = op(StoreOpKind::Cas);
        cas.cas = std::move(proposal);
        out.push_back(std::move(cas));
        a.next_read = now_;  // read back the outcome at once
    }
    a.store->proposals.clear();
    if (now_ >= a.next_read) {
        a.next_read = now_ + store_read_ms;
        out.push_back(op(StoreOpKind::Read));
    }
    if (now_ >= a.next_keepalive || a.store->lease_lost) {
        a.next_keepalive = now_ + store_keepalive_ms;
        a.store->lease_lost = false;
        out.push_back(op(StoreOpKind::Keepalive));
    }
    bool link = store_link(i);
    if (!link && a.store_cut_since < 0) a.store_cut_since = now_;
    if (link) a.store_cut_since = -1;
    if (!link) return;
    for (StoreOp& request : out) {
        request.order = order_++;
        request.at = now_ + 1 + int64_t(rng_.below(20)) + (rng_.below(40) == 0 ? 300 : 0);
        store_wire_.push_back(std::move(request));
    }
}

// A request reaches the store: applied there, linearizably, at this instant.
void Sim::store_arrive(StoreOp& op) {
    switch (op.kind) {
        case StoreOpKind::Read:
            op.read = stored_[cluster_name];
            break;
        case StoreOpKind::Cas: {
            StoredDecision& current = stored_[op.cas.cluster];
            if (current.revision != op.cas.expected) {
                ++cas_lost;
                break;
            }
            if (op.cas.next.epoch <= current.epoch) ++store_regressions_;  // check_step fails
            current = op.cas.next;
            current.revision = ++revision_;
            ++cas_won;
            log("store: epoch %" PRIu64 " -> %s (by %s)", current.epoch, current.primary.c_str(),
                current.by.c_str());
            break;
        }
        case StoreOpKind::Keepalive: {
            auto lease = leases_.find(op.appliance);
            // A keepalive of an expired or revoked lease is answered "expired" (the appliance
            // then grants a new one).
            op.lease_ok = lease != leases_.end() && lease->second > now_;
            if (op.lease_ok) lease->second = now_ + store_confirm_ms;
            break;
        }
    }
}

void Sim::step_store() {
    std::vector<StoreOp> due;
    for (auto it = store_wire_.begin(); it != store_wire_.end();) {
        if (it->at <= now_) {
            due.push_back(std::move(*it));
            it = store_wire_.erase(it);
        } else {
            ++it;
        }
    }
    std::sort(due.begin(), due.end(), [](const StoreOp& a, const StoreOp& b) {
        return std::tie(a.at, a.order) < std::tie(b.at, b.order);
    });
    for (StoreOp& op : due) {
        Appliance& a = appliances_[op.appliance];
        if (!op.answer) {
            if (now_ < store_down_until_) continue;
            store_arrive(op);
            op.answer = true;
            op.at = now_ + 1 + int64_t(rng_.below(20)) + (rng_.below(40) == 0 ? 300 : 0);
            op.order = order_++;
            store_wire_.push_back(std::move(op));
            continue;
        }
        if (!a.engine || a.instance != op.instance || !store_link(op.appliance)) continue;
        switch (op.kind) {
            case StoreOpKind::Read:
                a.store->readings[cluster_name] = Reading{op.read, op.sent_ms};
                break;
            case StoreOpKind::Cas:
                break;  // its outcome shows in the read that follows it
            case StoreOpKind::Keepalive:
                if (op.lease_ok) {
                    a.store->lease_until =
                        std::max(a.store->lease_until, op.sent_ms + store_confirm_ms);
                } else {
                    // Expired or revoked: a fresh grant, which counts from its own sending.
                    ++leases_lost;
                    leases_[op.appliance] = now_ + store_confirm_ms;
                    a.store->lease_lost = true;
                }
                break;
        }
    }
}

// After every step: epochs only grow on this appliance, the store's only grow, and an
// appliance cut off from the store for confirm_ms routes no writes.
bool Sim::check_store(size_t i, const pgplex::gossip::Decision& d) {
    Appliance& a = appliances_[i];
    if (d.epoch < a.epoch_seen)
        return fail("appliance " + std::to_string(i) + " went back from epoch " +
                    std::to_string(a.epoch_seen) + " to " + std::to_string(d.epoch));
    a.epoch_seen = d.epoch;
    if (d.writable && a.store_cut_since >= 0 && now_ - a.store_cut_since >= store_confirm_ms)
        return fail("appliance " + std::to_string(i) + " routes writes " +
                    std::to_string(now_ - a.store_cut_since) + " ms after it lost the store");
    if (store_regressions_ != 0) return fail("a compare-and-swap lowered the store's epoch");
    return true;
}

void Sim::quiet_start() {
    quiet_ = true;
    loss_pct_ = 0;
    dup_pct_ = 0;
    // Half the runs keep a minority apart for the whole period: the majority side must still
    // end live, the minority must not be writable.
    minority_ = rng_.below(2) == 0 ? (appliances_.size() - 1) / 2 : 0;
    for (size_t i = 0; i < appliances_.size(); ++i) {
        appliances_[i].group = i < minority_ ? 1 : 0;
        appliances_[i].blind.clear();
        if (appliances_[i].up_at >= 0) appliances_[i].up_at = now_;
    }
    for (Node& node : nodes_)
        if (!node.up) node.up_at = now_;
    store_down_until_ = 0;  // the store heals too, except for the minority (store_link())
    for (Appliance& a : appliances_) a.store_cut_until = 0;
    // A third of the runs lose one node (perhaps the primary) for good: a live replica
    // remains, and a failover may have to complete within the period.
    if (rng_.below(3) == 0) {
        Node& lost = nodes_[rng_.below(nodes_.size())];
        lost.up = false;
        lost.up_at = -1;
        lost.promote_at = -1;
    }
    log("quiet period (%zu appliances kept apart)", minority_);
}

// Fencing, as the monitor would do it: a node that becomes primary demotes any other.
void demote_others(std::vector<Node>& nodes, size_t keep) {
    for (size_t n = 0; n < nodes.size(); ++n)
        if (n != keep && nodes[n].role == Role::Primary) nodes[n].role = Role::Replica;
}

void Sim::step_nodes() {
    std::optional<size_t> primary;
    for (size_t n = 0; n < nodes_.size(); ++n) {
        Node& node = nodes_[n];
        if (!node.up && node.up_at >= 0 && now_ >= node.up_at) {
            node.up = true;
            node.up_at = -1;
            for (const Node& other : nodes_)
                if (&other != &node && other.up && other.role == Role::Primary)
                    node.role = Role::Replica;  // the old primary rejoins as a replica
            log("node %zu up as %s", n, to_string(node.role));
        }
        if (node.up && node.promote_at >= 0 && now_ >= node.promote_at) {
            node.promote_at = -1;
            node.role = Role::Primary;
            demote_others(nodes_, n);
            log("node %zu promoted", n);
        }
        if (node.up && node.role == Role::Primary) primary = n;
    }
    if (primary) {
        nodes_[*primary].lsn += 100;
        for (Node& node : nodes_)
            if (node.up && node.role == Role::Replica)
                node.lsn = std::max(node.lsn, nodes_[*primary].lsn - rng_.below(500));
        no_primary_since_ = -1;
        return;
    }
    if (no_primary_since_ < 0) no_primary_since_ = now_;
    if (promote_ || now_ - no_primary_since_ < manager_delay_ms) return;
    // Follow mode: the external manager (Patroni, say) promotes the most advanced replica.
    std::optional<size_t> best;
    for (size_t n = 0; n < nodes_.size(); ++n)
        if (nodes_[n].up && (!best || nodes_[n].lsn > nodes_[*best].lsn)) best = n;
    if (!best) return;
    nodes_[*best].role = Role::Primary;
    demote_others(nodes_, *best);
    log("manager promotes node %zu", *best);
}

void Sim::step_network() {
    std::vector<Packet> due;
    for (auto it = wire_.begin(); it != wire_.end();) {
        if (it->at <= now_) {
            due.push_back(std::move(*it));
            it = wire_.erase(it);
        } else {
            ++it;
        }
    }
    std::sort(due.begin(), due.end(), [](const Packet& a, const Packet& b) {
        return std::tie(a.at, a.order) < std::tie(b.at, b.order);
    });
    for (Packet& packet : due) {
        size_t to = index_of(packet.to);
        Appliance& a = appliances_[to];
        if (!a.engine || !reaches(packet.from, packet.to)) continue;
        a.engine->receive(packet.from, packet.bytes, now_);
        delivered_.push_back(Delivered{packet.from, to, a.instance, std::move(packet.bytes)});
        if (delivered_.size() > 200) delivered_.pop_front();
    }
}

void Sim::send_all(size_t i) {
    for (pgplex::gossip::Datagram& datagram : appliances_[i].engine->take_outgoing()) {
        if (index_of(datagram.to) == appliances_.size()) continue;
        if (!reaches(appliances_[i].address, datagram.to)) continue;
        if (rng_.below(100) < loss_pct_) continue;
        int copies = rng_.below(100) < dup_pct_ ? 2 : 1;
        for (int c = 0; c < copies; ++c) {
            int64_t delay = 1 + int64_t(rng_.below(quiet_ ? 5 : 40));
            if (!quiet_ && rng_.below(50) == 0) delay += 300;  // a straggler
            wire_.push_back(Packet{now_ + delay, order_++, appliances_[i].address, datagram.to,
                                   datagram.bytes});
        }
    }
}

// Whether a datagram names the receiver's boot id (its sender had heard the receiver).
bool addressed_to_a_boot(const std::vector<uint8_t>& bytes) {
    pgplex::gossip::Header header;
    std::vector<pgplex::gossip::Record> records;
    const std::vector<uint8_t> key(32, 0x5a);
    return pgplex::gossip::decode(bytes, key, header, records) ==
               pgplex::gossip::DecodeResult::Ok &&
           header.receiver_boot != 0;
}

// Forged datagrams (random bytes, one byte flipped, or an authentic one from an address that
// is no appliance) and replays of delivered ones, also to a later life of their receiver.
void Sim::inject(size_t i) {
    Appliance& a = appliances_[i];
    std::string from = appliances_[(i + 1) % appliances_.size()].address;
    if (rng_.below(200) == 0) {
        std::vector<uint8_t> bytes(1 + rng_.below(300));
        for (uint8_t& byte : bytes) byte = uint8_t(rng_.next());
        a.engine->receive(from, bytes, now_);
        ++a.forged_injected;
    }
    if (rng_.below(200) == 0 && !delivered_.empty()) {
        Delivered copy = delivered_[rng_.below(delivered_.size())];
        if (copy.to == i && copy.instance != a.instance && addressed_to_a_boot(copy.bytes)) {
            // Captured before the receiver restarted: its new life must refuse it too.
            a.engine->receive(copy.from, copy.bytes, now_);
            ++a.replayed_injected;
            ++replays_across_restarts;
        } else if (copy.to == i && copy.instance == a.instance) {
            if (rng_.below(2) == 0) {
                copy.bytes[rng_.below(copy.bytes.size())] ^= uint8_t(1 + rng_.below(255));
                a.engine->receive(copy.from, copy.bytes, now_);
                ++a.forged_injected;
            } else if (rng_.below(2) == 0) {
                a.engine->receive(copy.from, copy.bytes, now_);
                ++a.replayed_injected;
            } else {  // authentic, but not from a configured appliance's address
                a.engine->receive("10.9.9.9:7946", copy.bytes, now_);
                ++a.forged_injected;
            }
        }
    }
}

pgplex::cluster::ClusterStatus view_of(const std::vector<Node>& nodes,
                                       const std::set<size_t>& blind) {
    pgplex::cluster::ClusterStatus status;
    status.name = cluster_name;
    for (size_t n = 0; n < nodes.size(); ++n) {
        pgplex::cluster::NodeStatus node;
        node.name = nodes[n].name;
        node.healthy = nodes[n].up && blind.count(n) == 0;
        node.role = nodes[n].role;
        node.replay_lsn = nodes[n].lsn;
        node.current_lsn = nodes[n].role == Role::Primary ? nodes[n].lsn : 0;
        status.nodes.push_back(node);
    }
    return status;
}

void Sim::observe(size_t i) {
    Appliance& a = appliances_[i];
    if (now_ < a.next_observe) return;
    a.next_observe = now_ + observe_ms;
    a.engine->observe(view_of(nodes_, a.blind), now_);
}

void Sim::handle_promotions(size_t i) {
    for (const pgplex::gossip::Promotion& promotion : appliances_[i].engine->take_promotions()) {
        log("appliance %zu promotes %s (epoch %" PRIu64 ")", i, promotion.node.c_str(),
            promotion.epoch);
        for (Node& node : nodes_) {
            if (node.name != promotion.node) continue;
            if (!node.up || appliances_[i].blind.count(size_t(&node - nodes_.data())) != 0)
                appliances_[i].engine->promotion_failed(promotion, now_);
            else if (node.role == Role::Replica && node.promote_at < 0) {
                node.promote_at = now_ + promote_delay_ms;
                ++promotions;
            }
        }
    }
}

void Sim::step_appliances() {
    for (size_t i = 0; i < appliances_.size(); ++i) {
        Appliance& a = appliances_[i];
        if (!a.engine && a.up_at >= 0 && now_ >= a.up_at) start(i);
        if (!a.engine) continue;
        observe(i);
        if (now_ >= a.engine->next_tick_ms()) a.engine->tick(now_);
        if (!quiet_) inject(i);
        handle_promotions(i);
        send_all(i);
        if (store_mode) store_send(i);
    }
}

bool Sim::fail(const std::string& why) {
    std::fprintf(stderr, "sim_gossip: seed %" PRIu64 " FAILED at t=%" PRId64 " ms: %s\n", seed_,
                 now_, why.c_str());
    std::fprintf(stderr, "replay: %s%s --seed %" PRIu64 " --verbose\n", program,
                 store_mode ? " --store" : "", seed_);
    return false;
}

bool Sim::check_step() {
    std::map<std::string, size_t> writable;  // primary -> an appliance writable towards it
    for (size_t i = 0; i < appliances_.size(); ++i) {
        Appliance& a = appliances_[i];
        if (!a.engine) continue;
        pgplex::gossip::Decision d = a.engine->decision(cluster_name, now_);
        if (d.epoch > 0) {
            auto [it, fresh] = chosen_.emplace(d.epoch, d.primary);
            if (!fresh && it->second != d.primary)
                return fail("epoch " + std::to_string(d.epoch) + " chose both " + it->second +
                            " and " + d.primary);
            if (fresh) log("epoch %" PRIu64 " chose %s", d.epoch, d.primary.c_str());
        }
        if (d.writable) writable.emplace(d.primary, i);
        if (store_mode && !check_store(i, d)) return false;
        pgplex::gossip::Counters c = a.engine->counters();
        if (c.forged != a.forged_injected)
            return fail("appliance " + std::to_string(i) + " counted " + std::to_string(c.forged) +
                        " forged of " + std::to_string(a.forged_injected) + " injected");
        if (c.replayed < a.replayed_injected) return fail("a replayed datagram was accepted");
    }
    if (writable.size() > 1)
        return fail("two appliances writable towards " + writable.begin()->first + " and " +
                    std::next(writable.begin())->first);
    return true;
}

// Empty when every appliance agrees on one chosen, writable primary that is a running
// primary; else what is wrong.
std::string Sim::live_problem() {
    std::optional<pgplex::gossip::Decision> first;
    for (size_t i = minority_; i < appliances_.size(); ++i) {
        if (!appliances_[i].engine) return "appliance " + std::to_string(i) + " is down";
        pgplex::gossip::Decision d = appliances_[i].engine->decision(cluster_name, now_);
        std::string who = "appliance " + std::to_string(i);
        if (d.epoch == 0 || !d.writable)
            return who + " has no writable primary (epoch " + std::to_string(d.epoch) + ")";
        if (first && (first->epoch != d.epoch || first->primary != d.primary))
            return who + " disagrees on the primary";
        first = d;
    }
    for (const Node& node : nodes_)
        if (node.name == first->primary && (!node.up || node.role != Role::Primary))
            return "the chosen primary " + node.name + " is not a running primary";
    return "";
}

bool Sim::check_live() {
    std::string problem = live_problem();
    if (!problem.empty()) return fail(problem + " at the end of the quiet period");
    for (size_t i = 0; i < minority_; ++i)
        if (appliances_[i].engine->decision(cluster_name, now_).writable)
            return fail("appliance " + std::to_string(i) + " is writable in a minority");
    return true;
}

bool Sim::run() {
    size_t count = seed_ % 2 == 0 ? 3 : 5;
    promote_ = (seed_ / 2) % 2 == 1;
    loss_pct_ = rng_.below(20);
    dup_pct_ = rng_.below(6);
    for (size_t n = 0; n < 3; ++n)
        nodes_.push_back(
            Node{"db" + std::to_string(n) + ":5432", true, n == 0 ? Role::Primary : Role::Replica});
    appliances_.resize(count);
    for (size_t i = 0; i < count; ++i) {
        appliances_[i].address = "10.0.0." + std::to_string(i + 1) + ":7946";
    }
    for (size_t i = 0; i < count; ++i) start(i);
    log("seed %" PRIu64 ": %zu appliances, %s, loss %" PRIu64 "%%, duplication %" PRIu64 "%%",
        seed_, count, promote_ ? "promote" : "follow", loss_pct_, dup_pct_);
    for (now_ = 0; now_ <= chaos_ms + quiet_ms; now_ += step_ms, ++steps) {
        if (now_ < chaos_ms) chaos();
        if (now_ == chaos_ms) quiet_start();
        step_nodes();
        step_network();
        if (store_mode) step_store();
        step_appliances();
        if (!check_step()) return false;
        if (quiet_ && settled_ms < 0 && live_problem().empty()) settled_ms = now_ - chaos_ms;
    }
    return check_live();
}

bool parse_range(const char* text, uint64_t& first, uint64_t& last) {
    char* end = nullptr;
    first = std::strtoull(text, &end, 10);
    if (end == text) return false;
    if (*end == '\0') {
        last = first;
        return true;
    }
    if (*end != '-') return false;
    const char* rest = end + 1;
    last = std::strtoull(rest, &end, 10);
    return end != rest && *end == '\0' && last >= first;
}

}  // namespace

int main(int argc, char** argv) {
    program = argv[0];
    uint64_t first = 1, last = 40;
    for (int i = 1; i < argc; ++i) {
        bool has_value = i + 1 < argc;
        if (std::strcmp(argv[i], "--verbose") == 0 || std::strcmp(argv[i], "-v") == 0) {
            verbose = true;
        } else if (std::strcmp(argv[i], "--store") == 0) {
            store_mode = true;
        } else if ((std::strcmp(argv[i], "--seeds") == 0 || std::strcmp(argv[i], "--seed") == 0) &&
                   has_value && parse_range(argv[i + 1], first, last)) {
            ++i;
        } else {
            std::fprintf(stderr, "usage: %s [--store] [--seeds A-B | --seed S] [--verbose]\n",
                         argv[0]);
            return 2;
        }
    }
    uint64_t steps = 0, failed = 0, epochs = 0, promotions = 0, cas_won = 0, cas_lost = 0;
    uint64_t leases_lost = 0;
    int64_t settled_max = 0;
    uint64_t replays = 0;
    for (uint64_t seed = first; seed <= last; ++seed) {
        Sim sim(seed);
        if (!sim.run()) ++failed;
        steps += sim.steps;
        epochs += sim.epochs();
        promotions += sim.promotions;
        settled_max = std::max(settled_max, sim.settled_ms);
        replays += sim.replays_across_restarts;
        cas_won += sim.cas_won;
        cas_lost += sim.cas_lost;
        leases_lost += sim.leases_lost;
    }
    std::printf("sim_gossip: seeds %" PRIu64 "-%" PRIu64 ": %" PRIu64 " passed, %" PRIu64
                " failed; %" PRIu64 " steps, %" PRIu64 " epochs chosen, %" PRIu64
                " promotions, %" PRIu64 " replays across restarts refused; live at most %" PRId64
                " ms into the quiet period\n",
                first, last, last - first + 1 - failed, failed, steps, epochs, promotions, replays,
                settled_max);
    if (store_mode)
        std::printf("sim_gossip --store: %" PRIu64 " compare-and-swaps won, %" PRIu64
                    " lost to a race, %" PRIu64 " leases lapsed or revoked\n",
                    cas_won, cas_lost, leases_lost);
    return failed == 0 ? 0 : 1;
}
