// See router.h. Every routed transaction passes here once: read its first message (hint,
// intent, rules, class), then choose among the nodes that carry the request now.
#include "pgplex/route/router.h"

#include <xxhash.h>

#include <strings.h>

#include <cmath>

#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"
#include "pgplex/proto/message.h"

namespace pgplex::route {

namespace {

constexpr uint32_t node_loads_probe_max = 64;

// The routed targets select as the well-known services of the same name (config.h).
constexpr Target routed_targets[] = {Target::Primary, Target::Replica, Target::Standby,
                                     Target::Offline, Target::Delayed};

cluster::ServiceRule compile_rule(std::string_view selector, std::string_view backup) {
    cluster::ServiceRule rule;
    std::string reason;
    // Checked when the config was loaded; a failure here would be a bug, and selects nothing.
    if (!cluster::Selector::compile(selector, rule.selector, reason) ||
        !cluster::Selector::compile(backup, rule.backup, reason))
        log_error("router: selector \"%.*s\": %s", int(selector.size()), selector.data(),
                  reason.c_str());
    return rule;
}

// Whether every node the rule can select, members or backups, is a primary: its requests
// have nowhere to go while the cluster has no primary (or a switchover holds writes), and
// wait for one (failover_wait_timeout). Decided once per rule, over every set of facts a
// node can have.
bool selects_only_primary(const cluster::ServiceRule& rule) {
    bool primary = false;
    for (uint32_t bits = 0; bits < 32; ++bits) {
        config::SelectorFacts facts;
        facts.primary = (bits & 1) != 0;
        facts.replica = !facts.primary;
        facts.offline = (bits & 2) != 0;
        facts.offline_query = (bits & 4) != 0;
        facts.sync = !facts.primary && (bits & 8) != 0;
        facts.delayed = !facts.primary && (bits & 16) != 0;
        bool selected = rule.selector.matches(facts) || rule.backup.matches(facts);
        if (selected && facts.replica) return false;
        primary = primary || selected;
    }
    return primary;
}

bool is_read_target(Target target) {
    return target != Target::Primary && target != Target::Node && target != Target::None;
}

}  // namespace

// --- NodeLoads --------------------------------------------------------------------------------

NodeLoads::NodeLoads(uint32_t capacity)
    : capacity_(capacity), entries_(std::make_unique<Entry[]>(capacity)) {}

std::atomic<int>* NodeLoads::find_or_create(std::string_view cluster, std::string_view node) {
    uint64_t key = XXH3_64bits_withSeed(node.data(), node.size(),
                                        XXH3_64bits(cluster.data(), cluster.size())) |
                   1;  // never 0, the empty mark
    for (uint32_t probe = 0; probe < node_loads_probe_max; ++probe) {
        Entry& entry = entries_[(key + probe) % capacity_];
        uint64_t seen = entry.key.load(std::memory_order_acquire);
        if (seen == 0 && entry.key.compare_exchange_strong(seen, key, std::memory_order_acq_rel))
            return &entry.in_flight;
        if (seen == key) return &entry.in_flight;
    }
    return nullptr;
}

// --- Router -----------------------------------------------------------------------------------

struct ServiceEntry {
    std::string cluster;
    std::string name;
    cluster::ServiceRule rule;
    const config::Service* service;  // lives as long as the config the Router was made from
    bool only_primary = false;       // selects_only_primary(rule)
};

struct Router::Compiled {
    std::unique_ptr<Rules> rules;
    cluster::ServiceRule targets[std::size(routed_targets)];
    bool target_only_primary[std::size(routed_targets)] = {};
    std::vector<ServiceEntry> services;

