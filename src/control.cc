// See control.h. Signals are blocked in every thread and taken here with sigtimedwait, so
// no handler ever runs on a worker. A reload builds a whole new snapshot off the data path
// and publishes it; workers pick it up on their next tick. A file that does not load is
// refused with its file:line: reason, and the old snapshot keeps serving.
#include "pgplex/control.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/cluster/monitor.h"
#include "pgplex/gossip/consensus.h"
#include "pgplex/io/listener.h"
#include "pgplex/metrics/server.h"
#include "pgplex/pool/budget.h"
#include "pgplex/systemd.h"
#include "pgplex/takeover.h"
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

bool open_one(const config::Config& config, const config::Endpoint& endpoint,
              worker::ListenerRole role, std::vector<base::UniqueFd>& out,
              std::vector<worker::ListenerRole>& roles) {
    std::string reason;
    base::UniqueFd fd = io::listen_on(endpoint, mode_t(config.unix_socket_mode), reason);
    if (!fd.valid()) {
        log_error("cannot listen: %s", reason.c_str());
        return false;
    }
    out.push_back(std::move(fd));
    role.local = endpoint.is_unix();
    roles.push_back(std::move(role));
    return true;
}

// The Unix sockets pgplex made go with it, as PgBouncer's do: a client then finds no socket
// rather than one nobody accepts on. (Socket activation's belong to systemd.)
void remove_unix_sockets(const config::Config& config) {
    auto remove = [](const config::Endpoint& endpoint) {
        if (endpoint.is_unix()) unlink(endpoint.to_string().c_str());
    };
    for (const config::Listen& listen : config.listen) remove(listen.endpoint);
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen) remove(endpoint);
}

// Under socket activation every worker gets its own descriptor of each TCP socket systemd
// passed (they share one accept queue, as SO_REUSEPORT cannot be set on them afterwards); a
// Unix socket goes to worker 0 only.
bool share_activated(const std::vector<systemd::ActivatedSocket>& activated, uint32_t worker,
                     std::vector<base::UniqueFd>& out, std::vector<worker::ListenerRole>& roles) {
    for (const systemd::ActivatedSocket& socket : activated) {
        if (socket.bound.is_unix() && worker != 0) continue;
        base::UniqueFd fd(fcntl(socket.fd.get(), F_DUPFD_CLOEXEC, 3));
        if (!fd.valid()) {
            log_error("socket activation: dup: %s", strerror(errno));
            return false;
        }
        out.push_back(std::move(fd));
        roles.push_back(socket.role);
        roles.back().local = socket.bound.is_unix();
    }
    return true;
}

// Opens every listen socket a worker needs: the main listener, then every service's. A Unix
// socket goes to worker 0 only.
bool open_listeners(const config::Config& config, uint32_t worker, std::vector<base::UniqueFd>& out,
                    std::vector<worker::ListenerRole>& roles) {
    for (const config::Listen& listen : config.listen) {
        if (listen.endpoint.is_unix() && worker != 0) continue;
        if (!open_one(config, listen.endpoint, {}, out, roles)) return false;
    }
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen) {
                if (endpoint.is_unix() && worker != 0) continue;
                if (!open_one(config, endpoint, {cluster.name, service.name}, out, roles))
                    return false;
            }
    return true;
}

// Taking over: a configured listener no socket came for (the running pgplex did not have it)
// is opened anew.
bool open_uncovered(const config::Config& config, uint32_t worker,
                    const std::vector<systemd::ActivatedSocket>& taken,
                    std::vector<base::UniqueFd>& out, std::vector<worker::ListenerRole>& roles) {
    auto covered = [&taken](const config::Endpoint& endpoint) {
        for (const systemd::ActivatedSocket& socket : taken)
            if (socket.bound.same_as(endpoint)) return true;
        return false;
    };
    for (const config::Listen& listen : config.listen) {
        if ((listen.endpoint.is_unix() && worker != 0) || covered(listen.endpoint)) continue;
        if (!open_one(config, listen.endpoint, {}, out, roles)) return false;
    }
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services)
            for (const config::Endpoint& endpoint : service.listen) {
                if ((endpoint.is_unix() && worker != 0) || covered(endpoint)) continue;
                if (!open_one(config, endpoint, {cluster.name, service.name}, out, roles))
                    return false;
            }
    return true;
}

