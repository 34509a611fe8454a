// See endpoints.h. Each path is a small pure function of the snapshot, so the unit tests
// check every answer without a socket or a running daemon.
#include "pgplex/metrics/endpoints.h"

#include <utility>

#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"

namespace pgplex::metrics {

namespace {

constexpr std::string_view allowed_methods = "GET, HEAD, OPTIONS";

Response health(const Snapshot& snapshot) {
    if (!snapshot.started) return text_response(503, "starting\n");
    if (snapshot.shutting_down) return text_response(503, "shutting down\n");
    return text_response(200, "serving\n");
}

bool has_primary(const cluster::ClusterStatus& c) {
    return c.writable && c.primary >= 0 && size_t(c.primary) < c.nodes.size() &&
           c.nodes[size_t(c.primary)].healthy && !c.nodes[size_t(c.primary)].fenced;
}

bool has_replica(const cluster::ClusterStatus& c) {
    if (!c.readable) return false;
    for (const cluster::NodeStatus& node : c.nodes)
        if (node.healthy && !node.fenced && node.role == cluster::Role::Replica) return true;
    return false;
}

// /primary[/CLUSTER] and /replica[/CLUSTER]: each cluster asked about, one line each.
Response role_check(const Snapshot& snapshot, bool primary, std::string_view name) {
    Response serving = health(snapshot);
    if (serving.status != 200) return serving;
    const cluster::Topology* topology = snapshot.topology.get();
    if (!topology || topology->clusters.empty()) return text_response(404, "no clusters\n");
    std::string body;
    bool good = true;
    bool found = false;
    for (const cluster::ClusterStatus& c : topology->clusters) {
        if (!name.empty() && c.name != name) continue;
        found = true;
        bool ok = primary ? has_primary(c) : has_replica(c);
        good = good && ok;
        body += c.name + (ok ? ": " : ": no ") + (primary ? "primary\n" : "replica\n");
    }
    if (!found) return text_response(404, "no cluster named " + std::string(name) + "\n");
    return text_response(good ? 200 : 503, body);
}

// /service/CLUSTER/SERVICE: 200 while some node carries the service (its backups count).
Response service_check(const Snapshot& snapshot, std::string_view rest) {
    Response serving = health(snapshot);
    if (serving.status != 200) return serving;
    size_t slash = rest.find('/');
    std::string_view cluster_name = rest.substr(0, slash);
    std::string_view service_name =
        slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    const config::Cluster* cluster =
        snapshot.config ? snapshot.config->find_cluster(cluster_name) : nullptr;
    const cluster::ClusterStatus* status =
        snapshot.topology ? snapshot.topology->find(cluster_name) : nullptr;
    for (size_t i = 0; cluster != nullptr && status != nullptr && i < cluster->services.size();
         ++i) {
        const config::Service& service = cluster->services[i];
        if (service.name != service_name) continue;
        cluster::Carriers now =
            cluster::carriers(cluster::service_rule(*cluster, service), *status);
        std::string line = std::string(rest) + ": " + std::to_string(now.nodes.size()) +
                           (now.backup ? " backup" : "") + " nodes\n";
        return text_response(now.nodes.empty() ? 503 : 200, line);
    }
    return text_response(404, "no service " + std::string(rest) + "\n");
}

// "/primary" → ("primary", ""), "/primary/main" → ("primary", "main").
std::pair<std::string_view, std::string_view> split_path(std::string_view path) {
    path.remove_prefix(1);
    size_t slash = path.find('/');
    if (slash == std::string_view::npos) return {path, {}};
    return {path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

Response respond(const Request& request, const Snapshot& snapshot) {
    if (request.method == Method::Other) {
        Response response = text_response(405, "GET, HEAD or OPTIONS\n");
        response.allow = std::string(allowed_methods);
        return response;
    }
    auto [first, rest] = request.path == "*"
                             ? std::pair<std::string_view, std::string_view>{"*", {}}
                             : split_path(request.path);
    bool known = first == "*" || ((first == "metrics" || first == "health") && rest.empty()) ||
                 first == "primary" || first == "replica" || first == "service";
    if (!known) return text_response(404, "not found: try /metrics, /health, /primary, /replica\n");
    if (request.method == Method::Options) {
        Response response = text_response(204, "");
        response.allow = std::string(allowed_methods);
        return response;
    }
    if (first == "metrics") {
        Response response = text_response(200, render(snapshot));
        response.content_type = "text/plain; version=0.0.4; charset=utf-8";
        return response;
    }
    if (first == "health") return health(snapshot);
    if (first == "service") return service_check(snapshot, rest);
    return role_check(snapshot, first == "primary", rest);
}

}  // namespace pgplex::metrics