    const cluster::ServiceRule* target_rule(Target target) const {
        for (size_t i = 0; i < std::size(routed_targets); ++i)
            if (routed_targets[i] == target) return &targets[i];
        return nullptr;
    }
    const ServiceEntry* service(std::string_view cluster, std::string_view name) const {
        for (const ServiceEntry& entry : services)
            if (entry.cluster == cluster && entry.name == name) return &entry;
        return nullptr;
    }
};

Router::Router(const config::Config& config)
    : compiled_(std::make_unique<Compiled>()), classifier_(config.read_only_functions) {
    std::string error;
    if (!config.rules.empty() || !config.rewrites.empty()) {
        compiled_->rules = Rules::compile(config, error);
        if (!compiled_->rules) log_error("router: %s; routing without rules", error.c_str());
    }
    for (size_t i = 0; i < std::size(routed_targets); ++i) {
        const config::KnownService* known = config::known_service(to_string(routed_targets[i]));
        PGPLEX_ASSERT(known != nullptr);
        compiled_->targets[i] = compile_rule(known->selector, known->backup);
        compiled_->target_only_primary[i] = selects_only_primary(compiled_->targets[i]);
    }
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Service& service : cluster.services) {
            cluster::ServiceRule rule = compile_rule(service.selector, service.backup);
            bool only_primary = selects_only_primary(rule);
            compiled_->services.push_back(
                {cluster.name, service.name, std::move(rule), &service, only_primary});
        }
}

bool Router::needs_primary(const Routing& routing, const Request& request) const {
    if (!routing.service.empty()) {
        const ServiceEntry* entry = compiled_->service(routing.cluster, routing.service);
        return entry != nullptr && entry->only_primary;
    }
    for (size_t i = 0; i < std::size(routed_targets); ++i)
        if (routed_targets[i] == request.target) return compiled_->target_only_primary[i];
    return false;
}

Router::~Router() = default;

bool Router::has_rewrites() const {
    return compiled_->rules && compiled_->rules->has_rewrites();
}

bool Router::rewrite(std::string_view text, const Who& who, std::string& out) {
    return has_rewrites() && compiled_->rules->rewrite(text, who, out);
}

Request Router::session_request(const Routing& routing) const {
    Request request;
    if (!routing.service.empty()) return request;  // the service decides
    if (routing.intent == Intent::ReadOnly) {
        request.target = Target::Replica;
        request.may_write = false;
    } else {
        request.target =
            routing.intent == Intent::ReadWrite ? Target::Primary : routing.default_route;
    }
    return request;
}

Reading Router::read(const Routing& routing, const std::string& user, const std::string& database,
                     uint8_t type, std::string_view text) {
    Reading out;
    if (!routing.service.empty()) return out;
    Hint hint;
    HintStatus status = parse_hint(text, hint, out.detail);
    if (status == HintStatus::Invalid) {
        // Answered with 22023 when it is a whole Query; else the hint is ignored.
        out.answer = Answer::BadHint;
        out.request = session_request(routing);
        return out;
    }
    std::string value;
    if (type == uint8_t(proto::FrontendMessage::Query) && is_intent_set(text, value)) {
        Intent intent = Intent::None;
        out.answer = parse_intent(value, intent) ? Answer::IntentSet : Answer::BadIntent;
        out.request = session_request(routing);  // when it cannot be answered here
        size_t start = text.find_first_not_of(" \t\r\n");
        out.reset = start != std::string_view::npos && text.size() - start >= 5 &&
                    strncasecmp(text.data() + start, "reset", 5) == 0;
        out.detail = value;
        return out;
    }
    Request& request = out.request;
    request.max_lag_ms = hint.max_lag_ms;
    auto decide = [&request](Target target, bool may_write) {
        request.target = target;
        request.may_write = may_write;
        return true;
    };
    if (hint.route != Target::None && decide(hint.route, !is_read_target(hint.route))) {
        request.node = hint.node;
        return out;
    }
    if (routing.intent != Intent::None) {
        bool read = routing.intent == Intent::ReadOnly;
        decide(read ? Target::Replica : Target::Primary, !read);
        return out;
    }
    StatementClass kind = text.empty() ? StatementClass::Unparsable : classifier_.classify(text);
    if (kind == StatementClass::ReadOnlyBlock && decide(Target::Replica, false)) return out;
    if (compiled_->rules && !compiled_->rules->empty()) {
        std::string_view application = routing.application_name;
        RuleMatch match = compiled_->rules->match(text, Who{user, database, application});
        // A statement the classifier proves a read writes nothing wherever a rule sends it:
        // it leaves no commit for read your writes to wait for.
        bool may_write = !is_read_target(match.route) && kind != StatementClass::Read;
        if (match.route != Target::None && decide(match.route, may_write)) {
            request.node = std::string(match.node);
            return out;
        }
    }
    if (kind == StatementClass::Read)
        decide(Target::Replica, false);
    else if (kind == StatementClass::Write)
        decide(Target::Primary, true);
    else
        decide(routing.default_route, !is_read_target(routing.default_route));
    return out;
}

