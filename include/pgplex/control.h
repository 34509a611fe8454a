// The control thread: starts the workers, then turns signals into reloads and shutdowns,
// and tells systemd about it (sd_notify READY / RELOADING / STOPPING / WATCHDOG).
#pragma once

#include <memory>

#include "pgplex/config/config.h"

namespace pgplex {

// Runs until shutdown completes. Returns the process exit code. `take_over`: start by taking
// the listeners and clients of the pgplex running on the same configuration (takeover.h).
int run_control(std::shared_ptr<const config::Config> config, bool take_over = false);

}  // namespace pgplex
