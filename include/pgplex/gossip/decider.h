// Per cluster: which node is primary in which epoch, chosen by a majority of the configured
// appliances (single-decree Paxos per epoch), and whether this appliance holds a majority's
// lease on that epoch and may route writes. Also keeps every appliance's latest view of the
// nodes, which both decides when to propose and rides on every datagram. The design, its
// timing and its safety argument are in the comment at the top of src/gossip/decider.cc.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pgplex/dcs/store.h"
#include "pgplex/gossip/engine.h"
#include "pgplex/gossip/outbox.h"
#include "pgplex/gossip/wire.h"

namespace pgplex::gossip {

// The proposer of one cluster.
enum class ProposerState : uint8_t {
    Idle,       // nothing to change, or this appliance leaves it to others
    Waiting,    // a change is due; the proposal starts at start_ms (rank + random back-off)
    Preparing,  // Prepare(epoch, ballot) sent to all; Promises counted until deadline_ms
    Accepting,  // a majority promised; Accept(epoch, ballot, value) sent; Accepted counted
};

const char* to_string(ProposerState state);

// The acceptor's memory of one epoch.
struct Slot {
    Ballot promised;  // the highest ballot promised
    Ballot accepted;  // round 0: nothing accepted yet
    std::string value;
};

// One appliance's view of one cluster, and how old it was when it reached us.
struct HeldView {
    std::vector<NodeView> nodes;
    int64_t seen_ms = 0;  // when we received (or, for our own, observed) it
    int64_t age_ms = 0;   // its age at seen_ms
};

// What this appliance wants chosen in the next epoch.
struct Target {
    std::string node;
    bool promote = false;  // a replica to promote (failover = "promote")
};

struct ClusterDecision {
    ClusterPolicy policy;
    // Learned: the highest epoch known chosen, and its primary.
    uint64_t epoch = 0;
    std::string primary;
    uint64_t seen_epoch = 0;     // the highest epoch any record named: proposals go above it
    uint64_t primary_lsn = 0;    // the chosen primary's last known current LSN
    uint64_t amnesia_epoch = 0;  // after a restart: epochs we may have voted in and forgot
    // Acceptor.
    std::map<uint64_t, Slot> slots;
    uint64_t fence = 0;          // highest epoch prepared or accepted: no grant below it
    int64_t fence_ms = 0;        // when the fence last rose
    int64_t last_grant_ms = -1;  // our last lease grant (on any epoch); -1 never
    std::vector<std::pair<std::string, Record>> deferred;  // waiting out our last grant
    // Proposer.
    ProposerState state = ProposerState::Idle;
    Target target;
    uint64_t proposal_epoch = 0;
    Ballot ballot;
    std::set<std::string> votes;  // promises, then accepts
    Ballot best_accepted;         // the highest accepted ballot among the promises
    std::string best_value;
    std::string value;  // the value sent in Accept
    int64_t start_ms = 0;
    int64_t deadline_ms = 0;
    uint64_t round = 0;     // of the last proposal, in proposal_epoch
    uint64_t attempts = 0;  // proposals since the last epoch was learned
    // Leases on `epoch`.
    std::map<uint64_t, int64_t> requests;    // request id -> when we sent it
    std::map<std::string, int64_t> granted;  // appliance -> send time of its newest grant
    int64_t next_renew_ms = 0;
    // Promotions.
    std::map<std::string, int64_t> failed;  // node -> until when it is no candidate
    int64_t promoted_ms = -1;               // when we last handed out a promotion
    // Views: appliance -> its view.
    std::map<std::string, HeldView> views;
    // With a decision store (dcs/store.h): when `epoch` was learned from it (writes wait
    // confirm_ms from then), and a promotion held back until then.
    int64_t store_learned_ms = 0;
    int64_t promote_at_ms = -1;  // -1: none held back
};

class Decider {
  public:
    // `boot`: this appliance's boot id; lease request ids start there, so a grant of a
    // previous life never matches a request of this one.
    Decider(const Settings& settings, uint64_t boot, int64_t now_ms);

    void observe(const cluster::ClusterStatus& local, int64_t now_ms);
    // View, State, Paxos and lease records from an authenticated appliance (or ourselves).
    void on_record(const std::string& from, const Record& record, int64_t now_ms, Outbox& outbox);
    // `heard`: appliances (not self) heard from since our boot.
    void tick(int64_t now_ms, size_t heard, const std::vector<std::string>& reachable, Rng& rng,
              Outbox& outbox);
    void promotion_failed(const Promotion& promotion, int64_t now_ms);
    // From now on the epochs and primaries are the store's (dcs/store.h): no Paxos, no
    // leases among the appliances; views still come by gossip and still decide when to
    // propose. `store` outlives the decider.
    void use_store(dcs::DecisionStore* store) { store_ = store; }
    // Appends State and View records while they fit in `room`.
    void piggyback(size_t& room, std::vector<Record>& out, int64_t now_ms);

