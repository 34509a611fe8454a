// What the parts of the gossip engine share: the seeded random source (so a run replays from
// its seed) and the outbox where membership and the decider leave records for the engine to
// seal into datagrams. Records addressed to this appliance itself are handed straight back
// by the engine, so a lone appliance (majority of one) goes through the same code.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pgplex/gossip/wire.h"

namespace pgplex::gossip {

// splitmix64: small, fast, and the same sequence on every platform for a given seed.
class Rng {
  public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    // Uniform in [0, bound); 0 when bound is 0.
    uint64_t below(uint64_t bound) { return bound == 0 ? 0 : next() % bound; }

  private:
    uint64_t state_;
};

// Records to send, each to one appliance, in order.
struct Outbox {
    std::vector<std::pair<std::string, Record>> items;
    void send(const std::string& to, Record record) { items.emplace_back(to, std::move(record)); }
};

// The configured appliances, self included: majority = size/2 + 1.
inline size_t majority_of(size_t appliances) {
    return appliances / 2 + 1;
}

}  // namespace pgplex::gossip
