// The gossip engine (gossip/engine.h): authenticates and de-duplicates datagrams, hands their
// records to membership (SWIM) and the decider (views, Paxos, leases), and seals what they
// leave in the outbox into datagrams, each topped up with piggybacked records up to
// datagram_bytes_max. Records addressed to this appliance itself are handed straight back,
// so a lone appliance (majority of one) runs the same code as a group.
#include "pgplex/gossip/engine.h"

#include <algorithm>
#include <map>
#include <set>

#include "pgplex/base/assert.h"
#include "pgplex/gossip/decider.h"
#include "pgplex/gossip/membership.h"
#include "pgplex/gossip/outbox.h"
#include "pgplex/gossip/wire.h"

namespace pgplex::gossip {

namespace {

// Local hand-offs (ourself as proposer and acceptor) settle in a few rounds; more means a
// record loop, a programmer error.
constexpr int local_rounds_max = 64;

uint64_t derive_boot(const Settings& settings, uint64_t seed, int64_t now_ms) {
    if (settings.boot_id != 0) return settings.boot_id;
    return uint64_t(std::max<int64_t>(now_ms, 0)) * 1000 + seed % 1000 + 1;
}

// Demands kept from peers, (peer, node) pairs; more are dropped.
constexpr size_t demands_max = 4096;
// Forwarded CancelRequests waiting for the control plane; more are dropped.
constexpr size_t cancels_max = 1024;

bool is_membership(RecordKind kind) {
    return kind == RecordKind::Ping || kind == RecordKind::Ack || kind == RecordKind::PingReq ||
           kind == RecordKind::Member;
}

}  // namespace

const char* to_string(MemberState state) {
    switch (state) {
        case MemberState::Alive:
            return "alive";
        case MemberState::Suspect:
            return "suspect";
        case MemberState::Dead:
            return "dead";
    }
    return "?";
}

struct Engine::Impl {
    Settings settings;
    uint64_t boot;
    Rng rng;
    Membership membership;
    Decider decider;
    Counters counters;
    std::map<std::string, ReplayGuard> guards;  // per sender
    std::map<std::string, uint64_t> seqs;       // per receiver, last sent
    std::set<std::string> heard;                // appliances heard from since our boot
    Outbox outbox;
    std::vector<Datagram> outgoing;
    std::vector<uint64_t> cancels;  // forwarded CancelRequests, pid << 32 | key
    // The latest Demand of each (peer, node); a peer has at most one per configured node.
    std::map<std::pair<std::string, std::string>, NodeDemand> demands;
    int64_t last_tick_ms;

    Impl(Settings given, uint64_t seed, int64_t now_ms)
        : settings(std::move(given)),
          boot(derive_boot(settings, seed, now_ms)),
          rng(seed),
          membership(settings, boot, now_ms),
          decider(settings, boot, now_ms),
          last_tick_ms(now_ms) {}

