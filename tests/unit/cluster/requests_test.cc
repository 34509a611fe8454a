// The request table between the management database (workers) and the monitor thread.
#include <criterion/criterion.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/cluster/requests.h"

using namespace pgplex::cluster;

Test(requests, a_posted_request_is_taken_once_with_its_names) {
    Requests requests;
    cr_assert(requests.post(RequestKind::Switchover, "pg-test", "127.0.0.1:5433"));
    std::vector<Request> taken = requests.take();
    cr_assert_eq(taken.size(), 1u);
    cr_assert_eq(taken[0].kind, RequestKind::Switchover);
    cr_assert_eq(taken[0].cluster, "pg-test");
    cr_assert_eq(taken[0].node, "127.0.0.1:5433");
    cr_assert(requests.take().empty());
}

Test(requests, a_full_table_and_overlong_names_are_refused_not_overwritten) {
    Requests requests;
    int posted = 0;
    while (requests.post(RequestKind::Unfence, "c", std::to_string(posted))) ++posted;
    cr_assert_gt(posted, 0);
    cr_assert_eq(requests.take().size(), size_t(posted));
    std::string long_name(Requests::text_bytes_max + 1, 'x');
    cr_assert_not(requests.post(RequestKind::Promote, "c", long_name));
    cr_assert(requests.post(RequestKind::Promote, "c", "n"));
}

Test(requests, posts_from_many_threads_are_each_taken_exactly_once) {
    Requests requests;
    std::atomic<int> accepted{0};
    std::vector<Request> taken;
    std::atomic<bool> done{false};
    std::thread taker([&] {
        while (!done.load()) {
            for (Request& request : requests.take()) taken.push_back(std::move(request));
        }
        for (Request& request : requests.take()) taken.push_back(std::move(request));
    });
    std::vector<std::thread> posters;
    for (int t = 0; t < 4; ++t)
        posters.emplace_back([&, t] {
            for (int i = 0; i < 500; ++i)
                if (requests.post(RequestKind::Unfence, "c" + std::to_string(t), std::to_string(i)))
                    ++accepted;
        });
    for (std::thread& poster : posters) poster.join();
    done = true;
    taker.join();
    cr_assert_eq(taken.size(), size_t(accepted.load()));
    for (const Request& request : taken) cr_assert_eq(request.cluster.size(), 2u);
}
