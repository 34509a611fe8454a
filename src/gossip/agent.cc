// See agent.h.
#include "pgplex/gossip/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/writer.h"

namespace pgplex::gossip {

namespace {

// Gossip datagrams are a few kilobytes at most (the engine caps them); a larger one is not
// from a pgplex appliance and is read truncated, then refused by its MAC.
constexpr size_t datagram_bytes_max = 65536;
// Datagrams read per receive(): the rest wait for the next turn of the monitor loop, so a
// flood cannot starve the node checks.
constexpr int datagrams_per_turn = 256;

uint64_t random_seed() {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != ssize_t(sizeof seed)) {
        timespec now{};
        clock_gettime(CLOCK_REALTIME, &now);
        seed = uint64_t(now.tv_sec) * 1'000'000'007u ^ uint64_t(now.tv_nsec) ^ uint64_t(getpid());
    }
    return seed;
}

// The main listener as this host reaches it: an address bound to all interfaces is reached on
// loopback.
config::Endpoint reachable(config::Endpoint endpoint) {
    if (endpoint.address.ss_family == AF_INET) {
        auto& in = reinterpret_cast<sockaddr_in&>(endpoint.address);
        if (in.sin_addr.s_addr == htonl(INADDR_ANY)) in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (endpoint.address.ss_family == AF_INET6) {
        auto& in6 = reinterpret_cast<sockaddr_in6&>(endpoint.address);
        if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) in6.sin6_addr = in6addr_loopback;
    }
    return endpoint;
}

}  // namespace

Settings settings_of(const config::Config& config) {
    const config::Gossip& gossip = config.gossip;
    Settings settings;
    settings.self = gossip.self;
    settings.peers = gossip.peer_names;
    settings.key = gossip.key;
    settings.probe_interval_ms = gossip.probe_interval_ms;
    settings.probe_timeout_ms = gossip.probe_timeout_ms;
    settings.suspect_timeout_ms = gossip.suspect_timeout_ms;
    settings.lease_ms = gossip.lease_ms;
    // The boot id grows from one start to the next: the wall clock in microseconds.
    timespec wall{};
    clock_gettime(CLOCK_REALTIME, &wall);
    settings.boot_id = uint64_t(wall.tv_sec) * 1'000'000u + uint64_t(wall.tv_nsec) / 1000u;
    for (const config::Cluster& cluster : config.clusters) {
        ClusterPolicy policy;
        policy.name = cluster.name;
        policy.promote = cluster.failover == config::Failover::Promote;
        policy.max_failover_lag_bytes = cluster.max_failover_lag_bytes;
        settings.clusters.push_back(std::move(policy));
    }
    return settings;
}

std::unique_ptr<Agent> Agent::open(const config::Config& config, int64_t now_ms,
                                   std::string& reason) {
    const config::Gossip& gossip = config.gossip;
    std::unique_ptr<Agent> agent(new Agent());
    int family = gossip.listen.address.ss_family;
    agent->socket_.reset(::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!agent->socket_.valid() ||
        ::bind(agent->socket_.get(), reinterpret_cast<const sockaddr*>(&gossip.listen.address),
               gossip.listen.address_bytes) != 0) {
        reason = "cannot listen on " + gossip.self + ": " + std::strerror(errno);
        return nullptr;
    }
    agent->settings_ = gossip;
    agent->own_listener_ = reachable(config.listen.front().endpoint);
    for (const config::Endpoint& peer : gossip.peers)
        agent->addresses_[peer.numeric()] = peer.address;
    agent->engine_ = std::make_unique<Engine>(settings_of(config), random_seed(), now_ms);
    log_info("gossip: listening on %s with %zu peers; a majority is %zu of %zu appliances",
             gossip.self.c_str(), gossip.peers.size(), (gossip.peers.size() + 1) / 2 + 1,
             gossip.peers.size() + 1);
    return agent;
}