namespace {

struct Candidate {
    int node;
    double weight;
    int in_flight;
};

double effective_weight(const cluster::NodeStatus& node, const config::Service* service,
                        base::Milliseconds now) {
    int weight = node.options.weight;
    if (service != nullptr && weight == 100) weight = service->weight;
    double factor = 1.0;
    if (service != nullptr && service->slowstart_ms > 0 && node.up_since_ms > 0) {
        double ramp = double(now - node.up_since_ms) / double(service->slowstart_ms);
        factor = ramp < 0.05 ? 0.05 : ramp > 1.0 ? 1.0 : ramp;
    }
    return weight * factor;
}

// balance = "load": capacity shrinks continuously with lag, with fewer free slots and with
// more transactions in flight; no threshold switches a node off.
double load_score(const cluster::NodeStatus& node, const Candidate& candidate) {
    double lag = 1.0;
    if (node.role == cluster::Role::Replica) {
        double ms = node.lag_ms > 0 ? double(node.lag_ms) : 0.0;
        double bytes = node.lag_bytes > 0 ? double(node.lag_bytes) : 0.0;
        lag = 1.0 / (1.0 + ms / 250.0 + bytes / double(4 << 20));
    }
    double slots = node.free_slots < 0 ? 1.0 : double(node.free_slots) / (node.free_slots + 4.0);
    // The host's load per CPU, when the pgplex schema reports it: an idle host counts 1, one
    // whose every CPU is busy 1/2, one with twice the work its CPUs can run 1/3.
    double cpu = node.load1 >= 0 && node.cpus > 0 ? 1.0 / (1.0 + node.load1 / node.cpus) : 1.0;
    return candidate.weight * lag * slots * cpu / (1.0 + candidate.in_flight);
}

}  // namespace

namespace {

// With [gossip], the primary takes nothing once this appliance's lease has run out, whatever
// the snapshot says: the request waits for a snapshot that renews the lease or names the next
// primary.
bool lease_allows(const cluster::ClusterStatus& cluster, int chosen, base::Milliseconds now) {
    return chosen < 0 || chosen != cluster.primary || now < cluster.writable_until_ms;
}

}  // namespace

