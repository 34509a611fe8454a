// How much of a node's connection budget (node_options max_db_connections) this appliance
// may use, from what every appliance last said of its demand and its limit there
// (RecordKind::Demand). A pure function, so the rule is tested without sockets or clocks.
//
// Shares follow demand (pool::shares), but an appliance only takes what the others leave:
// each other appliance is counted for the most of the servers it holds, the limit it last
// reported, and (while it has demand) its static share; a configured appliance not heard
// from lately is counted for its static share. An appliance grows only in its turn (a slot
// of wall-clock time each appliance owns in turn; out of it, it can only shrink), and the
// others hear its new limit before the next turn begins, so two appliances never grow into
// the same free places at once: the limits never sum above the budget. Every appliance
// starts at its static share (they sum to the budget at most).
#pragma once

#include <cstdint>
#include <span>

namespace pgplex::gossip {

struct ApplianceDemand {
    uint32_t appliance = 0;  // its place in config::Gossip::appliances
    int held = 0;            // servers it holds on the node
    int waiting = 0;         // its clients waiting for one
    int limit = 0;           // the limit it last reported
};

// budget / appliances; when that is 0, 1 for the first `budget` appliances.
int static_share(int budget, int appliances, uint32_t appliance);

// demands[0] is this appliance; the others are those heard lately (each at most once).
// `current`: this appliance's limit now. `may_grow`: its turn to grow.
int appliance_limit(int budget, std::span<const ApplianceDemand> demands, int appliances,
                    bool majority, int current, bool may_grow);

// Whether `appliance` may grow now: its turn, in the first half of its slot, so the others
// hear its new limit before the next appliance's turn. wall_ms: the wall clock (appliances
// on several hosts share it through NTP; their monotonic clocks differ).
bool growth_turn(int64_t wall_ms, int64_t slot_ms, int appliances, uint32_t appliance);

}  // namespace pgplex::gossip
