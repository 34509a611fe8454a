// Interned statements and each server's least-recently-used set of prepared statements.
#include <criterion/criterion.h>

#include <string>

#include "../support.h"
#include "pgplex/pool/prepared.h"
#include "pgplex/pool/session_state.h"

using pgplex::pool::ServerStatements;
using pgplex::pool::Statement;
using pgplex::pool::StatementCache;
using pgplex::pool::StatementId;

namespace {

std::string tail(const std::string& query) {
    return query + std::string("\0\0\0", 3);
}

}  // namespace

Test(prepared, the_same_text_is_one_statement_with_one_server_name) {
    StatementCache cache;
    Statement* a = cache.intern(tail("SELECT 1"));
    Statement* b = cache.intern(tail("SELECT 1"));
    Statement* c = cache.intern(tail("SELECT 2"));
    cr_assert_eq(a, b);
    cr_assert_neq(a, c);
    cr_assert_eq(a->refs, 2);
    cr_assert_eq(cache.size(), 2);
    assert_text(std::string(a->server_name).substr(0, 8), "_pgplex_");
    cr_assert_eq(std::string(a->server_name).size(), 40);
    cr_assert(std::string(a->server_name) != std::string(c->server_name));
    cr_assert_eq(cache.find(tail("SELECT 2")), c);
    cr_assert_null(cache.find(tail("SELECT 3")));
}

Test(prepared, parameter_types_make_a_different_statement) {
    StatementCache cache;
    std::string untyped = tail("SELECT $1");
    std::string typed = std::string("SELECT $1\0\0\1\0\0\0\x17", 16);
    cr_assert_neq(cache.intern(untyped), cache.intern(typed));
}

Test(prepared, a_statement_goes_when_its_last_reference_does) {
    StatementCache cache;
    Statement* a = cache.intern(tail("SELECT 1"));
    cache.intern(tail("SELECT 1"));
    cache.unref(a);
    cr_assert_eq(cache.size(), 1);
    cache.unref(a);
    cr_assert_eq(cache.size(), 0);
}

Test(prepared, eviction_takes_the_least_recently_used) {
    ServerStatements server;
    StatementId one{1, 0}, two{2, 0}, three{3, 0};
    server.add(one, 1);
    server.add(two, 1);
    server.add(three, 1);
    server.touch(one, 2);
    StatementId victim;
    cr_assert(server.eviction_candidate(3, 2, victim));
    cr_assert(victim == two);
    cr_assert_not(server.eviction_candidate(4, 2, victim), "room left: nothing to evict");
}

Test(prepared, what_the_current_lending_used_is_never_evicted) {
    ServerStatements server;
    server.add({1, 0}, 7);
    server.add({2, 0}, 7);
    StatementId victim;
    cr_assert_not(server.eviction_candidate(1, 7, victim));
    cr_assert(server.eviction_candidate(1, 8, victim));
    server.remove(victim);
    cr_assert_eq(server.size(), 1);
    server.clear();
    cr_assert_eq(server.size(), 0);
    cr_assert_not(server.contains({2, 0}));
}

Test(prepared, deallocate_of_one_name_or_all_is_recognized) {
    std::string name;
    bool all = false;
    cr_assert(pgplex::pool::parse_deallocate("DEALLOCATE _pg3_12", name, all));
    assert_text(name, "_pg3_12");
    cr_assert_not(all);
    cr_assert(pgplex::pool::parse_deallocate("  deallocate prepare \"Mixed\" ; ", name, all));
    assert_text(name, "Mixed");
    cr_assert(pgplex::pool::parse_deallocate("DEALLOCATE ALL", name, all));
    cr_assert(all);
    cr_assert(pgplex::pool::parse_deallocate("DEALLOCATE \"all\"", name, all));
    cr_assert_not(all, "a quoted all is a name");
    cr_assert_not(pgplex::pool::parse_deallocate("DEALLOCATE a; SELECT 1", name, all));
    cr_assert_not(pgplex::pool::parse_deallocate("DEALLOCATE", name, all));
    cr_assert_not(pgplex::pool::parse_deallocate("SELECT 'DEALLOCATE x'", name, all));
}

Test(prepared, discard_all_and_deallocate_all_drop_every_statement) {
    cr_assert(pgplex::pool::drops_prepared("DISCARD ALL"));
    cr_assert(pgplex::pool::drops_prepared("SELECT 1; deallocate prepare all"));
    cr_assert_not(pgplex::pool::drops_prepared("DISCARD PLANS"));
    cr_assert_not(pgplex::pool::drops_prepared("DEALLOCATE x"));
    cr_assert_not(pgplex::pool::drops_prepared("SELECT 'discard all'"));
}
