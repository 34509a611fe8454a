// libFuzzer target for state_file (cluster/saved_state.h): any text is read or refused with
// a reason, never a crash or a throw; what is read formats to a text that reads back the same.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/saved_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<pgplex::cluster::SavedCluster> clusters;
    std::string reason;
    if (!pgplex::cluster::parse_saved_state(text, clusters, reason)) {
        if (reason.empty() || !clusters.empty()) std::abort();
        return 0;
    }
    std::vector<pgplex::cluster::SavedCluster> again;
    if (!pgplex::cluster::parse_saved_state(pgplex::cluster::format_saved_state(clusters), again,
                                            reason))
        std::abort();
    if (again.size() != clusters.size()) std::abort();
    for (const pgplex::cluster::SavedCluster& cluster : clusters) {
        bool found = false;
        for (const pgplex::cluster::SavedCluster& other : again) found = found || other == cluster;
        if (!found) std::abort();
    }
    return 0;
}
