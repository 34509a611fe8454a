// The decider with a decision store ([dcs]; gossip/decider.h, dcs/store.h), over the unit
// harness's network and a store that answers at once: the appliances write one decision and
// route writes only confirm_ms after learning it; a failover is one compare-and-swap that every
// appliance follows; an appliance cut off from the store stops routing writes within
// confirm_ms while the others go on, and resumes when it reads the store again.
#include <criterion/criterion.h>

#include <map>

#include "harness.h"
#include "pgplex/dcs/store.h"

using namespace pgplex::gossip;
using gossip_test::Net;
using gossip_test::Role;
using pgplex::dcs::Reading;
using pgplex::dcs::StoredDecision;

namespace {

constexpr int64_t confirm = 2000;

struct Shared {
    std::map<std::string, StoredDecision> data;
    int64_t revision = 0;
    int cas_lost = 0;
};

// One appliance's side of a store that answers at once, unless cut off.
class TestStore final : public pgplex::dcs::DecisionStore {
  public:
    explicit TestStore(Shared& shared) : shared_(shared) {}
    std::optional<Reading> reading(std::string_view cluster) const override {
        auto it = readings_.find(std::string(cluster));
        if (it == readings_.end()) return std::nullopt;
        return it->second;
    }
    int64_t lease_until_ms() const override { return lease_until_; }
    int64_t confirm_ms() const override { return confirm; }
    void propose(std::string_view cluster, int64_t expected, const StoredDecision& next) override {
        if (!reachable) return;
        StoredDecision& current = shared_.data[std::string(cluster)];
        if (current.revision != expected) {
            ++shared_.cas_lost;
            return;
        }
        cr_assert_gt(next.epoch, current.epoch, "a compare-and-swap would lower the epoch");
        current = next;
        current.revision = ++shared_.revision;
    }
    // A read and a keepalive, sent now.
    void refresh(int64_t now) {
        if (!reachable) return;
        readings_["main"] = Reading{shared_.data["main"], now};
        lease_until_ = now + confirm;
    }
    bool reachable = true;

  private:
    Shared& shared_;
    std::map<std::string, Reading> readings_;
    int64_t lease_until_ = 0;
};

struct StoreNet {
    Net net;
    Shared shared;
    std::vector<std::unique_ptr<TestStore>> stores;

    StoreNet(size_t count, bool promote) : net(count, promote) {
        for (size_t i = 0; i < count; ++i) {
            stores.push_back(std::make_unique<TestStore>(shared));
            net.engines[i]->use_store(stores[i].get());
        }
    }
    // Runs `ms`, the stores read every 500 ms (confirm / 4).
    void run(int64_t ms) {
        for (int64_t until = net.now + ms; net.now < until;) {
            if (net.now % 500 == 0)
                for (auto& store : stores) store->refresh(net.now);
            net.run(10);
        }
    }
};

}  // namespace

Test(gossip_decider_store, appliances_write_one_decision_and_route_writes_after_confirm) {
    StoreNet s(3, false);
    int64_t learned = -1;
    for (int step = 0; step < 1000 && learned < 0; ++step) {
        s.run(10);
        if (s.net.decision(0).epoch > 0) learned = s.net.now;
    }
    cr_assert_geq(learned, 0, "no decision within 10 s");
    cr_assert_not(s.net.decision(0).writable, "writable at once after learning the epoch");
    s.run(confirm + 600);
    const StoredDecision& stored = s.shared.data["main"];
    cr_assert_eq(stored.epoch, s.net.decision(0).epoch);
    cr_assert_str_eq(stored.primary.c_str(), "db0:5432");
    for (size_t i = 0; i < 3; ++i) {
        cr_assert(s.net.decision(i).writable, "appliance %zu not writable", i);
        cr_assert_eq(s.net.decision(i).epoch, stored.epoch);
    }
}

Test(gossip_decider_store, a_failover_is_one_compare_and_swap_every_appliance_follows) {
    StoreNet s(3, false);
    s.run(8000);
    uint64_t epoch = s.net.decision(0).epoch;
    cr_assert(s.net.decision(0).writable);
    // The old primary dies and its HA manager promotes db1: a majority of views see it.
    s.net.set_everywhere(0, false, Role::Primary);
    s.net.set_everywhere(1, true, Role::Primary);
    s.run(10000);
    const StoredDecision& stored = s.shared.data["main"];
    cr_assert_eq(stored.epoch, epoch + 1, "one new epoch, not %lu", (unsigned long)stored.epoch);
    cr_assert_str_eq(stored.primary.c_str(), "db1:5432");
    for (size_t i = 0; i < 3; ++i) {
        cr_assert_eq(s.net.decision(i).epoch, epoch + 1);
        cr_assert(s.net.decision(i).writable);
    }
}

Test(gossip_decider_store, a_cut_off_appliance_stops_routing_writes_and_resumes) {
    StoreNet s(3, false);
    s.run(8000);
    cr_assert(s.net.decision(0).writable);
    s.stores[0]->reachable = false;
    s.run(confirm);
    cr_assert_not(s.net.decision(0).writable, "still writable confirm_ms after losing the store");
    cr_assert(s.net.decision(1).writable);
    cr_assert(s.net.decision(2).writable);
    s.stores[0]->reachable = true;
    s.run(600);
    cr_assert(s.net.decision(0).writable, "the same epoch, read again: writable at once");
}

Test(gossip_decider_store, gossip_alone_never_moves_the_primary) {
    // The store cannot be reached by anyone: views call for a failover, but no epoch changes
    // and nobody routes writes.
    StoreNet s(3, false);
    s.run(8000);
    uint64_t epoch = s.net.decision(0).epoch;
    for (auto& store : s.stores) store->reachable = false;
    s.net.set_everywhere(0, false, Role::Primary);
    s.net.set_everywhere(1, true, Role::Primary);
    s.run(8000);
    for (size_t i = 0; i < 3; ++i) {
        cr_assert_eq(s.net.decision(i).epoch, epoch);
        cr_assert_not(s.net.decision(i).writable);
    }
}

Test(gossip_decider_store, an_unreadable_decision_is_replaced_not_followed) {
    // etcd_codec gives an unreadable value as epoch 0 with its revision.
    StoreNet s(3, false);
    s.shared.data["main"] = StoredDecision{0, "", "", 99};
    s.shared.revision = 99;
    s.run(8000);
    const StoredDecision& stored = s.shared.data["main"];
    cr_assert_gt(stored.epoch, 0u);
    cr_assert_str_eq(stored.primary.c_str(), "db0:5432");
    for (size_t i = 0; i < 3; ++i) cr_assert(s.net.decision(i).writable);
}
