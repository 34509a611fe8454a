// What the monitor keeps across a restart (state_file in [pgplex]): per cluster, its epoch,
// the last node it took for primary, and the nodes it fenced. A fence lives in pgplex alone
// when a node has no pgplex schema: without the file, a restarted pgplex would see an old
// primary that came back writable as one more primary, and could take it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/derive.h"

namespace pgplex::cluster {

struct SavedCluster {
    std::string name;
    uint64_t epoch = 0;
    std::string primary;              // the last node taken for primary; empty: none yet
    std::vector<std::string> fenced;  // sorted
    bool operator==(const SavedCluster&) const = default;
};

// The file's text (TOML, one table per cluster), and back. parse_saved_state gives false
// and a reason (with the line) for a text it cannot read whole; it never throws.
std::string format_saved_state(const std::vector<SavedCluster>& clusters);
bool parse_saved_state(std::string_view text, std::vector<SavedCluster>& out, std::string& reason);

// Reads path: true with nothing in out when it does not exist (a first start). Writes
// through a temporary file, fsync and rename, so a crash leaves the old file or the new one.
bool read_saved_state(const std::string& path, std::vector<SavedCluster>& out, std::string& reason);
bool write_saved_state(const std::string& path, const std::vector<SavedCluster>& clusters,
                       std::string& reason);

// What a cluster's derivation holds that the file keeps, and back: restore() takes the epoch
// (never backwards), the last primary, and fences the configured nodes the file names (to be
// made read-only again on the node when it has the schema). Nodes no longer configured are
// forgotten.
SavedCluster saved_of(const std::string& name, const Derivation& cluster,
                      const std::vector<NodeState*>& nodes);
void restore(const SavedCluster& saved, Derivation& cluster, const std::vector<NodeState*>& nodes);

}  // namespace pgplex::cluster
