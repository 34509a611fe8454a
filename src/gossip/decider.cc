// Per-cluster decisions among the appliances: epochs, primaries, leases (gossip/decider.h).
//
// The model. N appliances are configured (self + peers); a majority is N/2 + 1. Every epoch
// is one instance of single-decree Paxos whose value is the primary node. Ballots are
// (round, proposer address). A proposer proposes in the epoch after the highest chosen one it
// knows (next_epoch() has the exceptions), so concurrent proposers meet in one instance and
// at most one primary is ever chosen per epoch. Decision.epoch/primary is the highest chosen
// epoch this appliance has learned (from its own Paxos round, a peer's State record or a
// lease request). Every Prepare/Accept names the proposer's highest chosen epoch; an
// acceptor that knows a later one ignores it (the proposer's reasons are stale), and a
// proposer drops its proposal as soon as it learns a newer chosen epoch.
//
// When to propose. Every appliance's monitors' view of the nodes rides on the gossip; a view
// is fresh while younger than view_fresh_ms(). Follow mode (promote = false): propose a node
// X when a majority of fresh views see X healthy and reporting Primary and a majority see
// the current primary not (healthy and Primary). Promote mode: propose when a majority of
// fresh views see the current primary unhealthy; the candidate is the healthy replica, seen
// healthy by a majority, with the most advanced replay LSN within max_failover_lag_bytes of
// the old primary's last known LSN; the appliance that gets it chosen hands out a Promotion.
// A node claiming Primary in promote mode is never adopted, except with no epoch known
// (first start, or every appliance restarted): then the primary a majority sees is adopted,
// and only if a majority see none while knowing every node's role is a replica promoted.
// Duelling is avoided by rank (position of this appliance's address among the reachable
// ones, sorted) times probe_interval, plus a random back-off from the seed.
//
// Leases (fail closed). Every lease_ms/4 each appliance asks all appliances for a lease on
// its current epoch; a grant counts from when the request was SENT, for lease_ms. It is
// writable while grants from a majority are current. An acceptor grants only on the epoch
// it knows as the highest chosen, and only while it has seen no Prepare/Accept of a higher
// epoch (the fence). It answers a Prepare or Accept of a higher epoch only lease_ms + 10%
// after its last grant. Safety: if A is writable at t on epoch E, a majority granted after
// t - lease_ms; a new epoch needs a majority to accept, so one acceptor B is in both, and B
// accepted only after its grant + 1.1 lease_ms > t: the new epoch cannot be chosen, let
// alone used, while A's lease lasts. Hence a failover costs lease_ms * 1.1 on top of
// detection, rank and a few round trips. A proposal that raised fences and then died
// unchosen would leave the cluster unwritable: after two proposal times, an appliance so
// fenced proposes the current primary again in a new epoch (reconfirm()).
//
// Promotions. The appliance whose proposal is chosen hands out the Promotion. If the chosen
// replica is still a replica repromote_leases later (its promoter died), the reachable
// appliance with the lowest address that holds a majority's lease hands it out again; after
// promotion_failed() the node is no candidate for failed_leases and, if it was the chosen
// primary, a new epoch is proposed without it.
//
// Restarts. A restarted appliance lost its promises and grants. It grants, promises and
// accepts nothing for lease_ms * 1.1 after boot (so any grant of its previous life has
// expired) and until it has heard from enough appliances to make a majority with itself;
// then it refuses every epoch up to the highest it has seen named (it may have voted in
// those and forgotten). Residual risk, documented: if the only other witnesses of a lost
// vote are exactly the appliances it has not heard from, that vote can be repeated.
//
// With a decision store ([dcs], use_store()): the Paxos, leases and restart rules above give
// way to the store's compare-and-swap and confirmations; when to propose and what stay the
// same. See src/gossip/decider_store.cc and dcs/store.h.
#include "pgplex/gossip/decider.h"

#include <algorithm>
#include <functional>

#include "pgplex/base/assert.h"

