// The gossip engine's seat on the control plane: its UDP socket, its seed, and the [gossip]
// settings it was built from. It lives on the monitor thread (cluster/monitor.cc), which polls
// fd() with its node connections, feeds it the monitors' view, and publishes its decisions.
// Plain non-blocking sendto/recvfrom: this is the control plane, a few datagrams a second,
// never the data path.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pgplex/base/unique_fd.h"
#include "pgplex/config/config.h"
#include "pgplex/gossip/engine.h"

namespace pgplex::gossip {

class Agent {
  public:
    // Binds [gossip] listen. Null, with reason set, when it cannot.
    static std::unique_ptr<Agent> open(const config::Config& config, int64_t now_ms,
                                       std::string& reason);

    int fd() const { return socket_.get(); }
    Engine& engine() { return *engine_; }
    const Engine& engine() const { return *engine_; }

    // Hands every datagram waiting on the socket to the engine.
    void receive(int64_t now_ms);
    // Sends what the engine has to send. A datagram that cannot go now is dropped: gossip
    // repeats itself, and a lost message is what it is built to survive.
    void flush();

    // A CancelRequest for a client of the appliance its pid names: sent to it now.
    void forward_cancel(uint32_t pid, uint32_t key, int64_t now_ms);
    // CancelRequests other appliances forwarded here: each is sent to this appliance's own
    // listener, so the worker of the client takes it as any other.
    void deliver_cancels();

  private:
    Agent() = default;
    bool send_one(const Datagram& datagram);
    void deliver_cancel(uint32_t pid, uint32_t key);

    base::UniqueFd socket_;
    std::unique_ptr<Engine> engine_;
    config::Gossip settings_;
    std::unordered_map<std::string, sockaddr_storage> addresses_;  // numeric name → address
    config::Endpoint own_listener_;  // where forwarded cancels are delivered
    uint64_t send_failures_ = 0;
};

// The engine's settings from the config: self, peers, key, timers, and each cluster's policy.
Settings settings_of(const config::Config& config);

}  // namespace pgplex::gossip