int Router::choose(const Routing& routing, const Request& request,
                   const cluster::ClusterStatus& cluster, const config::Config& config,
                   NodeLoads& loads, base::Milliseconds now) {
    if (!cluster.readable) return -1;  // cut off from the majority, minority_reads = false
    if (request.target == Target::Node) {
        for (size_t i = 0; i < cluster.nodes.size(); ++i)
            if (cluster.nodes[i].name == request.node && cluster.nodes[i].healthy &&
                !cluster.nodes[i].fenced)
                return lease_allows(cluster, int(i), now) ? int(i) : -1;
        return -1;
    }
    const config::Cluster* settings = config.find_cluster(routing.cluster);
    const cluster::ServiceRule* rule = nullptr;
    const config::Service* service = nullptr;
    cluster::Limits limits;
    if (!routing.service.empty()) {
        const ServiceEntry* entry = compiled_->service(routing.cluster, routing.service);
        if (entry == nullptr) return -1;
        rule = &entry->rule;
        service = entry->service;
        limits.max_lag_ms = service->max_lag_ms;
        limits.max_lag_bytes = service->max_lag_bytes;
    } else {
        rule = compiled_->target_rule(request.target);
        if (rule == nullptr) return -1;
        if (settings != nullptr) {
            limits.max_lag_ms = settings->max_lag_ms;
            limits.max_lag_bytes = settings->max_lag_bytes;
        }
        if (routing.read_your_writes) limits.min_replay_lsn = routing.ryw_lsn;
    }
    if (request.max_lag_ms >= 0) {
        limits.max_lag_ms = request.max_lag_ms;
        limits.max_lag_bytes = -1;
    }
    cluster::Carriers carriers = cluster::carriers(*rule, cluster, limits);
    int chosen = balance(routing, carriers, cluster, service, loads, now, request.takes_turn);
    // Read your writes: when no node of the route has replayed the client's last commit
    // yet, the primary has it.
    if (chosen < 0 && limits.min_replay_lsn > 0 && cluster.primary >= 0) chosen = cluster.primary;
    return lease_allows(cluster, chosen, now) ? chosen : -1;
}

int Router::balance(const Routing& routing, const cluster::Carriers& carriers,
                    const cluster::ClusterStatus& cluster, const config::Service* service,
                    NodeLoads& loads, base::Milliseconds now, bool takes_turn) {
    Candidate list[64];
    size_t count = 0;
    bool any_slots = false;
    for (int index : carriers.nodes) {
        const cluster::NodeStatus& node = cluster.nodes[size_t(index)];
        std::atomic<int>* counter = loads.find_or_create(routing.cluster, node.name);
        int in_flight = counter ? counter->load(std::memory_order_relaxed) : 0;
        if (service != nullptr && service->maxconn > 0 && in_flight >= service->maxconn) continue;
        double weight = effective_weight(node, service, now);
        if (weight <= 0 || count == std::size(list)) continue;
        any_slots |= node.free_slots != 0;
        list[count++] = {index, weight, in_flight};
    }
    // Nodes with no free slot are skipped, unless no node has one.
    if (any_slots) {
        size_t kept = 0;
        for (size_t i = 0; i < count; ++i)
            if (cluster.nodes[size_t(list[i].node)].free_slots != 0) list[kept++] = list[i];
        count = kept;
    }
    if (count == 0) return -1;
    if (count == 1) return list[0].node;
    config::Balance how = service ? service->balance : config::Balance::RoundRobin;
    if (how == config::Balance::LeastConn) {
        size_t best = 0;
        for (size_t i = 1; i < count; ++i)
            if (list[i].in_flight / list[i].weight < list[best].in_flight / list[best].weight)
                best = i;
        return list[best].node;
    }
    bool equal = true;
    for (size_t i = 1; i < count; ++i) equal &= list[i].weight == list[0].weight;
    if (how == config::Balance::RoundRobin && equal)
        return list[(takes_turn ? turn_++ : turn_) % count].node;
    double total = 0;
    for (size_t i = 0; i < count; ++i) {
        if (how == config::Balance::Load)
            list[i].weight = load_score(cluster.nodes[size_t(list[i].node)], list[i]);
        total += list[i].weight;
    }
    random_ ^= random_ << 13;
    random_ ^= random_ >> 7;
    random_ ^= random_ << 17;
    double point = double(random_ >> 11) / double(uint64_t(1) << 53) * total;
    for (size_t i = 0; i < count; ++i) {
        if (point < list[i].weight) return list[i].node;
        point -= list[i].weight;
    }
    return list[count - 1].node;
}

}  // namespace pgplex::route