namespace pgplex::gossip {

namespace {

constexpr size_t deferred_max = 64;         // Prepare/Accept records kept while we wait
constexpr uint64_t attempts_per_epoch = 2;  // then a fresh instance (see next_epoch)
constexpr int64_t failed_leases = 10;       // a failed promotion bars its node this many leases
constexpr int64_t repromote_leases = 10;    // re-issue an unanswered promotion after this
constexpr int64_t view_age_max_ms = 3600 * 1000;  // older (or hostile) ages are ignored

Record paxos_record(RecordKind kind, const ClusterDecision& c, uint64_t epoch) {
    Record record;
    record.kind = kind;
    record.cluster = c.policy.name;
    record.epoch = epoch;
    return record;
}

const NodeView* find_node(const HeldView& view, const std::string& name) {
    for (const NodeView& node : view.nodes)
        if (node.name == name) return &node;
    return nullptr;
}

bool healthy_primary(const NodeView* node) {
    return node != nullptr && node->healthy && node->role == cluster::Role::Primary;
}

template <typename Predicate>
size_t count_views(const std::vector<const HeldView*>& views, Predicate predicate) {
    size_t count = 0;
    for (const HeldView* view : views)
        if (predicate(*view)) ++count;
    return count;
}

}  // namespace

const char* to_string(ProposerState state) {
    switch (state) {
        case ProposerState::Idle:
            return "idle";
        case ProposerState::Waiting:
            return "waiting";
        case ProposerState::Preparing:
            return "preparing";
        case ProposerState::Accepting:
            return "accepting";
    }
    return "?";
}

Decider::Decider(const Settings& settings, uint64_t boot, int64_t now_ms)
    : settings_(settings), boot_(boot), next_request_(boot) {
    appliances_.push_back(settings.self);
    for (const std::string& peer : settings.peers)
        if (std::find(appliances_.begin(), appliances_.end(), peer) == appliances_.end())
            appliances_.push_back(peer);
    std::sort(appliances_.begin(), appliances_.end());
    majority_ = majority_of(appliances_.size());
    quiet_until_ms_ = now_ms + fence_wait_ms();
    for (const ClusterPolicy& policy : settings.clusters) clusters_.push_back({.policy = policy});
}

int64_t Decider::view_fresh_ms() const {
    return std::max(3 * settings_.lease_ms, 4 * settings_.probe_interval_ms);
}

ClusterDecision* Decider::find_mutable(std::string_view cluster) {
    for (ClusterDecision& c : clusters_)
        if (c.policy.name == cluster) return &c;
    return nullptr;
}

const ClusterDecision* Decider::find(std::string_view cluster) const {
    for (const ClusterDecision& c : clusters_)
        if (c.policy.name == cluster) return &c;
    return nullptr;
}

void Decider::set_state(ClusterDecision& c, ProposerState state) {
    switch (state) {
        case ProposerState::Idle:
            break;  // from any: nothing to do, chosen, or overtaken
        case ProposerState::Waiting:
            PGPLEX_ASSERT(c.state != ProposerState::Waiting);  // from Idle, or a back-off
            break;
        case ProposerState::Preparing:
            PGPLEX_ASSERT(c.state == ProposerState::Waiting);
            break;
        case ProposerState::Accepting:
            PGPLEX_ASSERT(c.state == ProposerState::Preparing);
            break;
    }
    c.state = state;
}

void Decider::learn(ClusterDecision& c, uint64_t epoch, const std::string& primary) {
    c.seen_epoch = std::max(c.seen_epoch, epoch);
    if (epoch <= c.epoch || primary.empty()) return;
    c.epoch = epoch;
    c.primary = primary;
    c.primary_lsn = 0;
    c.granted.clear();
    c.requests.clear();
    c.next_renew_ms = 0;  // ask for a lease on the new epoch at the next tick
    c.promoted_ms = -1;
    c.promote_at_ms = -1;  // a held promotion was for an older epoch
    c.attempts = 0;
    c.slots.erase(c.slots.begin(), c.slots.upper_bound(epoch));
    // A proposal in flight was made without knowing this epoch: its reasons are stale.
    bool running = c.state == ProposerState::Preparing || c.state == ProposerState::Accepting;
    if (running) set_state(c, ProposerState::Idle);
}

bool Decider::participating(const ClusterDecision& c, uint64_t epoch) const {
    return joined_ && epoch > c.amnesia_epoch && epoch > c.epoch;
}

void Decider::observe(const cluster::ClusterStatus& local, int64_t now_ms) {
    ClusterDecision* c = find_mutable(local.name);
    if (c == nullptr) return;
    HeldView& view = c->views[settings_.self];
    view.nodes.clear();
    for (const cluster::NodeStatus& node : local.nodes) {
        if (view.nodes.size() == view_nodes_max) break;
        if (node.name.size() > address_bytes_max) continue;  // cannot be named on the wire
        view.nodes.push_back(
            NodeView{node.name, node.healthy, node.role, node.replay_lsn, node.current_lsn});
        if (node.name == c->primary && healthy_primary(&view.nodes.back()))
            c->primary_lsn = std::max(c->primary_lsn, node.current_lsn);
    }
    view.seen_ms = now_ms;
    view.age_ms = 0;
}

void Decider::on_view(const std::string& from, const Record& record, int64_t now_ms) {
    (void)from;  // relayed views are as good as direct ones: the age tells freshness
    ClusterDecision* c = find_mutable(record.cluster);
    if (c == nullptr || record.address == settings_.self) return;
    if (!std::binary_search(appliances_.begin(), appliances_.end(), record.address)) return;
    if (record.age_ms < 0 || record.age_ms > view_age_max_ms) return;
    auto held = c->views.find(record.address);
    if (held != c->views.end()) {
        int64_t age_now = held->second.age_ms + (now_ms - held->second.seen_ms);
        if (age_now <= record.age_ms) return;  // what we hold is fresher
    }
    c->views[record.address] = HeldView{record.nodes, now_ms, record.age_ms};
    const NodeView* primary = find_node(c->views[record.address], c->primary);
    if (healthy_primary(primary)) c->primary_lsn = std::max(c->primary_lsn, primary->current_lsn);
}

void Decider::on_record(const std::string& from, const Record& record, int64_t now_ms,
                        Outbox& outbox) {
    if (record.kind == RecordKind::View) {
        on_view(from, record, now_ms);
        return;
    }
    ClusterDecision* c = find_mutable(record.cluster);
    if (c == nullptr) return;
    c->seen_epoch = std::max(c->seen_epoch, record.epoch);
    if (store_ != nullptr) return;  // the store decides: no Paxos, no leases among us
    switch (record.kind) {
        case RecordKind::State:
            c->seen_epoch = std::max(c->seen_epoch, record.id);
            if (record.epoch > 0) learn(*c, record.epoch, record.node);
            return;
        case RecordKind::Prepare:
        case RecordKind::Accept:
            on_acceptor(*c, from, record, now_ms, outbox);
            return;
        case RecordKind::Promise:
            on_promise(*c, from, record, now_ms, outbox);
            return;
        case RecordKind::Accepted:
            on_accepted(*c, from, record, now_ms, outbox);
            return;
        case RecordKind::Reject:
            // A higher ballot holds this epoch: give up on it at the next tick.
            if (record.epoch == c->proposal_epoch && record.ballot == c->ballot) {
                c->deadline_ms = now_ms;
                c->round = std::max(c->round, record.accepted.round);
            }
            return;
        case RecordKind::LeaseRequest:
            on_lease_request(*c, from, record, now_ms, outbox);
            return;
        case RecordKind::LeaseGrant:
            on_grant(*c, from, record);
            return;
        case RecordKind::Ping:
        case RecordKind::Ack:
        case RecordKind::PingReq:
        case RecordKind::Member:
        case RecordKind::View:
        case RecordKind::Cancel:
        case RecordKind::Demand:
            return;  // membership's, the engine's, or handled above
    }
}

// --- acceptor ------------------------------------------------------------------------------

void Decider::on_acceptor(ClusterDecision& c, const std::string& from, const Record& record,
                          int64_t now_ms, Outbox& outbox) {
    // Decided, or proposed by an appliance that has not learned the latest chosen epoch
    // (its reasons are stale): our State record tells it; no fence for a stale proposal.
    if (record.epoch <= c.epoch || record.id < c.epoch) return;
    if (record.epoch > c.fence) {  // no more grants on the old epoch
        c.fence = record.epoch;
        c.fence_ms = now_ms;
    }
    if (!participating(c, record.epoch)) return;
    if (c.last_grant_ms >= 0 && now_ms < c.last_grant_ms + fence_wait_ms()) {
        if (c.deferred.size() == deferred_max) c.deferred.erase(c.deferred.begin());
        c.deferred.emplace_back(from, record);
        return;
    }
    answer(c, from, record, outbox);
}

void Decider::answer(ClusterDecision& c, const std::string& from, const Record& record,
                     Outbox& outbox) {
    PGPLEX_ASSERT(record.kind == RecordKind::Prepare || record.kind == RecordKind::Accept);
    Slot& slot = c.slots[record.epoch];
    Record reply = paxos_record(RecordKind::Reject, c, record.epoch);
    reply.ballot = record.ballot;
    reply.accepted = slot.promised;
    if (record.ballot >= slot.promised) {  // >=: a duplicate is answered the same way again
        slot.promised = record.ballot;
        if (record.kind == RecordKind::Accept) {
            slot.accepted = record.ballot;
            slot.value = record.node;
        }
        reply.kind =
            record.kind == RecordKind::Prepare ? RecordKind::Promise : RecordKind::Accepted;
        reply.accepted = slot.accepted;
        reply.node = slot.value;
    }
    outbox.send(from, std::move(reply));
}

void Decider::run_deferred(ClusterDecision& c, int64_t now_ms, Outbox& outbox) {
    if (c.deferred.empty() || now_ms < c.last_grant_ms + fence_wait_ms()) return;
    std::vector<std::pair<std::string, Record>> due;
    due.swap(c.deferred);
    for (const auto& [from, record] : due)
        if (record.epoch > c.epoch && participating(c, record.epoch))
            answer(c, from, record, outbox);
}

// --- proposer ------------------------------------------------------------------------------

void Decider::broadcast(const Record& record, Outbox& outbox) const {
    for (const std::string& appliance : appliances_) outbox.send(appliance, record);
}

// The epoch to propose in. Normally the one after the highest chosen: every proposer that
// knows the same past competes in the same Paxos instance, which settles on one value.
// Knowing no chosen epoch, above everything seen and our boot id (the wall clock at start),
// so a site whose every appliance restarted never reuses an epoch. After two failed
// attempts at an instance (it may hold votes that restarted acceptors refuse to repeat),
// or when our fence stands above the next instance, a fresh instance above everything seen.
uint64_t Decider::next_epoch(const ClusterDecision& c) const {
    if (c.epoch == 0) return std::max(c.seen_epoch, boot_) + 1;
    // A fence above the next instance was raised by a fresh instance that died: only an
    // epoch above it lifts it.
    if (c.attempts < attempts_per_epoch && c.fence <= c.epoch + 1) return c.epoch + 1;
    return std::max(c.seen_epoch, c.epoch) + 1;
}

void Decider::start_proposal(ClusterDecision& c, const Target& target, int64_t now_ms,
                             Outbox& outbox) {
    set_state(c, ProposerState::Preparing);
    c.target = target;
    uint64_t epoch = next_epoch(c);
    c.round = epoch == c.proposal_epoch ? c.round + 1 : 1;
    c.proposal_epoch = epoch;
    c.seen_epoch = std::max(c.seen_epoch, epoch);
    ++c.attempts;
    c.ballot = Ballot{c.round, settings_.self};
    c.votes.clear();
    c.best_accepted = Ballot{};
    c.best_value.clear();
    // Acceptors may hold a Prepare back for a lease period (the fence), then answer.
    c.deadline_ms = now_ms + fence_wait_ms() + 4 * settings_.probe_timeout_ms;
    Record prepare = paxos_record(RecordKind::Prepare, c, c.proposal_epoch);
    prepare.ballot = c.ballot;
    prepare.id = c.epoch;
    broadcast(prepare, outbox);
}

void Decider::on_promise(ClusterDecision& c, const std::string& from, const Record& record,
                         int64_t now_ms, Outbox& outbox) {
    if (c.state != ProposerState::Preparing || record.epoch != c.proposal_epoch) return;
    if (record.ballot != c.ballot) return;
    c.votes.insert(from);
    if (record.accepted.round > 0 && record.accepted > c.best_accepted) {
        c.best_accepted = record.accepted;
        c.best_value = record.node;
    }
    if (c.votes.size() < majority_) return;
    set_state(c, ProposerState::Accepting);
    c.value = c.best_value.empty() ? c.target.node : c.best_value;
    c.votes.clear();
    c.deadline_ms = now_ms + fence_wait_ms() + 4 * settings_.probe_timeout_ms;
    Record accept = paxos_record(RecordKind::Accept, c, c.proposal_epoch);
    accept.ballot = c.ballot;
    accept.node = c.value;
    accept.id = c.epoch;
    broadcast(accept, outbox);
}

void Decider::on_accepted(ClusterDecision& c, const std::string& from, const Record& record,
                          int64_t now_ms, Outbox& outbox) {
    if (c.state != ProposerState::Accepting || record.epoch != c.proposal_epoch) return;
    if (record.ballot != c.ballot || record.node != c.value) return;
    c.votes.insert(from);
    if (c.votes.size() < majority_) return;
    chosen(c, now_ms);
    Record state = paxos_record(RecordKind::State, c, c.epoch);
    state.address = settings_.self;
    state.node = c.primary;
    state.id = c.seen_epoch;
    for (const std::string& appliance : appliances_)
        if (appliance != settings_.self) outbox.send(appliance, state);
}

void Decider::chosen(ClusterDecision& c, int64_t now_ms) {
    uint64_t epoch = c.proposal_epoch;
    std::string value = c.value;
    bool promote = c.policy.promote && c.target.promote && value == c.target.node;
    learn(c, epoch, value);
    PGPLEX_ASSERT(c.state == ProposerState::Idle && c.epoch == epoch);
    if (!promote) return;
    if (store_ != nullptr) {  // after every reading of the old epoch has lapsed
        c.promote_at_ms = now_ms + store_->confirm_ms();
        c.promoted_ms = now_ms;
        return;
    }
    promotions_.push_back(Promotion{c.policy.name, value, epoch});
    c.promoted_ms = now_ms;
}

void Decider::back_off(ClusterDecision& c, int64_t now_ms,
                       const std::vector<std::string>& reachable, Rng& rng) {
    set_state(c, ProposerState::Waiting);
    int64_t rank = std::count_if(reachable.begin(), reachable.end(),
                                 [&](const std::string& a) { return a < settings_.self; });
    int64_t interval = settings_.probe_interval_ms;
    c.start_ms = now_ms + rank * interval + int64_t(rng.below(uint64_t(2 * interval) + 1));
}

void Decider::drive(ClusterDecision& c, int64_t now_ms, const std::vector<std::string>& reachable,
                    Rng& rng, Outbox& outbox) {
    switch (c.state) {
        case ProposerState::Idle:
            if (wanted(c, now_ms)) back_off(c, now_ms, reachable, rng);
            return;
        case ProposerState::Waiting: {
            if (now_ms < c.start_ms) return;
            std::optional<Target> target = wanted(c, now_ms);
            if (!target) {
                set_state(c, ProposerState::Idle);
                return;
            }
            if (store_ != nullptr)
                store_propose(c, *target, now_ms);
            else
                start_proposal(c, *target, now_ms, outbox);
            return;
        }
        case ProposerState::Preparing:
        case ProposerState::Accepting:
            if (now_ms >= c.deadline_ms) back_off(c, now_ms, reachable, rng);
            return;
    }
}

// --- what to propose -----------------------------------------------------------------------

std::vector<const HeldView*> Decider::fresh_views(const ClusterDecision& c, int64_t now_ms) const {
    std::vector<const HeldView*> views;
    for (const auto& [appliance, view] : c.views)
        if (view.age_ms + (now_ms - view.seen_ms) <= view_fresh_ms()) views.push_back(&view);
    return views;
}

std::optional<Target> Decider::wanted(const ClusterDecision& c, int64_t now_ms) const {
    std::vector<const HeldView*> views = fresh_views(c, now_ms);
    if (views.size() < majority_) return std::nullopt;
    std::optional<Target> target = c.primary.empty() || !c.policy.promote
                                       ? follow_target(c, views)
                                       : promote_target(c, views, now_ms);
    if (!target && c.primary.empty() && c.policy.promote && orphaned(views))
        target = promote_target(c, views, now_ms);
    if (!target && store_ != nullptr) target = store_repair(c);
    return target ? target : reconfirm(c, views, now_ms);
}

// No epoch known (a first start, or every appliance of this side restarted) and a majority
// of the views see no primary at all while knowing every node's role: the primary is down,
// not merely unchecked yet, so a replica may be promoted. A monitor that restarted while the
// primary was down knows no role for it: then nothing is promoted until it is seen.
bool Decider::orphaned(const std::vector<const HeldView*>& views) const {
    size_t count = count_views(views, [](const HeldView& view) {
        return std::none_of(view.nodes.begin(), view.nodes.end(),
                            [](const NodeView& node) {
                                return healthy_primary(&node) ||
                                       node.role == cluster::Role::Unknown;
                            }) &&
               !view.nodes.empty();
    });
    return count >= majority_;
}

// A proposal that raised our fence died unchosen (its proposer crashed or lost its
// majority): we grant no lease below it, so the cluster would stay unwritable. A new epoch
// that chooses the current primary again lifts the fence everywhere.
std::optional<Target> Decider::reconfirm(const ClusterDecision& c,
                                         const std::vector<const HeldView*>& views,
                                         int64_t now_ms) const {
    int64_t proposal_ms = 2 * (fence_wait_ms() + 4 * settings_.probe_timeout_ms);
    if (c.fence <= c.epoch || now_ms - c.fence_ms < proposal_ms || c.primary.empty())
        return std::nullopt;
    size_t fit = count_views(views, [&](const HeldView& view) {
        const NodeView* node = find_node(view, c.primary);
        return c.policy.promote ? node != nullptr && node->healthy : healthy_primary(node);
    });
    if (fit < majority_) return std::nullopt;
    return Target{c.primary, false};
}

std::optional<Target> Decider::follow_target(const ClusterDecision& c,
                                             const std::vector<const HeldView*>& views) const {
    if (!c.primary.empty()) {
        size_t not_ok = count_views(views, [&](const HeldView& view) {
            return !healthy_primary(find_node(view, c.primary));
        });
        if (not_ok < majority_) return std::nullopt;
    }
    std::optional<Target> best;
    size_t best_count = 0;
    for (const HeldView* view : views) {
        for (const NodeView& node : view->nodes) {
            if (node.name == c.primary) continue;
            size_t count = count_views(views, [&](const HeldView& other) {
                return healthy_primary(find_node(other, node.name));
            });
            bool better =
                count > best_count || (count == best_count && best && node.name < best->node);
            if (count >= majority_ && better) {
                best = Target{node.name, false};
                best_count = count;
            }
        }
    }
    return best;
}

std::optional<Target> Decider::promote_target(const ClusterDecision& c,
                                              const std::vector<const HeldView*>& views,
                                              int64_t now_ms) const {
    auto failed = [&](const std::string& node) {
        auto it = c.failed.find(node);
        return it != c.failed.end() && it->second > now_ms;
    };
    size_t down = count_views(views, [&](const HeldView& view) {
        const NodeView* node = find_node(view, c.primary);
        return node != nullptr && !node->healthy;
    });
    if (!c.primary.empty() && down < majority_ && !failed(c.primary)) return std::nullopt;
    auto own = c.views.find(settings_.self);
    if (own == c.views.end() || std::find(views.begin(), views.end(), &own->second) == views.end())
        return std::nullopt;  // we promote what we can see
    std::optional<Target> best;
    uint64_t best_lsn = 0;
    for (const NodeView& node : own->second.nodes) {
        if (node.name == c.primary || !node.healthy || node.role != cluster::Role::Replica ||
            failed(node.name))
            continue;
        uint64_t lsn = 0;
        size_t healthy = count_views(views, [&](const HeldView& view) {
            const NodeView* seen = find_node(view, node.name);
            if (seen != nullptr && seen->healthy) lsn = std::max(lsn, seen->replay_lsn);
            return seen != nullptr && seen->healthy;
        });
        int64_t limit = c.policy.max_failover_lag_bytes;
        bool too_far = limit >= 0 && c.primary_lsn > lsn && c.primary_lsn - lsn > uint64_t(limit);
        if (healthy < majority_ || too_far) continue;
        if (!best || lsn > best_lsn || (lsn == best_lsn && node.name < best->node)) {
            best = Target{node.name, true};
            best_lsn = lsn;
        }
    }
    return best;
}

void Decider::maybe_repromote(ClusterDecision& c, int64_t now_ms,
                              const std::vector<std::string>& reachable) {
    // A chosen replica still not primary long after its promotion (the promoter may have
    // died): the reachable appliance with the lowest address hands it out again, if it
    // holds a majority's lease (so its epoch is the current one, not a minority's memory).
    if (!c.policy.promote || c.epoch == 0 || !writable(c, now_ms)) return;
    bool lowest = std::none_of(reachable.begin(), reachable.end(),
                               [&](const std::string& a) { return a < settings_.self; });
    auto own = c.views.find(settings_.self);
    if (!lowest || own == c.views.end()) return;
    const NodeView* node = find_node(own->second, c.primary);
    if (node == nullptr || !node->healthy || node->role != cluster::Role::Replica) return;
    auto failed = c.failed.find(c.primary);
    if (failed != c.failed.end() && failed->second > now_ms) return;
    if (c.promoted_ms < 0) c.promoted_ms = now_ms;  // first noticed: wait a full period
    if (now_ms - c.promoted_ms < repromote_leases * settings_.lease_ms) return;
    promotions_.push_back(Promotion{c.policy.name, c.primary, c.epoch});
    c.promoted_ms = now_ms;
}

// --- leases --------------------------------------------------------------------------------

void Decider::renew(ClusterDecision& c, int64_t now_ms, Outbox& outbox) {
    if (c.epoch == 0) return;
    std::erase_if(c.requests, [&](const auto& request) {
        return now_ms - request.second >= settings_.lease_ms;
    });
    if (now_ms < c.next_renew_ms) return;
    uint64_t id = next_request_++;
    c.requests[id] = now_ms;
    c.next_renew_ms = now_ms + std::max<int64_t>(1, settings_.lease_ms / 4);
    Record request = paxos_record(RecordKind::LeaseRequest, c, c.epoch);
    request.node = c.primary;
    request.id = id;
    broadcast(request, outbox);
}

void Decider::on_lease_request(ClusterDecision& c, const std::string& from, const Record& record,
                               int64_t now_ms, Outbox& outbox) {
    learn(c, record.epoch, record.node);  // the requester knows it chosen
    if (!joined_ || record.epoch != c.epoch || c.fence > c.epoch) return;
    c.last_grant_ms = now_ms;
    Record grant = paxos_record(RecordKind::LeaseGrant, c, c.epoch);
    grant.id = record.id;
    outbox.send(from, std::move(grant));
}

void Decider::on_grant(ClusterDecision& c, const std::string& from, const Record& record) {
    if (record.epoch != c.epoch) return;
    auto request = c.requests.find(record.id);
    if (request == c.requests.end()) return;
    int64_t& sent = c.granted[from];
    sent = std::max(sent, request->second);
}

// --- the rest ------------------------------------------------------------------------------

void Decider::tick(int64_t now_ms, size_t heard, const std::vector<std::string>& reachable,
                   Rng& rng, Outbox& outbox) {
    if (!joined_ && now_ms >= quiet_until_ms_ && heard + 1 >= majority_) {
        joined_ = true;
        for (ClusterDecision& c : clusters_) c.amnesia_epoch = std::max(c.seen_epoch, c.epoch);
    }
    for (ClusterDecision& c : clusters_) {
        std::erase_if(c.failed, [&](const auto& entry) { return entry.second <= now_ms; });
        if (store_ != nullptr) {
            store_tick(c, now_ms, reachable, rng);
            continue;
        }
        run_deferred(c, now_ms, outbox);
        renew(c, now_ms, outbox);
        drive(c, now_ms, reachable, rng, outbox);
        maybe_repromote(c, now_ms, reachable);
    }
}

void Decider::promotion_failed(const Promotion& promotion, int64_t now_ms) {
    ClusterDecision* c = find_mutable(promotion.cluster);
    if (c == nullptr) return;
    c->failed[promotion.node] = now_ms + failed_leases * settings_.lease_ms;
}

void Decider::piggyback(size_t& room, std::vector<Record>& out, int64_t now_ms) {
    auto add = [&](Record record) {
        size_t size = record_size(record);
        if (size > room) return false;
        room -= size;
        out.push_back(std::move(record));
        return true;
    };
    for (const ClusterDecision& c : clusters_) {
        Record state = paxos_record(RecordKind::State, c, c.epoch);
        state.address = settings_.self;
        state.node = c.primary;
        state.id = c.seen_epoch;
        add(std::move(state));
    }
    std::vector<Record> views;
    for (const ClusterDecision& c : clusters_) {
        for (const HeldView* held : fresh_views(c, now_ms)) {
            Record view = paxos_record(RecordKind::View, c, 0);
            for (const auto& [appliance, candidate] : c.views)
                if (&candidate == held) view.address = appliance;
            view.age_ms = held->age_ms + (now_ms - held->seen_ms);
            view.nodes = held->nodes;
            views.push_back(std::move(view));
        }
    }
    for (size_t i = 0; i < views.size(); ++i) {
        if (!add(std::move(views[(view_cursor_ + i) % views.size()]))) continue;
    }
    if (!views.empty()) view_cursor_ = (view_cursor_ + 1) % views.size();
}

std::vector<Promotion> Decider::take_promotions() {
    std::vector<Promotion> out;
    out.swap(promotions_);
    return out;
}

// A lease holds until the majority-th most recent grant is lease_ms old; 0 with fewer grants.
// With a store: until the store's confirmation lapses (store_until()).
int64_t Decider::lease_until(const ClusterDecision& c, int64_t now_ms) const {
    if (store_ != nullptr) return store_until(c, now_ms);
    std::vector<int64_t> sent;
    for (const auto& [appliance, sent_ms] : c.granted) sent.push_back(sent_ms);
    if (majority_ == 0 || sent.size() < majority_) return 0;
    std::nth_element(sent.begin(), sent.begin() + ptrdiff_t(majority_ - 1), sent.end(),
                     std::greater<int64_t>());
    return sent[majority_ - 1] + settings_.lease_ms;
}

bool Decider::writable(const ClusterDecision& c, int64_t now_ms) const {
    return c.epoch > 0 && now_ms < lease_until(c, now_ms);
}

Decision Decider::decision(std::string_view cluster, int64_t now_ms) const {
    const ClusterDecision* c = find(cluster);
    if (c == nullptr || c->epoch == 0) return Decision{};
    bool lease = writable(*c, now_ms);
    int64_t until = lease ? lease_until(*c, now_ms) : 0;
    return Decision{c->epoch, c->primary, lease, until};
}

}  // namespace pgplex::gossip
