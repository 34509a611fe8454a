// See suspects.h.
#include "pgplex/cluster/suspects.h"

#include <xxhash.h>

#include <string>

namespace pgplex::cluster {

uint64_t Suspects::hash(const config::Endpoint& endpoint) {
    std::string name = endpoint.to_string();
    uint64_t value = XXH3_64bits(name.data(), name.size());
    return value == 0 ? 1 : value;  // 0 marks an empty slot
}

}  // namespace pgplex::cluster
