// See control.h. Signals are blocked in every thread and taken here with sigtimedwait, so
// no handler ever runs on a worker. A reload builds a whole new snapshot off the data path
// and publishes it; workers pick it up on their next tick. A file that does not load is
// refused with its file:line: reason, and the old snapshot keeps serving.
#include "pgplex/control.h"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/cluster/monitor.h"
#include "pgplex/io/listener.h"
#include "pgplex/worker/worker.h"

namespace pgplex {

namespace {

constexpr uint32_t pool_table_capacity = 16384;

base::LogLevel level_of(const std::string& name) {
    if (name == "error") return base::LogLevel::Error;
    if (name == "warning") return base::LogLevel::Warning;
    if (name == "notice") return base::LogLevel::Notice;
    if (name == "debug") return base::LogLevel::Debug;
    return base::LogLevel::Info;
}

struct WorkerThread {
    std::thread thread;
    std::atomic<int> state{0};  // 0 starting, 1 ready, -1 failed
    std::string error;
};

bool open_one(const config::Endpoint& endpoint, worker::ListenerRole role,
              std::vector<base::UniqueFd>& out, std::vector<worker::ListenerRole>& roles) {
    std::string reason;
    base::UniqueFd fd = io::listen_on(endpoint, reason);
    if (!fd.valid()) {
        log_error("cannot listen: %s", reason.c_str());
        return false;
    }
    out.push_back(std::move(fd));
    roles.push_back(std::move(role));
    return true;
}

// Opens every listen socket a worker needs: the main listener, then every service's. A Unix
// socket goes to worker 0 only.
bool open_listeners(const config::Config& config, uint32_t worker, std::vector<base::UniqueFd>& out,
                    std::vector<worker::ListenerRole>& roles) {
    for (const config::Listen& listen : config.listen) {
        if (listen.endpoint.is_unix() && worker != 0) continue;
        if (!open_one(listen.endpoint, {}, out, roles)) return false;
    }
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen) {
                if (endpoint.is_unix() && worker != 0) continue;
                if (!open_one(endpoint, {cluster.name, service.name}, out, roles)) return false;
            }
    return true;
}

void warn_restart_only(const config::Config& old_config, const config::Config& fresh) {
    bool listen_changed = old_config.listen.size() != fresh.listen.size();
    for (size_t i = 0; !listen_changed && i < fresh.listen.size(); ++i)
        listen_changed =
            old_config.listen[i].endpoint.to_string() != fresh.listen[i].endpoint.to_string();
    if (listen_changed) log_warning("reload: listen changed; it takes effect at restart");
    if (old_config.workers != fresh.workers)
        log_warning("reload: workers changed; it takes effect at restart");
    if (old_config.buffer_size != fresh.buffer_size ||
        old_config.buffer_count != fresh.buffer_count)
        log_warning("reload: buffer_size/buffer_count changed; they take effect at restart");
}

// Service listeners are opened at start; their ports and hosts change only at restart.
std::string service_addresses(const config::Config& config) {
    std::string out;
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen)
                out += cluster.name + "." + service.name + "@" + endpoint.to_string() + " ";
    return out;
}

void reload(worker::Shared& shared, cluster::Monitor& monitor) {
    std::shared_ptr<const config::Config> current = shared.config_snapshot();
    sd_notify(0, "RELOADING=1");
    config::LoadResult result = config::load(current->path);
    if (!result.config) {
        log_error("reload refused, keeping the running configuration: %s", result.error.c_str());
        sd_notify(0, "READY=1\nSTATUS=reload refused; see the log");
        return;
    }
    warn_restart_only(*current, *result.config);
    if (service_addresses(*current) != service_addresses(*result.config))
        log_warning("reload: service listeners changed; new ports take effect at restart");
    monitor.reconfigure(result.config);
    base::log_set_level(level_of(result.config->log_level));
    shared.publish(result.config);
    log_info("reload: %s loaded (%zu aliases)", result.config->path.c_str(),
             result.config->aliases.size() + (result.config->fallback ? 1 : 0));
    sd_notify(0, "READY=1\nSTATUS=serving");
}

// Turns signals into reloads and shutdowns until every worker has finished.
void wait_for_signals(worker::Shared& shared, cluster::Monitor& monitor, const std::string& path,
                      bool failed, int running) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    uint64_t watchdog_usec = 0;
    bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
    bool stopping = failed;
    while (true) {
        timespec wait{0, 200 * 1000 * 1000};
        siginfo_t info{};
        int sig = sigtimedwait(&signals, &info, &wait);
        if (watchdog) sd_notify(0, "WATCHDOG=1");
        if (sig == SIGHUP && !stopping) {
            log_info("SIGHUP: reloading %s", path.c_str());
            reload(shared, monitor);
        } else if (sig == SIGTERM || sig == SIGINT) {
            bool immediate = sig == SIGINT || shared.shutdown.load();
            std::shared_ptr<const config::Config> current = shared.config_snapshot();
            int64_t timeout = current->shutdown_timeout_ms > 0 ? current->shutdown_timeout_ms : 0;
            if (!stopping) {
                shared.shutdown_deadline_ms.store(base::monotonic_ms() + timeout);
                log_info("%s: shutting down%s", sig == SIGINT ? "SIGINT" : "SIGTERM",
                         immediate ? " now" : ", letting transactions finish");
                sd_notify(0, "STOPPING=1");
            }
            stopping = true;
            shared.shutdown.store(true, std::memory_order_release);
            if (immediate) shared.immediate.store(true, std::memory_order_release);
        }
        if (stopping && shared.finished_workers.load(std::memory_order_acquire) == running) break;
    }
}

}  // namespace

