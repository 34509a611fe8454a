// The router's view of which requests only a cluster's primary can take: they wait for one
// while the cluster has none or a switchover holds writes (failover_wait_timeout).
#include <criterion/criterion.h>

#include "../support.h"

#include <string>

#include "pgplex/route/router.h"

using namespace pgplex;
using namespace pgplex::route;

namespace {

config::Service service(const char* name, const char* selector, const char* backup) {
    config::Service out;
    out.name = name;
    out.cluster = "c";
    out.selector = selector;
    out.backup = backup;
    return out;
}

config::Config with_services() {
    config::Config config;
    config::Cluster cluster;
    cluster.name = "c";
    cluster.services = {service("primary", "primary", ""),
                        service("replica", "replica && !offline", "primary"),
                        service("writers", "primary && !offline", ""),
                        service("standby", "sync", "primary"),
                        service("anything", "any", ""),
                        service("nowhere", "", "")};
    config.clusters.push_back(cluster);
    return config;
}

bool service_needs_primary(Router& router, const char* name) {
    Routing routing;
    routing.cluster = "c";
    routing.service = name;
    return router.needs_primary(routing, Request{});
}

bool route_needs_primary(Router& router, Target target) {
    Routing routing;
    routing.cluster = "c";
    Request request;
    request.target = target;
    return router.needs_primary(routing, request);
}

}  // namespace

Test(router, services_that_select_only_primaries_need_the_primary) {
    config::Config config = with_services();
    Router router(config);
    cr_assert(service_needs_primary(router, "primary"));
    cr_assert(service_needs_primary(router, "writers"));
    cr_assert_not(service_needs_primary(router, "replica"), "a replica can carry it");
    cr_assert_not(service_needs_primary(router, "standby"), "the sync standby carries it");
    cr_assert_not(service_needs_primary(router, "anything"));
    cr_assert_not(service_needs_primary(router, "nowhere"), "it selects nothing at all");
    cr_assert_not(service_needs_primary(router, "unknown"));
}

Test(router, routed_writes_need_the_primary_and_reads_do_not) {
    config::Config config = with_services();
    Router router(config);
    cr_assert(route_needs_primary(router, Target::Primary));
    cr_assert_not(route_needs_primary(router, Target::Replica));
    cr_assert_not(route_needs_primary(router, Target::Standby));
    cr_assert_not(route_needs_primary(router, Target::Offline));
    cr_assert_not(route_needs_primary(router, Target::Node), "a named node is not a role");
    cr_assert_not(route_needs_primary(router, Target::None));
}
