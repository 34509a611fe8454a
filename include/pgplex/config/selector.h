// A service's selector, compiled once when the config is read: "primary",
// "replica && !offline", "sync || (replica && offline_query)". Predicates: primary, replica,
// sync, delayed, offline, offline_query, any. Operators: !, &&, ||, parentheses. An empty
// text selects nothing. What it is matched against is a node's facts, which the cluster
// (cluster/topology.h) reads from its status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgplex::config {

struct SelectorFacts {
    bool primary = false;
    bool replica = false;
    bool sync = false;     // a replica its primary calls sync or quorum
    bool delayed = false;  // a replica with recovery_min_apply_delay
    bool offline = false;
    bool offline_query = false;
};

class Selector {
  public:
    // Returns false and sets reason on a syntax error or an unknown predicate.
    static bool compile(std::string_view text, Selector& out, std::string& reason);
    bool matches(const SelectorFacts& node) const;
    bool empty() const { return code_.empty(); }

  private:
    std::vector<uint8_t> code_;  // postfix
};

}  // namespace pgplex::config