std::shared_ptr<const cluster::Topology> worker::Shared::topology_snapshot() const {
    std::lock_guard<std::mutex> guard(config_mutex_);
    return topology_;
}

void worker::Shared::publish_topology(std::shared_ptr<const cluster::Topology> topology) {
    {
        std::lock_guard<std::mutex> guard(config_mutex_);
        topology_ = std::move(topology);
    }
    topology_generation.fetch_add(1, std::memory_order_acq_rel);
}

std::shared_ptr<const config::Config> worker::Shared::config_snapshot() const {
    std::lock_guard<std::mutex> guard(config_mutex_);
    return config_;
}

void worker::Shared::publish(std::shared_ptr<const config::Config> config) {
    {
        std::lock_guard<std::mutex> guard(config_mutex_);
        config_ = std::move(config);
    }
    config_generation.fetch_add(1, std::memory_order_acq_rel);
}

namespace {

// Taken with sigtimedwait by the control thread; blocked everywhere (workers inherit it).
void block_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal : {SIGHUP, SIGTERM, SIGINT, SIGPIPE}) sigaddset(&signals, signal);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

void log_listeners(const config::Config& config) {
    for (const config::Listen& listen : config.listen)
        log_info("listening on %s", listen.endpoint.to_string().c_str());
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen)
                log_info("service %s.%s listening on %s (%s)", cluster.name.c_str(),
                         service.name.c_str(), endpoint.to_string().c_str(),
                         config::to_string(service.dest));
}

// Worker `index` on its own thread: it builds its ring, says so through the entry's state
// (1, or -1 with the error), waits until every ring exists, then runs until shutdown.
std::unique_ptr<WorkerThread> start_worker(worker::Shared& shared,
                                           std::shared_ptr<const config::Config> config,
                                           uint32_t index, std::vector<base::UniqueFd> listeners,
                                           std::vector<worker::ListenerRole> roles) {
    auto entry = std::make_unique<WorkerThread>();
    WorkerThread* slot = entry.get();
    entry->thread = std::thread([&shared, config, index, slot, fds = std::move(listeners),
                                 roles = std::move(roles)]() mutable {
        std::unique_ptr<worker::Worker> worker;
        try {
            worker = std::make_unique<worker::Worker>(index, shared, config, std::move(fds),
                                                      std::move(roles));
        } catch (const std::exception& error) {
            slot->error = error.what();
            slot->state.store(-1);
            return;
        }
        shared.ring_fds[index] = worker->ring.fd();
        slot->state.store(1, std::memory_order_release);
        while (!shared.started.load(std::memory_order_acquire)) std::this_thread::yield();
        worker->run();
        worker.reset();
        shared.finished_workers.fetch_add(1, std::memory_order_acq_rel);
    });
    return entry;
}

}  // namespace

int run_control(std::shared_ptr<const config::Config> config) {
    base::log_set_level(level_of(config->log_level));
    block_signals();
    uint32_t worker_count = uint32_t(config->workers > 0 ? config->workers : 1);
    if (worker_count > limits::workers_max) worker_count = limits::workers_max;
    worker::Shared shared(pool_table_capacity);
    shared.publish(config);
    shared.ring_fds.assign(worker_count, -1);
    shared.stats = std::make_unique<worker::WorkerStats[]>(worker_count);
    shared.client_lists = std::make_unique<worker::ClientListSlot[]>(worker_count * worker_count);

    std::vector<std::unique_ptr<WorkerThread>> threads;
    for (uint32_t i = 0; i < worker_count; ++i) {
        std::vector<base::UniqueFd> listeners;
        std::vector<worker::ListenerRole> roles;
        if (!open_listeners(*config, i, listeners, roles)) return 1;
        threads.push_back(start_worker(shared, config, i, std::move(listeners), std::move(roles)));
    }
    bool failed = false;
    for (auto& entry : threads) {
        while (entry->state.load(std::memory_order_acquire) == 0) std::this_thread::yield();
        if (entry->state.load() < 0) {
            log_error("worker failed to start: %s", entry->error.c_str());
            failed = true;
        }
    }
    if (failed) {
        shared.immediate.store(true);
        shared.shutdown.store(true);
    }
    // Every ring exists: the workers may now message each other.
    shared.started.store(true, std::memory_order_release);
    int running = 0;
    for (auto& entry : threads) running += entry->state.load() == 1 ? 1 : 0;
    if (!failed) {
        log_listeners(*config);
        sd_notify(0, "READY=1\nSTATUS=serving");
    }

    cluster::Monitor monitor(
        [&shared](std::shared_ptr<const cluster::Topology> topology) {
            shared.publish_topology(std::move(topology));
        },
        &shared.suspects);
    if (!failed) monitor.start(config);
    wait_for_signals(shared, monitor, config->path, failed, running);
    monitor.stop();
    for (auto& entry : threads)
        if (entry->thread.joinable()) entry->thread.join();
    log_info("pgplex stopped");
    return failed ? 1 : 0;
}

}  // namespace pgplex