void Agent::receive(int64_t now_ms) {
    static thread_local std::vector<uint8_t> buffer(datagram_bytes_max);
    for (int read = 0; read < datagrams_per_turn; ++read) {
        sockaddr_storage from{};
        socklen_t from_bytes = sizeof from;
        ssize_t got = ::recvfrom(socket_.get(), buffer.data(), buffer.size(), MSG_TRUNC,
                                 reinterpret_cast<sockaddr*>(&from), &from_bytes);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return;  // EAGAIN: drained; anything else: the next poll tells again
        size_t size = std::min(size_t(got), buffer.size());
        engine_->receive(config::numeric_address(from), std::span(buffer.data(), size), now_ms);
    }
}

bool Agent::send_one(const Datagram& datagram) {
    auto known = addresses_.find(datagram.to);
    sockaddr_storage address{};
    if (known != addresses_.end()) {
        address = known->second;
    } else {
        config::Endpoint endpoint;
        std::string reason;
        if (!config::parse_endpoint(datagram.to, endpoint, reason)) return false;
        address = endpoint.address;
        addresses_[datagram.to] = address;
    }
    socklen_t bytes = address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    ssize_t sent = ::sendto(socket_.get(), datagram.bytes.data(), datagram.bytes.size(), 0,
                            reinterpret_cast<const sockaddr*>(&address), bytes);
    return sent == ssize_t(datagram.bytes.size());
}

void Agent::flush() {
    for (const Datagram& datagram : engine_->take_outgoing()) {
        if (send_one(datagram)) continue;
        // Logged on powers of two: a peer that is down refuses every datagram to it.
        ++send_failures_;
        if ((send_failures_ & (send_failures_ - 1)) == 0)
            log_warning("gossip: cannot send to %s: %s (%llu sends failed so far)",
                        datagram.to.c_str(), std::strerror(errno),
                        static_cast<unsigned long long>(send_failures_));
    }
}

}  // namespace pgplex::gossip

namespace pgplex::gossip {

void Agent::forward_cancel(uint32_t pid, uint32_t key, int64_t now_ms) {
    uint32_t index = limits::pid_appliance(pid);
    if (index >= settings_.appliances.size() || index == settings_.index) return;
    engine_->forward_cancel(settings_.appliances[index], uint64_t(pid) << 32 | key, now_ms);
    flush();
}

void Agent::deliver_cancels() {
    for (uint64_t request : engine_->take_cancels()) {
        uint32_t pid = uint32_t(request >> 32);
        if (limits::pid_appliance(pid) == settings_.index) deliver_cancel(pid, uint32_t(request));
    }
}

// A CancelRequest (PostgreSQL's 16 bytes) on a fresh connection to this appliance's own
// listener. Loopback: the connection is made or refused at once; a connect still in progress
// gets a short wait, since the monitor thread must not stall on it.
void Agent::deliver_cancel(uint32_t pid, uint32_t key) {
    const config::Endpoint& to = own_listener_;
    base::UniqueFd fd(
        ::socket(to.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return;
    int connected =
        ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to.address), to.address_bytes);
    if (connected != 0 && errno == EINPROGRESS) {
        pollfd wait{fd.get(), POLLOUT, 0};
        int error = 0;
        socklen_t error_bytes = sizeof error;
        if (::poll(&wait, 1, 100) == 1 &&
            getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &error_bytes) == 0 && error == 0)
            connected = 0;
    }
    uint8_t packet[16];
    proto::Writer writer(packet, sizeof packet);
    writer.begin_untyped();
    writer.int32(uint32_t(proto::StartupCode::CancelRequest));
    writer.int32(pid);
    writer.int32(key);
    writer.end();
    if (connected != 0 ||
        ::send(fd.get(), writer.data(), writer.size(), MSG_NOSIGNAL) != ssize_t(writer.size()))
        log_warning(
            "gossip: a cancel request forwarded by another appliance could not reach "
            "%s: %s",
            to.to_string().c_str(), std::strerror(errno));
}

}  // namespace pgplex::gossip
