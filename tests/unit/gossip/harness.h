// A small deterministic network of gossip Engines for the unit tests: every datagram arrives
// one 10 ms step after it was sent unless the link is cut; each appliance's monitor reports
// its own table of nodes every 100 ms.
#pragma once

#include <criterion/criterion.h>

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pgplex/cluster/topology.h"
#include "pgplex/gossip/engine.h"

namespace gossip_test {

using pgplex::cluster::Role;

inline pgplex::cluster::NodeStatus node(const char* name, bool healthy, Role role, uint64_t lsn) {
    pgplex::cluster::NodeStatus status;
    status.name = name;
    status.healthy = healthy;
    status.role = role;
    status.replay_lsn = lsn;
    status.current_lsn = role == Role::Primary ? lsn : 0;
    return status;
}

struct Net {
    std::vector<std::string> addresses;
    std::vector<std::unique_ptr<pgplex::gossip::Engine>> engines;
    std::vector<pgplex::cluster::ClusterStatus> views;  // what each appliance's monitor sees
    std::set<std::pair<size_t, size_t>> cut;            // (from, to) links that drop
    struct Flight {
        size_t from, to;
        std::vector<uint8_t> bytes;
    };
    std::vector<Flight> flying;
    std::vector<pgplex::gossip::Promotion> promotions;
    int64_t now = 0;

    Net(size_t count, bool promote, int64_t max_lag = -1) {
        for (size_t i = 0; i < count; ++i)
            addresses.push_back("10.0.0." + std::to_string(i + 1) + ":7946");
        for (size_t i = 0; i < count; ++i) {
            pgplex::gossip::Settings settings;
            settings.self = addresses[i];
            settings.peers = addresses;
            settings.key.assign(32, 7);
            settings.clusters.push_back({"main", promote, max_lag});
            settings.boot_id = 1000 + i;
            all_settings.push_back(settings);
            engines.push_back(std::make_unique<pgplex::gossip::Engine>(settings, i + 1, now));
            pgplex::cluster::ClusterStatus status;
            status.name = "main";
            status.nodes = {node("db0:5432", true, Role::Primary, 5000),
                            node("db1:5432", true, Role::Replica, 4900),
                            node("db2:5432", true, Role::Replica, 4000)};
            views.push_back(status);
        }
    }
    std::vector<pgplex::gossip::Settings> all_settings;
    // Appliance i restarts: a fresh Engine with a newer boot id.
    void restart(size_t i, uint64_t boot) {
        all_settings[i].boot_id = boot;
        engines[i] = std::make_unique<pgplex::gossip::Engine>(all_settings[i], boot, now);
    }
    void isolate(size_t i) {
        for (size_t j = 0; j < engines.size(); ++j) {
            cut.insert({i, j});
            cut.insert({j, i});
        }
    }
    void set_node(size_t appliance, size_t index, bool healthy, Role role) {
        views[appliance].nodes[index].healthy = healthy;
        views[appliance].nodes[index].role = role;
    }
    void set_everywhere(size_t index, bool healthy, Role role) {
        for (size_t i = 0; i < engines.size(); ++i) set_node(i, index, healthy, role);
    }
    void step() {
        std::vector<Flight> due;
        due.swap(flying);
        for (Flight& flight : due)
            engines[flight.to]->receive(addresses[flight.from], flight.bytes, now);
        for (size_t i = 0; i < engines.size(); ++i) {
            if (now % 100 == 0) engines[i]->observe(views[i], now);
            if (now >= engines[i]->next_tick_ms()) engines[i]->tick(now);
            for (auto& promotion : engines[i]->take_promotions()) promotions.push_back(promotion);
            for (auto& datagram : engines[i]->take_outgoing()) {
                size_t to = 0;
                while (to < addresses.size() && addresses[to] != datagram.to) ++to;
                cr_assert_lt(to, addresses.size(), "datagram to %s", datagram.to.c_str());
                if (cut.count({i, to}) == 0) flying.push_back({i, to, std::move(datagram.bytes)});
            }
        }
        now += 10;
    }
    // Runs for `ms`, checking after every step that no epoch has two primaries.
    void run(int64_t ms) {
        int64_t until = now + ms;
        while (now < until) {
            step();
            for (auto& engine : engines) {
                pgplex::gossip::Decision d = engine->decision("main", now);
                if (d.epoch == 0) continue;
                for (auto& [epoch, primary] : chosen)
                    if (epoch == d.epoch)
                        cr_assert_eq(primary, d.primary, "epoch %lu chose %s and %s",
                                     (unsigned long)epoch, primary.c_str(), d.primary.c_str());
                chosen.emplace_back(d.epoch, d.primary);
            }
        }
    }
    pgplex::gossip::Decision decision(size_t i) const { return engines[i]->decision("main", now); }
    std::vector<std::pair<uint64_t, std::string>> chosen;
};

}  // namespace gossip_test
