// The decision store: where the appliances' epochs and primaries live when [dcs] is
// configured, instead of the appliances' own quorum (gossip/decider.h). An abstract seam with
// two sides: the etcd client on its own thread (dcs/etcd.h) and the simulation's modelled
// store (tests/sim). The decider only reads what the store last confirmed and asks it for a
// compare-and-swap; it never waits for it.
//
// The safety argument (the decider's use of it, src/gossip/decider.cc): a reading is the
// decision a linearizable read returned, stamped with the time the read was SENT. An appliance
// routes writes for epoch E only while its latest reading says E and is younger than
// confirm_ms, and only from confirm_ms after it first learned E. If the store replaced E by
// E+1 at time W, every reading of E was sent before W, so it lapses before W + confirm_ms;
// every appliance learned E+1 after W, so none routes writes to E+1's primary before then:
// never two primaries at once, whatever the gossip layer sees. An appliance that cannot reach
// the store (or whose lease lapsed) stops routing writes within confirm_ms.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgplex::dcs {

// What the store holds for one cluster.
struct StoredDecision {
    uint64_t epoch = 0;    // grows with every change; 0: nothing stored yet
    std::string primary;   // the node chosen primary in epoch ("host:port")
    std::string by;        // the appliance that wrote it (its gossip address)
    int64_t revision = 0;  // the store's revision of it (etcd mod_revision); 0: absent

    bool operator==(const StoredDecision&) const = default;
};

// A decision as a read returned it, and when that read was sent (the caller's clock).
struct Reading {
    StoredDecision decision;
    int64_t sent_ms = 0;
};

class DecisionStore {
  public:
    virtual ~DecisionStore() = default;

    // The latest reading of `cluster`; nullopt before the first read answered. A reading
    // whose decision has revision 0 confirms that nothing is stored.
    virtual std::optional<Reading> reading(std::string_view cluster) const = 0;
    // Until when this appliance's lease is known to live (the send time of its last answered
    // keepalive plus the TTL the store granted); 0: no lease.
    virtual int64_t lease_until_ms() const = 0;
    // How long a reading confirms a decision, and how long an appliance waits after learning
    // a new epoch before it routes writes to its primary.
    virtual int64_t confirm_ms() const = 0;
    // Writes `next` for `cluster` if the stored decision's revision is still
    // `expected_revision` (0: nothing stored). The outcome shows in a later reading: `next`
    // with its new revision when this appliance won, someone else's decision when it lost.
    virtual void propose(std::string_view cluster, int64_t expected_revision,
                         const StoredDecision& next) = 0;
};

}  // namespace pgplex::dcs
