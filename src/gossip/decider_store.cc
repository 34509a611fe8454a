// The decider with a decision store ([dcs]; dcs/store.h has the safety argument). The
// appliances still spread their views of the nodes by gossip, and still propose a change only
// when a majority of fresh views call for it (wanted(), as without a store); but the epoch and
// primary are whatever the store holds, written by compare-and-swap on its revision, so two
// appliances racing for one epoch cannot both win, and a decision holds whatever the gossip
// layer sees. An appliance routes writes for the stored epoch only while its latest reading of
// it is younger than confirm_ms and its lease lives, and only from confirm_ms after it learned
// the epoch; a promotion it won waits as long, so no reader of the old epoch still routes
// writes to the old primary when the new one takes them.
#include <algorithm>

#include "pgplex/base/assert.h"
#include "pgplex/gossip/decider.h"

namespace pgplex::gossip {

void Decider::store_sync(ClusterDecision& c, int64_t now_ms) {
    std::optional<dcs::Reading> reading = store_->reading(c.policy.name);
    if (!reading) return;
    const dcs::StoredDecision& stored = reading->decision;
    c.seen_epoch = std::max(c.seen_epoch, stored.epoch);
    if (stored.epoch <= c.epoch || stored.primary.empty()) return;
    bool ours = c.state == ProposerState::Preparing && stored.epoch == c.proposal_epoch &&
                stored.by == settings_.self && stored.primary == c.value;
    if (ours) {
        chosen(c, now_ms);
    } else {
        learn(c, stored.epoch, stored.primary);
    }
    c.store_learned_ms = now_ms;
    PGPLEX_ASSERT(c.epoch == stored.epoch && c.state != ProposerState::Preparing &&
                  c.state != ProposerState::Accepting);
}

void Decider::store_tick(ClusterDecision& c, int64_t now_ms,
                         const std::vector<std::string>& reachable, Rng& rng) {
    store_sync(c, now_ms);
    if (c.promote_at_ms >= 0 && now_ms >= c.promote_at_ms) {
        c.promote_at_ms = -1;
        promotions_.push_back(Promotion{c.policy.name, c.primary, c.epoch});
    }
    Outbox unused;  // the store path sends no Paxos records
    drive(c, now_ms, reachable, rng, unused);
    maybe_repromote(c, now_ms, reachable);
}

// The store's compare-and-swap in place of a Paxos round: the epoch after every one known,
// expected to replace exactly the revision last read. The outcome shows in a later reading
// (store_sync()); a race lost, or no answer by the deadline, backs off like a lost ballot.
void Decider::store_propose(ClusterDecision& c, const Target& target, int64_t now_ms) {
    std::optional<dcs::Reading> reading = store_->reading(c.policy.name);
    set_state(c, ProposerState::Preparing);
    c.target = target;
    c.value = target.node;
    c.deadline_ms = now_ms + store_->confirm_ms();
    if (!reading) {  // never read yet: nothing to compare against; retry after the back-off
        c.deadline_ms = now_ms;
        return;
    }
    uint64_t epoch = std::max({c.epoch, c.seen_epoch, reading->decision.epoch}) + 1;
    c.proposal_epoch = epoch;
    c.seen_epoch = epoch;
    ++c.attempts;
    store_->propose(c.policy.name, reading->decision.revision,
                    dcs::StoredDecision{epoch, target.node, settings_.self, 0});
}

// The store holds an older epoch than this appliance learned (it was restored from a backup,
// or its keys were deleted): the current primary is written again in a new epoch, so the
// store and the appliances meet above everything either knew.
std::optional<Target> Decider::store_repair(const ClusterDecision& c) const {
    std::optional<dcs::Reading> reading = store_->reading(c.policy.name);
    if (!reading || c.epoch == 0 || c.primary.empty() || reading->decision.epoch >= c.epoch)
        return std::nullopt;
    return Target{c.primary, false};
}

// Until when writes may go to the primary of `c.epoch`: while the latest reading names that
// epoch and is younger than confirm_ms, the lease lives, and confirm_ms has passed since the
// epoch was learned; 0 when they may not.
int64_t Decider::store_until(const ClusterDecision& c, int64_t now_ms) const {
    std::optional<dcs::Reading> reading = store_->reading(c.policy.name);
    if (!reading || c.epoch == 0 || reading->decision.epoch != c.epoch ||
        reading->decision.primary != c.primary)
        return 0;
    int64_t confirm_ms = store_->confirm_ms();
    if (now_ms < c.store_learned_ms + confirm_ms) return 0;
    int64_t until = std::min(reading->sent_ms + confirm_ms, store_->lease_until_ms());
    return now_ms < until ? until : 0;
}

}  // namespace pgplex::gossip
