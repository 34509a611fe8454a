// The admin HTTP port ([pgplex] metrics_listen): /metrics, /health, /primary and /replica,
// served by one thread of its own, off the data path.
//
// Blocking-style code over non-blocking sockets and poll(2): a handful of scrapers and
// health checkers connect, so a fixed table of connections_max slots is plenty; a slot that
// does not finish its request within request_timeout_ms is answered 408 (or just closed)
// and freed, so slow or silent clients cannot starve the checks of a load balancer.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "pgplex/base/unique_fd.h"
#include "pgplex/config/config.h"
#include "pgplex/metrics/http.h"

namespace pgplex::worker {
struct Shared;
}

namespace pgplex::metrics {

// Scrapers and checkers at once; more wait in the listen backlog.
inline constexpr int connections_max = 16;
inline constexpr int listen_backlog = 64;
// A request head must arrive within this, and a kept-alive connection may idle this long.
inline constexpr int64_t request_timeout_ms = 5'000;
// Out of file descriptors: how long the listener is left alone before accept is tried again.
inline constexpr int64_t accept_pause_ms = 250;
// After a last answer, how long what the client still sends is read and dropped.
inline constexpr int64_t linger_ms = 1'000;

class Server {
  public:
    Server(const worker::Shared& shared, uint32_t workers) : shared_(shared), workers_(workers) {}
    ~Server() { stop(); }
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds `endpoint` and starts the thread. False (reason set) when it cannot listen.
    bool start(const config::Endpoint& endpoint, std::string& reason);
    // Wakes the thread, joins it, closes every socket. Safe when never started.
    void stop();

  private:
    void run();

    const worker::Shared& shared_;
    uint32_t workers_;
    base::UniqueFd listener_;
    base::UniqueFd wake_;  // an eventfd: stop() writes it
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace pgplex::metrics
