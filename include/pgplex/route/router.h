// The router: where a client's session, and each of its transactions, goes.
//
// A client of an alias that names a cluster (or of "db@cluster") on the main listener is
// routed per transaction, by the precedence of route.h; a client of a service port goes to
// whichever node carries that service now. The decision reads the worker's Topology
// snapshot only: no lock, no syscall. The client code (client/client_route.cc) asks; this
// file decides and hands back the pool of the chosen node.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgplex/base/clock.h"
#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/route/route.h"

namespace pgplex::route {

// Transactions in flight per node, all workers: lock-free, keyed by an xxHash of
// "cluster/node"; entries are never removed (a table sized at start, as the pool table).
class NodeLoads {
  public:
    explicit NodeLoads(uint32_t capacity);
    // The counter of a node; null only when the table is full.
    std::atomic<int>* find_or_create(std::string_view cluster, std::string_view node);

  private:
    struct Entry {
        std::atomic<uint64_t> key{0};
        std::atomic<int> in_flight{0};
    };
    uint32_t capacity_;
    std::unique_ptr<Entry[]> entries_;
};

// What a transaction's first message asks for, read before a node is chosen.
struct Request {
    Target target = Target::None;
    std::string node;         // target == Node
    int64_t max_lag_ms = -1;  // from a hint
    bool may_write = true;    // not known to be a read: counts for read your writes
    // False for a login's placement in transaction pooling: its server is lent back at
    // once, so it does not move round robin on (else every client's first transaction
    // would land on the same node).
    bool takes_turn = true;
};

// One client's routing state (Session::routing).
struct Routing {
    std::string cluster;
    std::string service;  // a service port's service; empty: routed per transaction
    config::Dest dest = config::Dest::Pool;
    int maxqueue = 0;  // the service's: clients a node's pool may have waiting; 0 no limit
    Intent intent = Intent::None;
    Target default_route = Target::Primary;
    bool read_your_writes = true;
    // Read your writes: the primary's WAL insert position after this client's last write;
    // its reads go only to nodes that replayed it.
    uint64_t ryw_lsn = 0;
    // The transaction under way ran on the primary and may have written: its LSN is read
    // before the server is lent again.
    bool needs_lsn = false;
    pool::Target base;  // the pools' target, endpoint aside
    // The client proved the password of base's SCRAM secret at login: the keys each node's
    // pool logs in with (SCRAM pass-through), published as the pools are made.
    bool scram_keys = false;
    tls::scram::Key scram_client_key{};
    tls::scram::Key scram_server_key{};
    int pool_size = 0;
    int reserve_pool_size = 0;
    int min_pool_size = 0;
    std::string application_name;                            // for rules' conditions
    std::vector<std::pair<std::string, pool::Pool*>> pools;  // by node name
    std::atomic<int>* in_flight = nullptr;                   // the node of the lease under way
    std::string node;                                        // its name
    Request pending;  // what a client waiting for a node asked for
    // Waiting for a node: only the primary can take `pending`, and there is none or a
    // switchover holds writes (failover_wait_timeout applies, not query_wait_timeout).
    bool awaits_primary = false;
};

// A request pgplex answers itself instead of routing.
enum class Answer : uint8_t { None, IntentSet, BadIntent, BadHint };

struct Reading {
    Request request;
    Answer answer = Answer::None;
    std::string detail;  // BadIntent / BadHint: what was wrong
    bool reset = false;  // IntentSet by RESET (its command tag)
};

// Per worker: compiled rules, the classifier, compiled service rules, balance state.
class Router {
  public:
    explicit Router(const config::Config& config);
    ~Router();

    // Reads the first message of a transaction (type and as much of its body as is at hand)
    // and decides what it asks for. `statement_text`: the text a Bind's named statement was
    // prepared with, when that is what begins the transaction.
    Reading read(const Routing& routing, const std::string& user, const std::string& database,
                 uint8_t type, std::string_view text);
    // A request for a client's session (its login): the service, or its intent, or the
    // default route.
    Request session_request(const Routing& routing) const;
    // The node that should take the request now; -1 when none can.
    int choose(const Routing& routing, const Request& request,
               const cluster::ClusterStatus& cluster, const config::Config& config,
               NodeLoads& loads, base::Milliseconds now);
    // Whether only the cluster's primary can take the request (a service, or a route, whose
    // selector and backup select primaries only): while the cluster has no primary, or a
    // switchover holds writes, it waits for one (failover_wait_timeout).
    bool needs_primary(const Routing& routing, const Request& request) const;
    // Rewrites from [[rewrites]]; false when none applies.
    bool rewrite(std::string_view text, const Who& who, std::string& out);
    bool has_rewrites() const;
    Classifier& classifier() { return classifier_; }

  private:
    int balance(const Routing& routing, const cluster::Carriers& carriers,
                const cluster::ClusterStatus& cluster, const config::Service* service,
                NodeLoads& loads, base::Milliseconds now, bool takes_turn);

    struct Compiled;
    std::unique_ptr<Compiled> compiled_;
    Classifier classifier_;
    uint32_t turn_ = 0;
    uint64_t random_ = 0x9e3779b97f4a7c15ull;
};

}  // namespace pgplex::route