    std::vector<Promotion> take_promotions();
    Decision decision(std::string_view cluster, int64_t now_ms) const;
    const ClusterDecision* find(std::string_view cluster) const;
    int64_t view_fresh_ms() const;

  private:
    ClusterDecision* find_mutable(std::string_view cluster);
    void set_state(ClusterDecision& c, ProposerState state);
    void learn(ClusterDecision& c, uint64_t epoch, const std::string& primary);
    bool participating(const ClusterDecision& c, uint64_t epoch) const;
    void on_view(const std::string& from, const Record& record, int64_t now_ms);
    void on_acceptor(ClusterDecision& c, const std::string& from, const Record& record,
                     int64_t now_ms, Outbox& outbox);
    void answer(ClusterDecision& c, const std::string& from, const Record& record, Outbox& outbox);
    void on_promise(ClusterDecision& c, const std::string& from, const Record& record,
                    int64_t now_ms, Outbox& outbox);
    void on_accepted(ClusterDecision& c, const std::string& from, const Record& record,
                     int64_t now_ms, Outbox& outbox);
    void on_lease_request(ClusterDecision& c, const std::string& from, const Record& record,
                          int64_t now_ms, Outbox& outbox);
    void on_grant(ClusterDecision& c, const std::string& from, const Record& record);
    void run_deferred(ClusterDecision& c, int64_t now_ms, Outbox& outbox);
    void renew(ClusterDecision& c, int64_t now_ms, Outbox& outbox);
    void drive(ClusterDecision& c, int64_t now_ms, const std::vector<std::string>& reachable,
               Rng& rng, Outbox& outbox);
    void start_proposal(ClusterDecision& c, const Target& target, int64_t now_ms, Outbox& outbox);
    uint64_t next_epoch(const ClusterDecision& c) const;
    void back_off(ClusterDecision& c, int64_t now_ms, const std::vector<std::string>& reachable,
                  Rng& rng);
    void chosen(ClusterDecision& c, int64_t now_ms);
    void maybe_repromote(ClusterDecision& c, int64_t now_ms,
                         const std::vector<std::string>& reachable);
    std::vector<const HeldView*> fresh_views(const ClusterDecision& c, int64_t now_ms) const;
    std::optional<Target> wanted(const ClusterDecision& c, int64_t now_ms) const;
    bool orphaned(const std::vector<const HeldView*>& views) const;
    std::optional<Target> reconfirm(const ClusterDecision& c,
                                    const std::vector<const HeldView*>& views,
                                    int64_t now_ms) const;
    std::optional<Target> follow_target(const ClusterDecision& c,
                                        const std::vector<const HeldView*>& views) const;
    std::optional<Target> promote_target(const ClusterDecision& c,
                                         const std::vector<const HeldView*>& views,
                                         int64_t now_ms) const;
    void broadcast(const Record& record, Outbox& outbox) const;
    bool writable(const ClusterDecision& c, int64_t now_ms) const;
    int64_t fence_wait_ms() const { return settings_.lease_ms + settings_.lease_ms / 10; }
    int64_t lease_until(const ClusterDecision& c, int64_t now_ms) const;
    // Store mode (src/gossip/decider_store.cc).
    void store_tick(ClusterDecision& c, int64_t now_ms, const std::vector<std::string>& reachable,
                    Rng& rng);
    void store_sync(ClusterDecision& c, int64_t now_ms);
    void store_propose(ClusterDecision& c, const Target& target, int64_t now_ms);
    std::optional<Target> store_repair(const ClusterDecision& c) const;
    int64_t store_until(const ClusterDecision& c, int64_t now_ms) const;

    const Settings& settings_;
    std::vector<std::string> appliances_;  // self + peers, sorted
    size_t majority_;
    uint64_t boot_;           // our boot id: the floor of the epochs we propose
    int64_t quiet_until_ms_;  // after boot: no grant, promise or accept before this
    bool joined_ = false;     // the quiet period is over and a majority was heard
    uint64_t next_request_ = 1;
    std::vector<ClusterDecision> clusters_;
    std::vector<Promotion> promotions_;
    size_t view_cursor_ = 0;               // round-robin over the views piggybacked
    dcs::DecisionStore* store_ = nullptr;  // [dcs]; null: the appliances' quorum decides
};

}  // namespace pgplex::gossip
