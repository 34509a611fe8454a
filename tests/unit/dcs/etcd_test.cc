// The etcd client (dcs/etcd.h) without an etcd: pointed at a port nothing listens on, it
// confirms nothing (no reading, no lease), so the decider routes no writes; a proposal is
// queued, not waited for; and it stops at once when destroyed, even in the middle of a
// request to an etcd that never answers.
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "pgplex/dcs/etcd.h"

using namespace pgplex;

namespace {

// A loopback port nothing listens on: bound, never listened, closed.
int dead_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    socklen_t length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    close(fd);
    return ntohs(address.sin_port);
}

}  // namespace

Test(etcd_store, an_unreachable_etcd_confirms_nothing) {
    config::Dcs settings;
    settings.endpoints = {"http://127.0.0.1:" + std::to_string(dead_port())};
    settings.ttl_s = 2;
    auto started = std::chrono::steady_clock::now();
    {
        dcs::EtcdStore store(settings, "127.0.0.1:7946", {"main"});
        cr_assert_eq(store.confirm_ms(), 2000);
        store.propose("main", 0, dcs::StoredDecision{1, "db0:5432", "127.0.0.1:7946", 0});
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        cr_assert_not(store.reading("main").has_value());
        cr_assert_eq(store.lease_until_ms(), 0);
        cr_assert_not(store.reachable());
    }
    auto took = std::chrono::steady_clock::now() - started;
    cr_assert_lt(took, std::chrono::seconds(3), "the client thread did not stop promptly");
}

Test(etcd_store, a_request_to_an_etcd_that_never_answers_does_not_delay_the_stop) {
    // A listener that accepts (the kernel completes the handshake) and never answers.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    cr_assert_eq(listen(fd, 16), 0);
    socklen_t length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    config::Dcs settings;
    settings.endpoints = {"http://127.0.0.1:" + std::to_string(ntohs(address.sin_port))};
    settings.ttl_s = 60;  // requests would time out only after 2 s
    auto stopping = std::chrono::steady_clock::now();
    {
        dcs::EtcdStore store(settings, "127.0.0.1:7946", {"main"});
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        stopping = std::chrono::steady_clock::now();
    }
    auto took = std::chrono::steady_clock::now() - stopping;
    close(fd);
    cr_assert_lt(took, std::chrono::milliseconds(1500), "waited out a request to stop");
}
