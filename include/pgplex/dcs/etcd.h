// The etcd client: the decision store ([dcs]; dcs/store.h) over etcd's v3 HTTP/JSON gateway,
// with libcurl, on a thread of its own, so that no worker's ring and not even the monitor
// thread ever waits on HTTP. The monitor thread (the decider, through gossip/consensus.h)
// reads what the client last learned and queues compare-and-swaps; both sides meet under one
// mutex, held only to copy a few strings, the way the monitors hand their results over.
//
// The client's loop: grant a lease of [dcs] ttl seconds and put this appliance's key under it,
// keep the lease alive every ttl/3, read every decision (a linearizable range read) every
// ttl/4 and at once after a compare-and-swap, and carry out the compare-and-swaps queued.
// Each request times out after ttl/4 (at most 2 s); a failed one moves to the next endpoint.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/config/config.h"
#include "pgplex/dcs/store.h"

namespace pgplex::dcs {

class EtcdStore final : public DecisionStore {
  public:
    // Starts the client thread. `self`: this appliance's gossip address, which names it in
    // the store; `clusters`: the clusters whose decisions it reads.
    EtcdStore(const config::Dcs& settings, std::string self, std::vector<std::string> clusters);
    ~EtcdStore() override;  // stops and joins the thread
    EtcdStore(const EtcdStore&) = delete;
    EtcdStore& operator=(const EtcdStore&) = delete;

    std::optional<Reading> reading(std::string_view cluster) const override;
    int64_t lease_until_ms() const override;
    int64_t confirm_ms() const override { return settings_.ttl_s * 1000; }
    void propose(std::string_view cluster, int64_t expected_revision,
                 const StoredDecision& next) override;

    // Whether the last request was answered, and what went wrong if not (logs, SHOW).
    bool reachable() const;

  private:
    struct Proposal {
        std::string cluster;
        int64_t expected_revision;
        StoredDecision next;
    };
    void run();
    bool call(const char* path, const std::string& body, std::string& answer, std::string& reason);
    bool post(const std::string& url, const std::string& body, std::string& answer, long& status,
              std::string& reason);
    bool authenticate(std::string& reason);
    bool keep_lease(int64_t now_ms, std::string& reason);
    bool read_all(int64_t now_ms, std::string& reason);
    bool swap(const Proposal& proposal, std::string& reason);
    void report(bool ok, const std::string& reason);

    const config::Dcs settings_;
    const std::string self_;
    const std::vector<std::string> clusters_;
    int64_t request_timeout_ms_;

    // Shared with the monitor thread, under mutex_.
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    std::atomic<bool> stopping_ = false;  // read by curl's progress callback: abort a request
    std::map<std::string, Reading> readings_;
    int64_t lease_until_ms_ = 0;
    std::vector<Proposal> proposals_;
    bool reachable_ = false;

    // The client thread's own.
    void* curl_ = nullptr;  // CURL*
    size_t endpoint_ = 0;   // the endpoint tried first
    std::string token_;     // from /v3/auth/authenticate, with username
    int64_t lease_ = 0;     // 0: none granted
    int64_t next_keepalive_ms_ = 0;
    int64_t next_read_ms_ = 0;
    bool logged_unreachable_ = false;
    std::thread thread_;
};

}  // namespace pgplex::dcs
