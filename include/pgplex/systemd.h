// What pgplex tells systemd and takes from it: the listening sockets of socket activation
// (sd_listen_fds_with_names), and the sd_notify protocol (READY, RELOADING, STOPPING, STATUS,
// WATCHDOG). Every call is a no-op when pgplex was not started by systemd (no LISTEN_FDS,
// no NOTIFY_SOCKET), so the control thread calls them unconditionally.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pgplex/base/unique_fd.h"
#include "pgplex/config/config.h"
#include "pgplex/io/listener.h"
#include "pgplex/worker/worker.h"

namespace pgplex::systemd {

// A listening socket systemd passed, and the listener it serves.
struct ActivatedSocket {
    base::UniqueFd fd;
    worker::ListenerRole role;
    io::BoundAddress bound;
};

// The FileDescriptorName= that names a listener: "pgplex" for [pgplex] listen,
// "CLUSTER.SERVICE" for a service.
std::string listener_name(const worker::ListenerRole& role);

// Which listener a passed socket serves: the one its name names, else the one configured on
// the address it is bound to. False when neither.
bool role_for(const config::Config& config, const std::string& name, const io::BoundAddress& bound,
              worker::ListenerRole& role);

// Takes the sockets systemd passed (and unsets LISTEN_FDS, so nothing started later sees
// them). False when pgplex was not socket-activated. A socket that serves no listener is
// logged and closed; a configured address without a socket is logged and not listened on.
bool take_activated(const config::Config& config, std::vector<ActivatedSocket>& out);

void notify_ready();
void notify_reloading();  // RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload wants
void notify_reloaded(bool refused);
void notify_stopping();

// STATUS= and WATCHDOG=1 from the control loop. The watchdog is pinged only when every
// worker's tick count moved since the last ping, so a stuck worker stops the pings and
// systemd restarts pgplex.
class Heartbeat {
  public:
    explicit Heartbeat(uint32_t workers);
    // Called on every turn of the control loop; pings and reports when due.
    void turn(const worker::Shared& shared, bool stopping);

  private:
    void report(const worker::Shared& shared, int64_t now_ms);
    bool all_ticked(const worker::Shared& shared);
    uint32_t workers_;
    bool watchdog_ = false;
    int64_t ping_every_ms_ = 0;
    int64_t pinged_ms_ = 0;
    int64_t reported_ms_ = 0;
    uint64_t transactions_reported_ = 0;
    std::vector<uint64_t> ticks_seen_;
};

}  // namespace pgplex::systemd
