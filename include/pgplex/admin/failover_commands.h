// The management database's commands that act on a cluster rather than read it: UNFENCE and
// SWITCHOVER. They are checked here against the snapshots the worker holds (a clear error for
// a cluster or node that does not exist, a node that is not fenced, a target that may not be
// promoted), then handed to the monitor thread through the request table (cluster/requests.h):
// the data path never calls into the control plane. The monitor checks again against its own,
// newer state and logs what it does; SHOW CLUSTERS (failover_state, hold_writes) and SHOW
// NODES (fenced) show the progress.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "pgplex/admin/show.h"

namespace pgplex::admin {

enum class CommandOutcome : uint8_t {
    NotMine,  // not UNFENCE or SWITCHOVER: nothing written
    Done,     // NoticeResponse + CommandComplete written
    Failed,   // one ErrorResponse written
};

CommandOutcome answer_failover_command(std::string_view command, const Context& context,
                                       std::vector<uint8_t>& out);

}  // namespace pgplex::admin