// What a takeover hands on: one descriptor of each listening socket (workers share some),
// with its role.
std::vector<systemd::ActivatedSocket> listener_copies(
    const std::vector<std::vector<base::UniqueFd>>& listeners,
    const std::vector<std::vector<worker::ListenerRole>>& roles) {
    std::vector<systemd::ActivatedSocket> out;
    std::vector<std::pair<dev_t, ino_t>> seen;
    for (size_t w = 0; w < listeners.size(); ++w)
        for (size_t i = 0; i < listeners[w].size(); ++i) {
            struct stat status {};
            if (fstat(listeners[w][i].get(), &status) != 0) continue;
            std::pair<dev_t, ino_t> id{status.st_dev, status.st_ino};
            if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
            seen.push_back(id);
            systemd::ActivatedSocket copy;
            copy.fd.reset(fcntl(listeners[w][i].get(), F_DUPFD_CLOEXEC, 3));
            std::string reason;
            if (!copy.fd.valid() || !io::adopt(copy.fd.get(), copy.bound, reason)) continue;
            copy.role = roles[w][i];
            out.push_back(std::move(copy));
        }
    return out;
}

// Where the listening sockets came from.
enum class Sockets : uint8_t { Opened, Activated, TakenOver, Failed };

// Every worker's listening sockets: taken over from a running pgplex (taker), passed by
// systemd, or opened here. Failed is logged.
Sockets open_sockets(const config::Config& config, takeover::Taker* taker,
                     const std::string& takeover_path,
                     std::vector<std::vector<base::UniqueFd>>& listeners,
                     std::vector<std::vector<worker::ListenerRole>>& roles) {
    std::vector<systemd::ActivatedSocket> activated;
    if (taker != nullptr && !taker->take_listeners(takeover_path, config, activated))
        return Sockets::Failed;
    bool socket_activated = taker == nullptr && systemd::take_activated(config, activated);
    if (socket_activated && activated.empty()) {
        log_error("socket activation: no socket systemd passed serves a listener");
        return Sockets::Failed;
    }
    for (uint32_t i = 0; i < listeners.size(); ++i) {
        bool opened = taker != nullptr
                          ? share_activated(activated, i, listeners[i], roles[i]) &&
                                open_uncovered(config, i, activated, listeners[i], roles[i])
                      : socket_activated ? share_activated(activated, i, listeners[i], roles[i])
                                         : open_listeners(config, i, listeners[i], roles[i]);
        if (!opened) return Sockets::Failed;
    }
    return taker != nullptr   ? Sockets::TakenOver
           : socket_activated ? Sockets::Activated
                              : Sockets::Opened;
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
    systemd::notify_reloading();
    config::LoadResult result = config::load(current->path);
    if (!result.config) {
        log_error("reload refused, keeping the running configuration: %s", result.error.c_str());
        systemd::notify_reloaded(true);
        return;
    }
    // [gossip] names this appliance to the others and in its clients' cancel keys: it changes
    // only at a restart, so a file that changes it is refused whole.
    if (!result.config->gossip.same_members(current->gossip) ||
        result.config->gossip.key != current->gossip.key) {
        log_error(
            "reload refused, keeping the running configuration: %s: [gossip] listen, "
            "peers and key_file change only at a restart",
            current->path.c_str());
        systemd::notify_reloaded(true);
        return;
    }
    if (result.config->dcs != current->dcs) {
        log_error(
            "reload refused, keeping the running configuration: %s: [dcs] changes only at a "
            "restart",
            current->path.c_str());
        systemd::notify_reloaded(true);
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
    systemd::notify_reloaded(false);
}

// How a signal stops pgplex, as PgBouncer's signals do: SIGTERM waits for the clients to
// leave, SIGINT for their transactions to end, SIGQUIT waits for nothing; a second SIGTERM or
// SIGINT during a shutdown makes it immediate. shutdown_timeout bounds every wait.
enum class Stop {
    WaitForClients,  // SIGTERM: no new clients; those connected go on until they leave
    WaitForServers,  // SIGINT: each client is let go once its transaction ends
    Immediate,       // SIGQUIT: every connection closed now
};

const char* describe(Stop stop) {
    switch (stop) {
        case Stop::WaitForClients:
            return "waiting for clients to disconnect";
        case Stop::WaitForServers:
            return "letting transactions finish";
        case Stop::Immediate:
            return "now";
    }
    return "";
}

void begin_stop(worker::Shared& shared, int sig, bool stopping) {
    Stop stop = sig == SIGTERM  ? Stop::WaitForClients
                : sig == SIGINT ? Stop::WaitForServers
                                : Stop::Immediate;
    if (stopping) stop = Stop::Immediate;
    if (!stopping) {
        std::shared_ptr<const config::Config> current = shared.config_snapshot();
        int64_t timeout = current->shutdown_timeout_ms > 0 ? current->shutdown_timeout_ms : 0;
        shared.shutdown_deadline_ms.store(base::monotonic_ms() + timeout);
        systemd::notify_stopping();
    }
    log_info("%s: shutting down %s", strsignal(sig), describe(stop));
    if (stop == Stop::WaitForClients)
        shared.wait_for_clients.store(true, std::memory_order_release);
    shared.shutdown.store(true, std::memory_order_release);
    if (stop == Stop::Immediate) shared.immediate.store(true, std::memory_order_release);
}

// Turns signals into reloads and shutdowns until every worker has finished; keeps systemd's
// watchdog and STATUS= fed meanwhile.
void wait_for_signals(worker::Shared& shared, cluster::Monitor& monitor, const std::string& path,
                      bool failed, int running, uint32_t workers) {
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal : {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2})
        sigaddset(&signals, signal);
    systemd::Heartbeat heartbeat(workers);
    bool stopping = failed;
    while (true) {
        timespec wait{0, 200 * 1000 * 1000};
        siginfo_t info{};
        int sig = sigtimedwait(&signals, &info, &wait);
        heartbeat.turn(shared, stopping);
        // The management console's RELOAD and SHUTDOWN (admin/console.h) act as their signals.
        if (sig < 0) sig = shared.console.signal.exchange(0, std::memory_order_acq_rel);
        // SIGUSR1 / SIGUSR2: PAUSE / RESUME of every database, as PgBouncer.
        if (sig == SIGUSR1 || sig == SIGUSR2)
            admin::pause_signal(shared.console, shared.pools, sig == SIGUSR1);
        if (sig == SIGHUP && !stopping) {
            log_info("SIGHUP: reloading %s", path.c_str());
            reload(shared, monitor);
        } else if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
            begin_stop(shared, sig, stopping);
            stopping = true;
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

// The limits a snapshot sets apply to the budgets at once, before any worker sees it: a
// reload that lowers max_db_connections holds from the next server opened.
void worker::Shared::publish(std::shared_ptr<const config::Config> config) {
    pool::apply_config_limits(pools.budgets, *config);
    pool::apply_node_budgets(pools.budgets, *config);
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
    for (int signal : {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2})
        sigaddset(&signals, signal);
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
        // "pgplex-w3" in top -H, ps -L and /proc/PID/task/TID/comm.
        char name[16];
        snprintf(name, sizeof name, "pgplex-w%u", index);
        pthread_setname_np(pthread_self(), name);
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

// Waits until every worker has started or failed to; false: one failed (logged).
bool all_started(const std::vector<std::unique_ptr<WorkerThread>>& threads) {
    bool started = true;
    for (const auto& entry : threads) {
        while (entry->state.load(std::memory_order_acquire) == 0) std::this_thread::yield();
        if (entry->state.load() < 0) {
            log_error("worker failed to start: %s", entry->error.c_str());
            started = false;
        }
    }
    return started;
}

}  // namespace

int run_control(std::shared_ptr<const config::Config> config, bool take_over) {
    base::log_set_level(level_of(config->log_level));
    block_signals();
    uint32_t worker_count = uint32_t(config->workers > 0 ? config->workers : 1);
    if (worker_count > limits::workers_max) worker_count = limits::workers_max;
    worker::Shared shared(pool_table_capacity);
    shared.publish(config);
    shared.ring_fds.assign(worker_count, -1);
    shared.stats = std::make_unique<worker::WorkerStats[]>(worker_count);
    shared.client_lists = std::make_unique<worker::ClientListSlot[]>(worker_count * worker_count);

    // Every socket is opened (or taken from systemd) before any worker starts, so a failure
    // leaves no thread behind.
    takeover::Taker taker;
    std::string takeover_path = takeover::socket_path(*config);
    std::vector<std::vector<base::UniqueFd>> listeners(worker_count);
    std::vector<std::vector<worker::ListenerRole>> roles(worker_count);
    Sockets sockets =
        open_sockets(*config, take_over ? &taker : nullptr, takeover_path, listeners, roles);
    if (sockets == Sockets::Failed) return 1;
    bool socket_activated = sockets == Sockets::Activated;
    takeover::Giver giver;
    std::vector<systemd::ActivatedSocket> copies = listener_copies(listeners, roles);
    shared.handed_in = std::make_unique<worker::HandoverQueue[]>(worker_count);
    if (take_over) shared.moved_cancels = std::make_unique<pool::MovedCancels>();
    std::vector<std::unique_ptr<WorkerThread>> threads;
    for (uint32_t i = 0; i < worker_count; ++i)
        threads.push_back(
            start_worker(shared, config, i, std::move(listeners[i]), std::move(roles[i])));
    bool failed = !all_started(threads);
    if (failed) {
        shared.immediate.store(true);
        shared.shutdown.store(true);
    }
    // Every ring exists: the workers may now message each other.
    shared.started.store(true, std::memory_order_release);
    int running = 0;
    for (auto& entry : threads) running += entry->state.load() == 1 ? 1 : 0;
    if (!failed) {
        if (!socket_activated) log_listeners(*config);
        if (take_over) taker.receive_clients(shared, worker_count);
        giver.start(takeover_path, shared, std::move(copies));
        systemd::notify_ready();
    }

    gossip::Consensus consensus;  // the monitor thread's, with [gossip]
    consensus.share_budgets(&shared.pools);
    cluster::Monitor monitor(
        [&shared](std::shared_ptr<const cluster::Topology> topology) {
            shared.publish_topology(std::move(topology));
        },
        cluster::Monitor::Links{&shared.suspects, &shared.requests, &shared.cancels,
                                config->gossip.enabled ? &consensus : nullptr});
    if (!failed) monitor.start(config);
    metrics::Server metrics_server(shared, worker_count);  // [pgplex] metrics_listen
    if (std::string why; !failed && !config->metrics_listen.empty() &&
                         !metrics_server.start(config->metrics_endpoint, why))
        log_error("metrics_listen: cannot listen on %s", why.c_str());
    wait_for_signals(shared, monitor, config->path, failed, running, worker_count);
    metrics_server.stop();
    monitor.stop();
    for (auto& entry : threads)
        if (entry->thread.joinable()) entry->thread.join();
    giver.finish();
    taker.stop();
    // Taken over: the sockets are the new pgplex's now.
    if (!socket_activated && !giver.taken()) remove_unix_sockets(*config);
    log_info("pgplex stopped");
    return failed ? 1 : 0;
}

}  // namespace pgplex
