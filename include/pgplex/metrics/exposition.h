// /metrics: what the process knows now, in Prometheus' text exposition format 0.0.4
// (prometheus.io/docs/instrumenting/exposition_formats). Read from what the workers and the
// monitor thread already publish (worker::WorkerStats, the pool table, the topology
// snapshot): a scrape adds nothing to the data path and takes no lock a worker takes.
//
// Names are pgplex_*; where prometheus-community/pgbouncer_exporter has a metric that means
// the same (its pgbouncer_* names), it is exported under that name too, so dashboards made
// for PgBouncer keep working.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgplex::base {
struct HistogramValues;
}
namespace pgplex::worker {
struct WorkerStats;
}
namespace pgplex::pool {
class PoolTable;
}
namespace pgplex::config {
struct Config;
struct Cluster;
struct Service;
}  // namespace pgplex::config
namespace pgplex::cluster {
struct Topology;
struct ServiceRule;
}  // namespace pgplex::cluster

namespace pgplex::metrics {

using Labels = std::vector<std::pair<std::string_view, std::string>>;

// Writes families: a HELP and TYPE line once per family, then its samples. Values are
// written as integers when whole, so a counter never shows an exponent.
class Writer {
  public:
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, const Labels& labels, double value);
    void sample(std::string_view name, double value) { sample(name, {}, value); }
    // One series of a histogram family: `name_bucket` per bound with its `le` label after
    // `labels`, counted cumulatively up to `le="+Inf"`, then `name_sum` in seconds and
    // `name_count`, which equals the +Inf bucket.
    void histogram(std::string_view name, const Labels& labels,
                   const base::HistogramValues& values);
    const std::string& text() const { return out_; }

  private:
    std::string out_;
};

// A label value as the format wants it: backslash, double quote and newline escaped.
std::string escape_label_value(std::string_view value);

// What one request looks at: taken from worker::Shared by the server thread (server.cc),
// built by hand in the unit tests. Pointers may be null (nothing to report).
struct Snapshot {
    const worker::WorkerStats* stats = nullptr;  // `workers` entries
    uint32_t workers = 0;
    const pool::PoolTable* pools = nullptr;
    std::shared_ptr<const config::Config> config;
    std::shared_ptr<const cluster::Topology> topology;
    bool started = false;        // every worker's ring exists and listens
    bool shutting_down = false;  // SIGTERM or SIGINT taken
    int clients = 0;             // client connections, all workers
};

// The whole /metrics body.
std::string render(const Snapshot& snapshot);

}  // namespace pgplex::metrics
