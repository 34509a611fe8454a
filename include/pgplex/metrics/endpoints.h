// The admin port's paths and what each answers, from a Snapshot (exposition.h): the part
// of the HTTP server a load balancer relies on, kept apart from the sockets.
#pragma once

#include "pgplex/metrics/exposition.h"
#include "pgplex/metrics/http.h"

namespace pgplex::metrics {

// What a request gets: the routing of paths to answers, without sockets (unit tested).
// /health: 200 while this pgplex serves (its workers started, no shutdown begun), else 503.
// /primary[/CLUSTER]: 200 when the cluster (every cluster, without a name) has a healthy
// primary this appliance sends writes to. /replica[/CLUSTER]: 200 when it has a healthy
// replica and this appliance sends reads to it. /service/CLUSTER/SERVICE: 200 while some
// node (or backup) carries the service. An unknown cluster or service is 404.
Response respond(const Request& request, const Snapshot& snapshot);

}  // namespace pgplex::metrics