    bool configured(const std::string& address) const {
        return std::find(settings.peers.begin(), settings.peers.end(), address) !=
               settings.peers.end();
    }
    void dispatch(const std::string& from, const Record& record, int64_t now_ms);
    void flush(int64_t now_ms);
    void seal(const std::string& to, std::vector<Record>& direct, int64_t now_ms);
};

void Engine::Impl::dispatch(const std::string& from, const Record& record, int64_t now_ms) {
    if (record.kind == RecordKind::Cancel) {
        // Authenticated and fresh (the replay guard passed it): at most cancels_max wait,
        // since the control plane takes them on every turn.
        if (cancels.size() < cancels_max) cancels.push_back(record.id);
        return;
    }
    if (record.kind == RecordKind::Demand) {
        // Only configured appliances get this far; their nodes are bounded by the config,
        // but a peer's other config could name more: keep at most demands_max.
        auto key = std::make_pair(from, record.node);
        if (demands.size() >= demands_max && demands.find(key) == demands.end()) return;
        NodeDemand& demand = demands[key];
        demand = {from,
                  record.node,
                  int64_t(std::min<uint64_t>(record.id, INT32_MAX)),
                  int64_t(std::min<uint64_t>(record.epoch, INT32_MAX)),
                  int64_t(std::min<uint64_t>(record.boot, INT32_MAX)),
                  now_ms};
        return;
    }
    if (is_membership(record.kind))
        membership.on_record(from, record, now_ms, outbox);
    else
        decider.on_record(from, record, now_ms, outbox);
}

void Engine::Impl::flush(int64_t now_ms) {
    std::map<std::string, std::vector<Record>> pending;
    for (int round = 0; !outbox.items.empty(); ++round) {
        PGPLEX_ASSERT(round < local_rounds_max);
        std::vector<std::pair<std::string, Record>> items;
        items.swap(outbox.items);
        for (auto& [to, record] : items) {
            if (to == settings.self)
                dispatch(settings.self, record, now_ms);
            else
                pending[to].push_back(std::move(record));
        }
    }
    for (auto& [to, records] : pending) seal(to, records, now_ms);
}

// Seals the records for `to` into as many datagrams as they need, each topped up with
// piggybacked membership updates, States and Views.
void Engine::Impl::seal(const std::string& to, std::vector<Record>& direct, int64_t now_ms) {
    size_t header = 4 + 1 + 1 + settings.self.size() + 1 + to.size() + 4 * 8 + 2;
    size_t at = 0;
    while (at < direct.size()) {
        size_t room = datagram_bytes_max - mac_bytes - header;
        std::vector<Record> records;
        for (; at < direct.size(); ++at) {
            size_t size = record_size(direct[at]);
            if (size > room && !records.empty()) break;
            PGPLEX_ASSERT(size <= room);  // direct records are small; views only piggyback
            room -= size;
            records.push_back(std::move(direct[at]));
        }
        membership.piggyback(to, room, records);
        decider.piggyback(room, records, now_ms);
        Header head{settings.self,    to, boot, ++seqs[to], membership.incarnation(),
                    guards[to].boot()};
        Datagram datagram{to, {}};
        PGPLEX_ASSERT(encode(head, records, settings.key, datagram.bytes));
        outgoing.push_back(std::move(datagram));
        ++counters.sent;
    }
}

Engine::Engine(Settings settings, uint64_t seed, int64_t now_ms) {
    // The configuration refuses these before an Engine is made: here they are bugs.
    PGPLEX_ASSERT(settings.key.size() >= key_bytes_min);
    PGPLEX_ASSERT(!settings.self.empty() && settings.self.size() <= address_bytes_max);
    PGPLEX_ASSERT(settings.probe_timeout_ms > 0 &&
                  settings.probe_timeout_ms < settings.probe_interval_ms);
    PGPLEX_ASSERT(settings.suspect_timeout_ms > 0 && settings.lease_ms >= 4);
    std::vector<std::string> peers;  // without self and duplicates, in the config's order
    for (std::string& peer : settings.peers) {
        PGPLEX_ASSERT(!peer.empty() && peer.size() <= address_bytes_max);
        if (peer != settings.self && std::find(peers.begin(), peers.end(), peer) == peers.end())
            peers.push_back(std::move(peer));
    }
    settings.peers = std::move(peers);
    for (const ClusterPolicy& policy : settings.clusters)
        PGPLEX_ASSERT(!policy.name.empty() && policy.name.size() <= address_bytes_max);
    impl_ = std::make_unique<Impl>(std::move(settings), seed, now_ms);
}

Engine::~Engine() = default;

void Engine::receive(std::string_view from, std::span<const uint8_t> bytes, int64_t now_ms) {
    Impl& s = *impl_;
    Header header;
    std::vector<Record> records;
    switch (decode(bytes, s.settings.key, header, records)) {
        case DecodeResult::Ok:
            break;
        case DecodeResult::Forged:
            ++s.counters.forged;
            return;
        case DecodeResult::Malformed:
            ++s.counters.malformed;
            return;
    }
    // Authentic, but not from where it says, or not for us: someone replays it elsewhere.
    if (!s.configured(header.sender) || header.sender != from ||
        header.receiver != s.settings.self) {
        ++s.counters.forged;
        return;
    }
    // Sent to an earlier life of ours: a replay (our new replay window knows nothing of it).
    bool to_old_life = header.receiver_boot != 0 && header.receiver_boot != s.boot;
    ReplayGuard& guard = s.guards[header.sender];
    if (to_old_life || guard.check(header.boot, header.seq) != ReplayGuard::Verdict::Fresh) {
        ++s.counters.replayed;
        return;
    }
    guard.accept(header.boot, header.seq);
    ++s.counters.received;
    s.heard.insert(header.sender);
    s.membership.heard(header, now_ms);
    for (const Record& record : records) s.dispatch(header.sender, record, now_ms);
    s.flush(now_ms);
}

void Engine::observe(const cluster::ClusterStatus& local, int64_t now_ms) {
    impl_->decider.observe(local, now_ms);
}

void Engine::use_store(dcs::DecisionStore* store) {
    impl_->decider.use_store(store);
}

void Engine::tick(int64_t now_ms) {
    Impl& s = *impl_;
    s.membership.tick(now_ms, s.rng, s.outbox);
    s.decider.tick(now_ms, s.heard.size(), s.membership.reachable(), s.rng, s.outbox);
    s.flush(now_ms);
    s.last_tick_ms = now_ms;
}

void Engine::promotion_failed(const Promotion& promotion, int64_t now_ms) {
    impl_->decider.promotion_failed(promotion, now_ms);
}

std::vector<Datagram> Engine::take_outgoing() {
    std::vector<Datagram> out;
    out.swap(impl_->outgoing);
    return out;
}

void Engine::forward_cancel(std::string_view to, uint64_t request, int64_t now_ms) {
    Record record;
    record.kind = RecordKind::Cancel;
    record.id = request;
    impl_->outbox.items.emplace_back(std::string(to), std::move(record));
    impl_->flush(now_ms);
}

void Engine::send_demands(const std::vector<NodeDemand>& demands, int64_t now_ms) {
    for (const std::string& peer : impl_->settings.peers) {
        for (const NodeDemand& demand : demands) {
            Record record;
            record.kind = RecordKind::Demand;
            record.node = demand.node;
            record.id = uint64_t(std::max<int64_t>(0, demand.held));
            record.epoch = uint64_t(std::max<int64_t>(0, demand.waiting));
            record.boot = uint64_t(std::max<int64_t>(0, demand.limit));
            impl_->outbox.items.emplace_back(peer, std::move(record));
        }
    }
    impl_->flush(now_ms);
}

std::vector<NodeDemand> Engine::peer_demands(int64_t now_ms, int64_t max_age_ms) const {
    std::vector<NodeDemand> out;
    for (const auto& [key, demand] : impl_->demands)
        if (now_ms - demand.heard_ms <= max_age_ms) out.push_back(demand);
    return out;
}

std::vector<uint64_t> Engine::take_cancels() {
    std::vector<uint64_t> out;
    out.swap(impl_->cancels);
    return out;
}

std::vector<Promotion> Engine::take_promotions() {
    return impl_->decider.take_promotions();
}

int64_t Engine::next_tick_ms() const {
    // A quarter of the shortest timer: probes, lease renewals and deadlines run late by at
    // most that.
    const Settings& s = impl_->settings;
    int64_t step = std::min(s.probe_timeout_ms, s.lease_ms / 4) / 4;
    return impl_->last_tick_ms + std::clamp<int64_t>(step, 5, 50);
}

Decision Engine::decision(std::string_view cluster, int64_t now_ms) const {
    return impl_->decider.decision(cluster, now_ms);
}

bool Engine::quorum(int64_t now_ms) const {
    return impl_->membership.quorum(now_ms);
}

std::vector<MemberRow> Engine::members() const {
    return impl_->membership.rows();
}

Counters Engine::counters() const {
    return impl_->counters;
}

}  // namespace pgplex::gossip
