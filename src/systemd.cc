// See systemd.h. Socket activation never opens an address of its own: what systemd passed
// is what pgplex listens on, so `systemctl stop pgplex.service` with pgplex.socket active
// keeps the kernel queueing connections for the next start. Matching by FileDescriptorName=
// first lets one .socket unit carry several listeners; matching by bound address covers a
// unit that names nothing (systemd then names every socket after the unit).
#include "pgplex/systemd.h"

#include <systemd/sd-daemon.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "pgplex/base/clock.h"
#include "pgplex/base/log.h"

namespace pgplex::systemd {

namespace {

// How often STATUS= is refreshed: often enough for `systemctl status`, rare enough that the
// sum over the workers' stats costs nothing.
constexpr int64_t status_every_ms = 2000;

uint64_t monotonic_usec() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return uint64_t(now.tv_sec) * 1'000'000 + uint64_t(now.tv_nsec) / 1000;
}

bool has_socket(const std::vector<ActivatedSocket>& sockets, const worker::ListenerRole& role,
                const config::Endpoint& endpoint) {
    for (const ActivatedSocket& socket : sockets)
        if (socket.role.cluster == role.cluster && socket.role.service == role.service &&
            socket.bound.same_as(endpoint))
            return true;
    return false;
}

// A configured address with no socket from systemd is not listened on: said once at start.
void log_uncovered(const config::Config& config, const std::vector<ActivatedSocket>& sockets) {
    for (const config::Listen& listen : config.listen)
        if (!has_socket(sockets, {}, listen.endpoint))
            log_warning("socket activation: no socket for listen %s; not listening on it",
                        listen.endpoint.to_string().c_str());
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen)
                if (!has_socket(sockets, {cluster.name, service.name}, endpoint))
                    log_warning(
                        "socket activation: no socket for service %s.%s on %s; not listening "
                        "on it",
                        cluster.name.c_str(), service.name.c_str(), endpoint.to_string().c_str());
}

}  // namespace

std::string listener_name(const worker::ListenerRole& role) {
    return role.service.empty() ? "pgplex" : role.cluster + "." + role.service;
}

bool role_for(const config::Config& config, const std::string& name, const io::BoundAddress& bound,
              worker::ListenerRole& role) {
    if (name == "pgplex") {
        role = {};
        return true;
    }
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            if (name == cluster.name + "." + service.name) {
                role = {cluster.name, service.name};
                return true;
            }
    for (const config::Listen& listen : config.listen)
        if (bound.same_as(listen.endpoint)) {
            role = {};
            return true;
        }
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen)
                if (bound.same_as(endpoint)) {
                    role = {cluster.name, service.name};
                    return true;
                }
    return false;
}

bool take_activated(const config::Config& config, std::vector<ActivatedSocket>& out) {
    char** names = nullptr;
    int count = sd_listen_fds_with_names(1, &names);
    if (count < 0) log_error("socket activation: %s", strerror(-count));
    if (count <= 0) return false;
    for (int i = 0; i < count; ++i) {
        base::UniqueFd fd(SD_LISTEN_FDS_START + i);
        std::string name = names != nullptr && names[i] != nullptr ? names[i] : "unknown";
        ActivatedSocket socket;
        std::string reason;
        if (!io::adopt(fd.get(), socket.bound, reason)) {
            log_error("socket activation: fd %d (%s): %s; closed", fd.get(), name.c_str(),
                      reason.c_str());
        } else if (!role_for(config, name, socket.bound, socket.role)) {
            log_error(
                "socket activation: fd %d (%s, %s) is neither named after a listener (pgplex, "
                "CLUSTER.SERVICE) nor bound to a configured address; closed",
                fd.get(), name.c_str(), socket.bound.to_string().c_str());
        } else {
            log_info("socket activation: %s on %s (FileDescriptorName=%s)",
                     listener_name(socket.role).c_str(), socket.bound.to_string().c_str(),
                     name.c_str());
            socket.fd = std::move(fd);
            out.push_back(std::move(socket));
        }
    }
    if (names != nullptr) {
        for (int i = 0; i < count; ++i) free(names[i]);
        free(static_cast<void*>(names));
    }
    log_uncovered(config, out);
    return true;
}

void notify_ready() {
    sd_notify(0, "READY=1\nSTATUS=serving");
}

void notify_reloading() {
    char message[64];
    snprintf(message, sizeof message, "RELOADING=1\nMONOTONIC_USEC=%llu",
             static_cast<unsigned long long>(monotonic_usec()));
    sd_notify(0, message);
}

void notify_reloaded(bool refused) {
    sd_notify(0, refused ? "READY=1\nSTATUS=reload refused; see the log" : "READY=1");
}

void notify_stopping() {
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

Heartbeat::Heartbeat(uint32_t workers) : workers_(workers), ticks_seen_(workers, 0) {
    uint64_t usec = 0;
    watchdog_ = sd_watchdog_enabled(0, &usec) > 0;
    // Pinged at half the interval, as sd_watchdog_enabled(3) advises; a worker ticks every
    // 200 ms, so an interval under a second would flag a merely busy worker.
    ping_every_ms_ = int64_t(usec / 2000);
}

bool Heartbeat::all_ticked(const worker::Shared& shared) {
    bool all = true;
    for (uint32_t i = 0; i < workers_; ++i) {
        uint64_t ticks = shared.stats[i].ticks.load(std::memory_order_relaxed);
        if (ticks == ticks_seen_[i]) all = false;
        ticks_seen_[i] = ticks;
    }
    return all;
}

void Heartbeat::turn(const worker::Shared& shared, bool stopping) {
    int64_t now = base::monotonic_ms();
    if (watchdog_ && now - pinged_ms_ >= ping_every_ms_) {
        // While stopping, workers finish one by one and stop ticking; the stop is bounded by
        // shutdown_timeout and TimeoutStopSec= instead.
        if (all_ticked(shared) || stopping) sd_notify(0, "WATCHDOG=1");
        pinged_ms_ = now;
    }
    if (!stopping && now - reported_ms_ >= status_every_ms) report(shared, now);
}

void Heartbeat::report(const worker::Shared& shared, int64_t now_ms) {
    uint64_t clients = 0;
    uint64_t servers = 0;
    uint64_t transactions = 0;
    for (uint32_t i = 0; i < workers_; ++i) {
        const worker::WorkerStats& stats = shared.stats[i];
        for (const auto& count : stats.clients_in) clients += count.load(std::memory_order_relaxed);
        for (const auto& count : stats.servers_in) servers += count.load(std::memory_order_relaxed);
        transactions += stats.transactions.load(std::memory_order_relaxed);
    }
    int64_t elapsed_ms = reported_ms_ == 0 ? 0 : now_ms - reported_ms_;
    uint64_t tps =
        elapsed_ms > 0 ? (transactions - transactions_reported_) * 1000 / uint64_t(elapsed_ms) : 0;
    char message[128];
    snprintf(message, sizeof message, "STATUS=serving: %llu clients, %llu servers, %llu tps",
             static_cast<unsigned long long>(clients), static_cast<unsigned long long>(servers),
             static_cast<unsigned long long>(tps));
    sd_notify(0, message);
    transactions_reported_ = transactions;
    reported_ms_ = now_ms;
}

}  // namespace pgplex::systemd
