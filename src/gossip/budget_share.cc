// See budget_share.h.
#include "pgplex/gossip/budget_share.h"

#include <algorithm>
#include <vector>

#include "pgplex/base/assert.h"
#include "pgplex/pool/budget.h"

namespace pgplex::gossip {

int static_share(int budget, int appliances, uint32_t appliance) {
    PGPLEX_ASSERT(appliances >= 1);
    int share = budget / appliances;
    if (share == 0 && int64_t(appliance) < budget) share = 1;
    return share;
}

namespace {

// What the other appliances may hold now, as far as this one knows.
int64_t claimed_by_others(int budget, std::span<const ApplianceDemand> demands, int appliances) {
    int64_t claimed = 0;
    std::vector<bool> heard(size_t(appliances), false);
    if (demands[0].appliance < uint32_t(appliances)) heard[demands[0].appliance] = true;
    for (size_t i = 1; i < demands.size(); ++i) {
        const ApplianceDemand& other = demands[i];
        int reserved = static_share(budget, appliances, other.appliance);
        int wanted = other.held + other.waiting;
        int64_t claim =
            std::max({other.held, other.limit, wanted > 0 ? std::min(reserved, wanted) : 0});
        claimed += std::max<int64_t>(0, claim);
        if (other.appliance < uint32_t(appliances)) heard[other.appliance] = true;
    }
    for (uint32_t index = 0; index < uint32_t(appliances); ++index)
        if (!heard[index]) claimed += static_share(budget, appliances, index);
    return claimed;
}

}  // namespace

int appliance_limit(int budget, std::span<const ApplianceDemand> demands, int appliances,
                    bool majority, int current, bool may_grow) {
    PGPLEX_ASSERT(!demands.empty() && appliances >= 1);
    int fixed = static_share(budget, appliances, demands[0].appliance);
    int share = fixed;
    if (majority) {
        std::vector<pool::Demand> wanted;
        for (const ApplianceDemand& demand : demands)
            wanted.push_back({demand.appliance, demand.held, demand.waiting});
        share = pool::shares(budget, wanted)[0];
    }
    int64_t room = int64_t(budget) - claimed_by_others(budget, demands, appliances);
    int64_t target = std::min<int64_t>(share, room);
    // Out of its turn an appliance only shrinks: the others' room was counted with its last
    // report, and only the one in its turn grows into what they left.
    if (!may_grow) target = std::min<int64_t>(target, std::max(current, 0));
    return int(std::clamp<int64_t>(target, 0, budget));
}

bool growth_turn(int64_t wall_ms, int64_t slot_ms, int appliances, uint32_t appliance) {
    PGPLEX_ASSERT(slot_ms > 0 && appliances >= 1);
    int64_t slot = wall_ms / slot_ms;
    return slot % appliances == int64_t(appliance) && wall_ms % slot_ms < slot_ms / 2;
}

}  // namespace pgplex::gossip
