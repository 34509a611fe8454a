// [clusters.NAME] (nodes, monitor settings, node_options, services), [[rules]] and
// [[rewrites]], and the checks that need the whole file: an alias's cluster exists, no two
// listeners share an address. Selectors and patterns are compiled here once, so a file with
// a bad one is refused with its line, never discovered by a worker.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "pgplex/base/limits.h"
#include "pgplex/config/loader.h"
#include "pgplex/config/selector.h"

namespace pgplex::config {

namespace {

// A cluster while its table is read.
struct ClusterDraft {
    Cluster cluster;
    bool fastinter_set = false;
    bool downinter_set = false;
    const toml::node* node_options = nullptr;
    const toml::node* services = nullptr;
    ServerTlsLevel server_tls;
    std::vector<ServerTlsLevel> node_tls;  // by index in cluster.nodes
};

bool set_nodes(Loader& loader, ClusterDraft& draft) {
    std::vector<std::string> names;
    if (!loader.string_list(names)) return false;
    if (names.empty()) return loader.fail("must name at least one node");
    if (names.size() > limits::cluster_nodes_max)
        return loader.fail("may name at most " + std::to_string(limits::cluster_nodes_max));
    for (const std::string& name : names) {
        Node node;
        node.name = name;
        std::string reason;
        if (!parse_endpoint(name, node.endpoint, reason))
            return loader.fail("has a bad node \"" + name + "\": " + reason);
        if (draft.cluster.find_node(name) != nullptr)
            return loader.fail("names \"" + name + "\" twice");
        draft.cluster.nodes.push_back(std::move(node));
    }
    return true;
}

bool set_failover(Loader& loader, ClusterDraft& draft) {
    std::string mode;
    if (!loader.one_of({"follow", "promote"}, mode)) return false;
    draft.cluster.failover = mode == "promote" ? Failover::Promote : Failover::Follow;
    return true;
}

// A size ("1MB", "0B") or a plain number of bytes; a duration means nothing here: the choice
// compares WAL positions, not times.
bool set_max_failover_lag(Loader& loader, ClusterDraft& draft) {
    if (loader.node->is_integer())
        return loader.integer(0, INT64_MAX, draft.cluster.max_failover_lag_bytes);
    int64_t ms = -1;
    int64_t bytes = -1;
    if (!loader.lag(ms, bytes) || bytes < 0) {
        loader.error.clear();
        return loader.fail("must be a size in bytes (\"0B\", \"512kB\", \"1MB\")");
    }
    draft.cluster.max_failover_lag_bytes = bytes;
    return true;
}

constexpr Setting<ClusterDraft> cluster_settings[] = {
    {"nodes", set_nodes},
    {"monitor_user", [](Loader& l, ClusterDraft& d) { return l.string(d.cluster.monitor_user); }},
    {"monitor_password",
     [](Loader& l, ClusterDraft& d) { return l.string(d.cluster.monitor_password); }},
    {"monitor_dbname",
     [](Loader& l, ClusterDraft& d) { return l.string(d.cluster.monitor_dbname); }},
    {"inter", [](Loader& l, ClusterDraft& d) { return l.duration(d.cluster.inter_ms); }},
    {"fastinter",
     [](Loader& l, ClusterDraft& d) {
         d.fastinter_set = true;
         return l.duration(d.cluster.fastinter_ms);
     }},
    {"downinter",
     [](Loader& l, ClusterDraft& d) {
         d.downinter_set = true;
         return l.duration(d.cluster.downinter_ms);
     }},
    {"rise", [](Loader& l, ClusterDraft& d) { return l.integer_as(1, 100, d.cluster.rise); }},
    {"fall", [](Loader& l, ClusterDraft& d) { return l.integer_as(1, 100, d.cluster.fall); }},
    {"check_timeout",
     [](Loader& l, ClusterDraft& d) {
         // The monitor would give a check no time at all: every node would be down.
         return l.duration(d.cluster.check_timeout_ms) &&
                (d.cluster.check_timeout_ms > 0 || l.fail("must be more than zero"));
     }},
    {"max_lag",
     [](Loader& l, ClusterDraft& d) {
         return l.lag(d.cluster.max_lag_ms, d.cluster.max_lag_bytes);
     }},
    {"patroni_port",
     [](Loader& l, ClusterDraft& d) { return l.integer_as(1, 65535, d.cluster.patroni_port); }},
    {"failover", set_failover},
    {"max_failover_lag", set_max_failover_lag},
    {"switchover_timeout",
     [](Loader& l, ClusterDraft& d) {
         return l.duration(d.cluster.switchover_timeout_ms) &&
                (d.cluster.switchover_timeout_ms > 0 || l.fail("must be more than zero"));
     }},
    {"failover_wait_timeout",
     [](Loader& l, ClusterDraft& d) { return l.duration(d.cluster.failover_wait_timeout_ms); }},
    {"node_options",
     [](Loader& l, ClusterDraft& d) {
         d.node_options = l.node;
         return l.node->is_table() || l.fail("must be a table of tables, one per node");
     }},
    {"services",
     [](Loader& l, ClusterDraft& d) {
         d.services = l.node;
         return l.node->is_table() || l.fail("must be a table of tables, one per service");
     }},
};

constexpr Setting<NodeOptions> node_settings[] = {
    {"offline", [](Loader& l, NodeOptions& o) { return l.boolean(o.offline); }},
    {"offline_query", [](Loader& l, NodeOptions& o) { return l.boolean(o.offline_query); }},
    {"weight", [](Loader& l, NodeOptions& o) { return l.integer_as(0, 256, o.weight); }},
    {"max_db_connections",
     [](Loader& l, NodeOptions& o) { return l.integer_as(0, 1'000'000, o.max_db_connections); }},
};

// A service while its table is read.
struct ServiceDraft {
    Service service;
    std::optional<std::string> host;
    int port = 0;
    uint32_t host_line = 0;  // 0: not given; errors about a value name the value's line
    uint32_t selector_line = 0;
    uint32_t backup_line = 0;
    bool selector_set = false;
    bool backup_set = false;
    bool dest_set = false;
    bool weight_set = false;
};

constexpr Setting<ServiceDraft> service_settings[] = {
    {"port", [](Loader& l, ServiceDraft& d) { return l.integer_as(1, 65535, d.port); }},
    {"host",
     [](Loader& l, ServiceDraft& d) {
         d.host_line = l.node->source().begin.line;
         return l.optional_string(d.host);
     }},
    {"selector",
     [](Loader& l, ServiceDraft& d) {
         d.selector_set = true;
         d.selector_line = l.node->source().begin.line;
         return l.string(d.service.selector);
     }},
    {"backup",
     [](Loader& l, ServiceDraft& d) {
         d.backup_set = true;
         d.backup_line = l.node->source().begin.line;
         return l.string(d.service.backup);
     }},
    {"dest",
     [](Loader& l, ServiceDraft& d) {
         std::string dest;
         if (!l.one_of({"pool", "direct"}, dest)) return false;
         d.dest_set = true;
         d.service.dest = dest == "direct" ? Dest::Direct : Dest::Pool;
         return true;
     }},
    {"balance",
     [](Loader& l, ServiceDraft& d) {
         std::string balance;
         if (!l.one_of({"roundrobin", "leastconn", "load"}, balance)) return false;
         d.service.balance = balance == "leastconn" ? Balance::LeastConn
                             : balance == "load"    ? Balance::Load
                                                    : Balance::RoundRobin;
         return true;
     }},
    {"max_lag",
     [](Loader& l, ServiceDraft& d) {
         return l.lag(d.service.max_lag_ms, d.service.max_lag_bytes);
     }},
    {"maxconn",
     [](Loader& l, ServiceDraft& d) { return l.integer_as(0, 100'000, d.service.maxconn); }},
    {"maxqueue",
     [](Loader& l, ServiceDraft& d) { return l.integer_as(0, 1'000'000, d.service.maxqueue); }},
    {"weight",
     [](Loader& l, ServiceDraft& d) {
         d.weight_set = true;
         return l.integer_as(0, 256, d.service.weight);
     }},
    {"slowstart", [](Loader& l, ServiceDraft& d) { return l.duration(d.service.slowstart_ms); }},
};

bool check_selector(Loader& loader, uint32_t line, const std::string& what,
                    const std::string& text) {
    Selector selector;
    std::string reason;
    if (Selector::compile(text, selector, reason)) return true;
    return loader.fail_at(line, what + " \"" + text + "\": " + reason);
}

// The addresses a service binds: its host, or every TCP host of [pgplex] listen and then its
// port in unix_socket_dir.
bool service_listen(Loader& loader, const Config& config, ServiceDraft& draft) {
    Service& service = draft.service;
    std::string what = "service " + service.cluster + "." + service.name;
    uint16_t port = uint16_t(draft.port);
    std::string reason;
    if (draft.host) {
        Endpoint endpoint;
        if (!resolve_endpoint(*draft.host, port, endpoint, reason))
            return loader.fail_at(draft.host_line, what + ": " + reason);
        service.listen.push_back(std::move(endpoint));
        return true;
    }
    for (const Listen& listen : config.listen) {
        if (listen.endpoint.is_unix()) continue;
        Endpoint endpoint;
        if (!resolve_endpoint(listen.endpoint.host, port, endpoint, reason))
            return loader.fail_at(service.line, what + ": " + reason);
        service.listen.push_back(std::move(endpoint));
    }
    if (service.listen.empty())
        return loader.fail_at(service.line,
                              what + " needs a host: [pgplex] listen has no TCP address");
    if (config.unix_socket_dir.empty()) return true;
    Endpoint local;
    if (!resolve_endpoint(config.unix_socket_dir, port, local, reason))
        return loader.fail_at(service.line, what + ": unix_socket_dir: " + reason);
    service.listen.push_back(std::move(local));
    return true;
}

// Fills what a well-known name implies and checks what the table gave.
bool finish_service(Loader& loader, const Config& config, const Cluster& cluster,
                    ServiceDraft& draft) {
    Service& service = draft.service;
    std::string what = "service " + cluster.name + "." + service.name;
    const KnownService* known = known_service(service.name);
    if (draft.port == 0) return loader.fail_at(service.line, what + " needs a port");
    if (!draft.selector_set) {
        if (known == nullptr)
            return loader.fail_at(service.line,
                                  what +
                                      " needs a selector (only primary, replica, default, "
                                      "offline, standby and delayed have one by default)");
        service.selector = std::string(known->selector);
        if (!draft.backup_set) service.backup = std::string(known->backup);
    }
    if (!draft.dest_set && known != nullptr) service.dest = known->dest;
    if (service.max_lag_ms < 0 && service.max_lag_bytes < 0) {
        service.max_lag_ms = cluster.max_lag_ms;
        service.max_lag_bytes = cluster.max_lag_bytes;
    }
    uint32_t selector_line = draft.selector_line ? draft.selector_line : service.line;
    uint32_t backup_line = draft.backup_line ? draft.backup_line : service.line;
    if (!check_selector(loader, selector_line, what + ": selector", service.selector) ||
        !check_selector(loader, backup_line, what + ": backup", service.backup))
        return false;
    return service_listen(loader, config, draft);
}

bool parse_service(Loader& loader, const Config& config, Cluster& cluster, std::string_view name,
                   const toml::node& node) {
    const toml::table* table = node.as_table();
    std::string section = section_name(cluster.name, "clusters") + ".services." + std::string(name);
    if (table == nullptr) return loader.fail_on(node, "[" + section + "] must be a table");
    ServiceDraft draft;
    draft.service.name = std::string(name);
    draft.service.cluster = cluster.name;
    draft.service.line = table->source().begin.line;
    if (!apply_settings(loader, *table, section, service_settings, draft)) return false;
    if (!finish_service(loader, config, cluster, draft)) return false;
    cluster.services.push_back(std::move(draft.service));
    return true;
}

bool add_default_services(Loader& loader, const Config& config, Cluster& cluster) {
    for (const KnownService& known : known_services) {
        if (known.port == 0) continue;
        ServiceDraft draft;
        draft.service.name = std::string(known.name);
        draft.service.cluster = cluster.name;
        draft.service.line = cluster.line;
        draft.port = known.port;
        if (!finish_service(loader, config, cluster, draft)) return false;
        cluster.services.push_back(std::move(draft.service));
    }
    return true;
}

bool parse_node_options(Loader& loader, ClusterDraft& draft) {
    Cluster& cluster = draft.cluster;
    for (auto&& [key, value] : *draft.node_options->as_table()) {
        std::string section =
            section_name(cluster.name, "clusters") + ".node_options.\"" + std::string(key) + "\"";
        // A named copy: clang before 16 cannot capture a structured binding in a lambda.
        std::string_view name = key.str();
        auto found = std::find_if(cluster.nodes.begin(), cluster.nodes.end(),
                                  [name](const Node& node) { return node.name == name; });
        if (found == cluster.nodes.end())
            return loader.fail_at(key.source().begin.line,
                                  "[" + section + "] names a node that is not in nodes");
        const toml::table* table = value.as_table();
        if (table == nullptr) return loader.fail_on(value, "[" + section + "] must be a table");
        ServerTlsLevel& tls = draft.node_tls[size_t(found - cluster.nodes.begin())];
        if (!apply_settings(loader, *table, section, node_settings, found->options, &tls))
            return false;
    }
    return true;
}

// Each node's server TLS settings: its node_options' over the cluster's over [pgplex]'s.
bool resolve_cluster_tls(Loader& loader, Config& config, ClusterDraft& draft) {
    Cluster& cluster = draft.cluster;
    std::string section = "[" + section_name(cluster.name, "clusters") + "]";
    std::shared_ptr<const ServerTls> cluster_tls;
    if (!resolve_server_tls(loader, config, *config.server_tls, draft.server_tls, section,
                            cluster_tls))
        return false;
    for (size_t i = 0; i < cluster.nodes.size(); i++) {
        std::string node_section = "[" + section_name(cluster.name, "clusters") +
                                   ".node_options.\"" + cluster.nodes[i].name + "\"]";
        if (!resolve_server_tls(loader, config, *cluster_tls, draft.node_tls[i], node_section,
                                cluster.nodes[i].server_tls))
            return false;
    }
    return true;
}

bool parse_cluster(Loader& loader, Config& config, std::string_view name, const toml::node& node) {
    const toml::table* table = node.as_table();
    std::string section = section_name(name, "clusters");
    if (table == nullptr) return loader.fail_on(node, "[" + section + "] must be a table");
    if (name.empty() || name.size() > limits::name_bytes_max || name.find('@') != name.npos)
        return loader.fail_on(node, "cluster name must be 1 to " +
                                        std::to_string(limits::name_bytes_max) +
                                        " bytes long, without '@'");
    ClusterDraft draft;
    draft.cluster.name = std::string(name);
    draft.cluster.line = table->source().begin.line;
    if (!apply_settings(loader, *table, section, cluster_settings, draft, &draft.server_tls))
        return false;
    Cluster& cluster = draft.cluster;
    if (cluster.nodes.empty()) return loader.fail_on(*table, "[" + section + "] needs nodes");
    draft.node_tls.resize(cluster.nodes.size());
    if (!draft.fastinter_set) cluster.fastinter_ms = cluster.inter_ms;
    if (!draft.downinter_set) cluster.downinter_ms = cluster.inter_ms;
    if (cluster.inter_ms <= 0 || cluster.fastinter_ms <= 0 || cluster.downinter_ms <= 0)
        return loader.fail_on(*table, "[" + section +
                                          "]: inter, fastinter and downinter must "
                                          "be more than zero");
    // Patroni holds the leader lock: a promotion behind its back would give two primaries.
    if (cluster.failover == Failover::Promote && cluster.patroni_port != 0)
        return loader.fail_on(*table, "[" + section +
                                          "]: failover = \"promote\" cannot be used with "
                                          "patroni_port: Patroni promotes, pgplex follows");
    if (draft.node_options != nullptr && !parse_node_options(loader, draft)) return false;
    if (!resolve_cluster_tls(loader, config, draft)) return false;
    if (draft.services != nullptr) {
        for (auto&& [key, value] : *draft.services->as_table())
            if (!parse_service(loader, config, cluster, key.str(), value)) return false;
    }
    if (cluster.services.empty() && !add_default_services(loader, config, cluster)) return false;
    config.clusters.push_back(std::move(draft.cluster));
    return true;
}

// Conditions shared by rules and rewrites.
template <typename T>
constexpr Setting<T> condition_settings[] = {
    {"pattern", [](Loader& l, T& t) { return l.string(t.pattern); }},
    {"user", [](Loader& l, T& t) { return l.string(t.user); }},
    {"database", [](Loader& l, T& t) { return l.string(t.database); }},
    {"application_name", [](Loader& l, T& t) { return l.string(t.application_name); }},
};

constexpr Setting<Rule> rule_settings[] = {
    condition_settings<Rule>[0],
    condition_settings<Rule>[1],
    condition_settings<Rule>[2],
    condition_settings<Rule>[3],
    {
        "route", [](Loader& l, Rule& r) {
            return l.one_of({"primary", "replica", "standby", "offline", "delayed"}, r.route);
        }
    },
    { "node", [](Loader& l, Rule& r) { return l.string(r.node); } },
};

constexpr Setting<Rewrite> rewrite_settings[] = {
    condition_settings<Rewrite>[0],
    condition_settings<Rewrite>[1],
    condition_settings<Rewrite>[2],
    condition_settings<Rewrite>[3],
    { "replacement", [](Loader& l, Rewrite& r) { return l.string(r.replacement); } },
};

bool check_pattern(Loader& loader, uint32_t line, const std::string& what,
                   const std::string& pattern) {
    if (pattern.empty()) return loader.fail_at(line, what + " needs a pattern");
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                                         pattern.size(), 0, &code, &offset, nullptr);
    if (compiled != nullptr) {
        pcre2_code_free(compiled);
        return true;
    }
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(code, message, sizeof message);
    return loader.fail_at(line, what + ": bad pattern at offset " + std::to_string(offset) + ": " +
                                    reinterpret_cast<const char*>(message));
}

template <typename T, size_t count>
bool parse_array(Loader& loader, const toml::node& node, std::string_view section,
                 const Setting<T> (&settings)[count], std::vector<T>& out) {
    const toml::array* list = node.as_array();
    if (list == nullptr || (!list->empty() && !list->is_array_of_tables()))
        return loader.fail_on(
            node, std::string(section) + " must be written [[" + std::string(section) + "]]");
    for (const toml::node& element : *list) {
        T item;
        item.line = element.source().begin.line;
        std::string what = std::string(section) + "[" + std::to_string(out.size()) + "]";
        if (!apply_settings(loader, *element.as_table(), "[" + std::string(section) + "]", settings,
                            item))
            return false;
        const toml::node* pattern = element.as_table()->get("pattern");
        uint32_t line = pattern != nullptr ? pattern->source().begin.line : item.line;
        if (!check_pattern(loader, line, what, item.pattern)) return false;
        out.push_back(std::move(item));
    }
    return true;
}

struct Bound {
    std::string owner;
    const Endpoint* endpoint;
};

bool check_addresses(Loader& loader, const Config& config) {
    std::vector<Bound> bound;
    for (const Listen& listen : config.listen)
        bound.push_back({"[pgplex] listen", &listen.endpoint});
    for (const Cluster& cluster : config.clusters)
        for (const Service& service : cluster.services)
            for (const Endpoint& endpoint : service.listen) {
                std::string owner = "service " + cluster.name + "." + service.name;
                for (const Bound& earlier : bound)
                    if (same_address(*earlier.endpoint, endpoint))
                        return loader.fail_at(service.line, owner + " and " + earlier.owner +
                                                                " both listen on " +
                                                                endpoint.to_string() +
                                                                " (give one of them another port)");
                bound.push_back({owner, &endpoint});
            }
    return true;
}

}  // namespace

const KnownService* known_service(std::string_view name) {
    for (const KnownService& known : known_services)
        if (known.name == name) return &known;
    return nullptr;
}

bool parse_clusters(Loader& loader, const toml::node& node, Config& config) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return loader.fail_on(node, "clusters must be a table");
    for (auto&& [key, value] : *table)
        if (!parse_cluster(loader, config, key.str(), value)) return false;
    return true;
}

bool parse_rules(Loader& loader, const toml::node& node, Config& config) {
    if (!parse_array(loader, node, "rules", rule_settings, config.rules)) return false;
    for (const Rule& rule : config.rules)
        if (rule.route.empty() == rule.node.empty())
            return loader.fail_at(rule.line, "a rule needs either route or node");
    return true;
}

bool parse_rewrites(Loader& loader, const toml::node& node, Config& config) {
    return parse_array(loader, node, "rewrites", rewrite_settings, config.rewrites);
}

bool check_routing(Loader& loader, const toml::table&, Config& config) {
    auto check_alias = [&](const Alias& alias) {
        if (alias.cluster.empty() || config.find_cluster(alias.cluster) != nullptr) return true;
        return loader.fail_at(alias.line, "alias \"" + alias.name + "\" names cluster \"" +
                                              alias.cluster + "\", which has no [clusters] table");
    };
    for (const Alias& alias : config.aliases)
        if (!check_alias(alias)) return false;
    if (config.fallback && !check_alias(*config.fallback)) return false;
    for (const Rule& rule : config.rules) {
        if (rule.node.empty()) continue;
        bool known = false;
        for (const Cluster& cluster : config.clusters)
            known |= cluster.find_node(rule.node) != nullptr;
        if (!known)
            return loader.fail_at(rule.line,
                                  "rule node \"" + rule.node + "\" is in no cluster's nodes");
    }
    return check_addresses(loader, config);
}

const char* to_string(Failover failover) {
    switch (failover) {
        case Failover::Follow:
            return "follow";
        case Failover::Promote:
            return "promote";
    }
    return "follow";
}

}  // namespace pgplex::config
