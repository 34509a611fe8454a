// The map from a handed-over client's old (pid, key) to its worker and slot here
// (pool/moved_cancels.h): what is inserted is found, erased entries are not, probes pass
// tombstones, and concurrent workers inserting and erasing never lose each other's entries.
#include <criterion/criterion.h>

#include <atomic>
#include <thread>
#include <vector>

#include "pgplex/pool/moved_cancels.h"

using pgplex::pool::MovedCancels;

Test(moved_cancels, finds_what_was_inserted_and_not_what_was_erased) {
    MovedCancels table(4);  // 16 entries: probes wrap and meet tombstones
    for (uint32_t i = 1; i <= 12; ++i)
        cr_assert(table.insert(MovedCancels::key_of(i, 1000 + i), uint64_t(i) << 32 | i));
    uint64_t value = 0;
    for (uint32_t i = 1; i <= 12; ++i) {
        cr_assert(table.find(MovedCancels::key_of(i, 1000 + i), value));
        cr_assert_eq(value, uint64_t(i) << 32 | i);
        cr_assert_not(table.find(MovedCancels::key_of(i, 999), value), "a wrong key matched");
    }
    for (uint32_t i = 1; i <= 12; i += 2)
        table.erase(MovedCancels::key_of(i, 1000 + i), uint64_t(i) << 32 | i);
    for (uint32_t i = 1; i <= 12; ++i)
        cr_assert_eq(table.find(MovedCancels::key_of(i, 1000 + i), value), i % 2 == 0, "%u", i);
    // Tombstones are reused, and what lies past them is still found.
    for (uint32_t i = 20; i < 24; ++i) cr_assert(table.insert(MovedCancels::key_of(i, 7), i));
    for (uint32_t i = 2; i <= 12; i += 2)
        cr_assert(table.find(MovedCancels::key_of(i, 1000 + i), value));
}

Test(moved_cancels, erase_leaves_an_entry_that_now_names_another_slot) {
    MovedCancels table(4);
    uint64_t key = MovedCancels::key_of(5, 55);
    table.insert(key, 1);
    table.insert(key, 2);  // the client was adopted again, elsewhere
    table.erase(key, 1);   // the stale owner leaving erases nothing
    uint64_t value = 0;
    cr_assert(table.find(key, value));
    cr_assert_eq(value, 2u);
}

Test(moved_cancels, a_full_table_refuses_more) {
    MovedCancels table(2);
    for (uint32_t i = 1; i <= 4; ++i) cr_assert(table.insert(MovedCancels::key_of(i, i), i));
    cr_assert_not(table.insert(MovedCancels::key_of(9, 9), 9));
}

Test(moved_cancels, concurrent_workers_keep_their_own_entries) {
    MovedCancels table(12);
    constexpr uint32_t workers = 4, per_worker = 500;
    std::atomic<uint32_t> lost{0};  // Criterion's asserts belong to the test's own thread
    std::vector<std::thread> threads;
    for (uint32_t w = 0; w < workers; ++w)
        threads.emplace_back([&table, &lost, w] {
            for (uint32_t round = 0; round < 20; ++round) {
                for (uint32_t i = 0; i < per_worker; ++i)
                    table.insert(MovedCancels::key_of(w * per_worker + i + 1, round), w);
                for (uint32_t i = 0; i < per_worker; ++i) {
                    uint64_t value = 99;
                    bool found =
                        table.find(MovedCancels::key_of(w * per_worker + i + 1, round), value);
                    if (!found || value != w) lost.fetch_add(1);
                }
                for (uint32_t i = 0; i < per_worker; ++i)
                    table.erase(MovedCancels::key_of(w * per_worker + i + 1, round), w);
            }
        });
    for (std::thread& thread : threads) thread.join();
    cr_assert_eq(lost.load(), 0u, "%u entries lost", lost.load());
}
