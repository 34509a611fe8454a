// The statement classifier: which texts only read (a replica may take them), which write,
// which open a read-only transaction, and which PostgreSQL's parser rejects.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>
#include <vector>

#include "pgplex/route/route.h"

using namespace pgplex::route;

namespace {

struct Case {
    const char* text;
    StatementClass expected;
};

void check(const Case* cases, size_t count, const std::vector<std::string>& functions = {}) {
    for (size_t i = 0; i < count; i++) {
        StatementClass got = classify_uncached(cases[i].text, functions);
        cr_expect_eq(got, cases[i].expected, "%s: got %s, expected %s", cases[i].text,
                     to_string(got), to_string(cases[i].expected));
    }
}

constexpr auto R = StatementClass::Read;
constexpr auto W = StatementClass::Write;
constexpr auto B = StatementClass::ReadOnlyBlock;
constexpr auto U = StatementClass::Unparsable;

}  // namespace

Test(classify, plain_reads_are_reads) {
    const Case cases[] = {
        {"SELECT abalance FROM pgbench_accounts WHERE aid = 42;", R},
        {"select 1", R},
        {"SELECT * FROM a JOIN b USING (id) WHERE a.x IN (SELECT y FROM c)", R},
        {"WITH x AS (SELECT 1) SELECT * FROM x", R},
        {"VALUES (1), (2)", R},
        {"TABLE accounts", R},
        {"SELECT 1 UNION SELECT 2", R},
        {"SHOW search_path", R},
        {"SELECT count(*), sum(x), max(y), string_agg(z, ',') FROM t GROUP BY w", R},
        {"SELECT now(), pg_catalog.now(), current_timestamp, coalesce(a, b), greatest(1, 2)", R},
        {"SELECT lower(name), substring(name from 2 for 3), trim(both ' ' from name) FROM t", R},
        {"SELECT extract(year from created), position('a' in name) FROM t", R},
        {"SELECT row_number() OVER (ORDER BY x), lag(x) OVER w FROM t WINDOW w AS ()", R},
        {"SELECT * FROM generate_series(1, 10)", R},
        {"SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), version()", R},
        {"SELECT 'nextval(''s'')' AS \"InsertStmt\", 'FOR UPDATE' AS \"lockingClause\"", R},
        {"EXPLAIN SELECT * FROM t", R},
        {"EXPLAIN DELETE FROM t", R},
        {"EXPLAIN ANALYZE SELECT * FROM t", R},
        {"COPY t TO STDOUT", R},
        {"COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", R},
        {"DECLARE c CURSOR FOR SELECT * FROM t", R},
        {"", R},
        {"-- nothing but a comment", R},
        {"COMMIT", R},
        {"FETCH 10 FROM c", R},
    };
    check(cases, std::size(cases));
}

Test(classify, writes_and_session_changes_are_writes) {
    const Case cases[] = {
        {"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 42;", W},
        {"INSERT INTO t VALUES (1)", W},
        {"DELETE FROM t", W},
        {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", W},
        {"CREATE TABLE t (id int)", W},
        {"DROP TABLE t", W},
        {"SELECT * FROM t FOR UPDATE", W},
        {"SELECT * FROM t FOR SHARE SKIP LOCKED", W},
        {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", W},
        {"SELECT * INTO t2 FROM t", W},
        {"CREATE TABLE t2 AS SELECT * FROM t", W},
        {"WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", W},
        {"WITH x AS (DELETE FROM t RETURNING *) SELECT count(*) FROM x", W},
        {"SELECT nextval('s')", W},
        {"SELECT pg_catalog.setval('s', 1)", W},
        {"SELECT currval('s')", W},
        {"SELECT pg_advisory_lock(1)", W},
        {"SELECT set_config('a.b', '1', false)", W},
        {"SELECT my_fn()", W},
        {"SELECT myschema.lower(x) FROM t", W},
        {"SELECT * FROM t WHERE x = my_fn(1)", W},
        {"SELECT * FROM my_srf()", W},
        {"SET search_path = app", W},
        {"SET TRANSACTION READ ONLY", W},
        {"RESET ALL", W},
        {"LOCK TABLE t", W},
        {"COPY t FROM STDIN", W},
        {"COPY t TO '/tmp/t.csv'", W},
        {"COPY t TO PROGRAM 'cat'", W},
        {"COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", W},
        {"CALL do_things()", W},
        {"DO $$ BEGIN END $$", W},
        {"LISTEN channel", W},
        {"NOTIFY channel", W},
        {"PREPARE p AS SELECT 1", W},
        {"EXECUTE p", W},
        {"DISCARD ALL", W},
        {"VACUUM t", W},
        {"EXPLAIN ANALYZE DELETE FROM t", W},
        {"EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1", W},
        {"EXPLAIN ANALYZE SELECT nextval('s')", W},
        {"EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT 1", W},
        {"EXPLAIN ANALYZE EXECUTE p", W},
        {"DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", W},
        {"COMMIT PREPARED 'x'", W},
        {"BEGIN", W},
        {"START TRANSACTION", W},
        {"BEGIN READ WRITE", W},
        {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", W},
    };
    check(cases, std::size(cases));
}

Test(classify, functions_the_config_declares_read_only_are_reads) {
    const std::vector<std::string> functions = {"my_fn", "reports.summary"};
    const Case cases[] = {
        {"SELECT my_fn()", R},
        {"SELECT app.my_fn(1)", R},
        {"SELECT reports.summary()", R},
        {"SELECT summary()", W},
        {"SELECT other.summary()", W},
        {"SELECT \"My_Fn\"()", W},
        {"SELECT my_fn(), nextval('s')", W},
    };
    check(cases, std::size(cases), functions);
}

Test(classify, read_only_transactions_open_a_read_only_block) {
    const Case cases[] = {
        {"BEGIN READ ONLY", B},
        {"begin transaction read only", B},
        {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", B},
        {"START TRANSACTION READ ONLY, DEFERRABLE", B},
        {"BEGIN READ ONLY; SELECT 1; COMMIT", B},
        {"BEGIN READ ONLY; SELECT * FROM t FOR UPDATE; COMMIT", W},
        {"BEGIN READ WRITE, READ ONLY", B},
        {"BEGIN READ ONLY, READ WRITE", W},
    };
    check(cases, std::size(cases));
}

Test(classify, several_statements_take_the_strongest_class) {
    const Case cases[] = {
        {"SELECT 1; SELECT 2", R},      {"SELECT 1; UPDATE t SET x = 1", W},
        {"BEGIN; SELECT 1; COMMIT", W}, {"SELECT 1; COMMIT", R},
        {"SHOW x; SET x = 1", W},
    };
    check(cases, std::size(cases));
}

Test(classify, what_the_parser_rejects_is_unparsable) {
    const Case cases[] = {
        {"SELEC 1", U},
        {"SELECT FROM WHERE", U},
        {"SELECT 1; UPDATE", U},
        {"SELECT 'unterminated", U},
        {"--!pgplex route=replica\nSELECT (", U},
    };
    check(cases, std::size(cases));
}

Test(classify, a_hint_comment_does_not_change_the_class) {
    const Case cases[] = {
        {"--!pgplex route=replica\nSELECT 1", R},
        {"/*!pgplex route=primary */ UPDATE t SET x = 1", W},
    };
    check(cases, std::size(cases));
}

Test(classify, text_after_a_nul_is_not_read) {
    std::string text("SELECT 1", 8);
    text.push_back('\0');
    text.append("; DELETE FROM t");
    cr_assert_eq(classify_uncached(text, {}), R);
}

Test(classifier, the_same_text_is_parsed_once) {
    Classifier classifier;
    cr_assert_eq(classifier.classify("SELECT 1"), R);
    cr_assert_eq(classifier.classify("SELECT 1"), R);
    cr_assert_eq(classifier.parses(), 1u);
    cr_assert_eq(classifier.cached(), 1u);
    cr_assert_eq(classifier.classify("SELECT 2"), R);  // same shape: no parse
    cr_assert_eq(classifier.classify("SELEC 2"), U);
    cr_assert_eq(classifier.classify("SELEC 2"), U);
    cr_assert_eq(classifier.parses(), 2u);
    cr_assert_eq(classifier.cached(), 2u);
}

Test(classifier, texts_that_differ_only_in_literals_are_parsed_once) {
    Classifier classifier;
    for (int aid = 1; aid <= 100; aid++)
        cr_assert_eq(classifier.classify("SELECT abalance FROM pgbench_accounts WHERE aid = " +
                                         std::to_string(aid) + " AND x = 'it''s " +
                                         std::to_string(aid) + "'"),
                     R);
    cr_assert_eq(classifier.parses(), 1u);
    cr_assert_eq(classifier.classify("UPDATE pgbench_accounts SET abalance = 5 WHERE aid = 7"), W);
}

Test(literal_shape, masks_literals_and_keeps_comments_identifiers_and_open_text) {
    auto shape = [](std::string_view text) {
        std::string out;
        pgplex::route::literal_shape(text, out);
        return out;
    };
    cr_assert(shape("select 12, 1.5e3, t1.c2, 'a''b', E'x\\'y'") == "select ?, ?, t1.c2, ?, E?");
    cr_assert(shape("-- it's\nselect \"it's\" /* 'x' */ 3") ==
              "-- it's\nselect \"it's\" /* 'x' */ ?");
    // A literal left open could swallow statements: the text stays as it is.
    cr_assert(shape("select 'open; delete from t") == "select 'open; delete from t");
    cr_assert(shape("select 1 /* open") == "select 1 /* open");
}

Test(classifier, it_uses_the_config_functions) {
    Classifier classifier({"my_fn"});
    cr_assert_eq(classifier.classify("SELECT my_fn()"), R);
    cr_assert_eq(classifier.classify("SELECT other_fn()"), W);
}

Test(classifier, a_full_cache_starts_over_and_stays_bounded) {
    Classifier classifier({}, 4);
    for (int i = 0; i < 10; i++) {
        classifier.classify("SELECT t" + std::to_string(i));
        cr_assert_leq(classifier.cached(), 4u);
    }
    cr_assert_eq(classifier.parses(), 10u);
    cr_assert_eq(classifier.cached(), 2u);  // cleared at the 5th and at the 9th
    classifier.classify("SELECT t9");
    cr_assert_eq(classifier.parses(), 10u);
}

// Session facts: which texts may change what a client carries between transactions.
static bool touches(const char* text) {
    return pgplex::route::facts_uncached(text, {}).touches_session;
}

Test(classifier, plain_reads_and_writes_leave_the_session_alone) {
    cr_assert(!touches("SELECT abalance FROM pgbench_accounts WHERE aid = 7"));
    cr_assert(!touches("UPDATE t SET a = a + 1 WHERE id = 3; INSERT INTO h VALUES (now())"));
    cr_assert(!touches("BEGIN; SET LOCAL work_mem = '8MB'; SELECT 1; COMMIT"));
    cr_assert(!touches("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
    cr_assert(!touches("SELECT nextval('s'), current_setting('search_path'), count(*) FROM t"));
    cr_assert(!touches("CREATE TABLE x (a int); PREPARE p AS SELECT 1; DEALLOCATE p"));
}

Test(classifier, every_form_that_may_change_session_state_is_seen) {
    cr_assert(touches("SET search_path = a"));
    cr_assert(touches("SET TIME ZONE 'UTC'"));
    cr_assert(touches("SET XML OPTION DOCUMENT"));
    cr_assert(touches("SET NAMES 'UTF8'"));
    cr_assert(touches("SET SCHEMA 'a'"));
    cr_assert(touches("SET SEED 0.5"));
    cr_assert(touches("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"));
    cr_assert(touches("SET ROLE bob"));
    cr_assert(touches("RESET ROLE"));
    cr_assert(touches("SET SESSION AUTHORIZATION bob"));
    cr_assert(touches("RESET SESSION AUTHORIZATION"));
    cr_assert(touches("RESET ALL"));
    cr_assert(touches("DISCARD ALL"));
    cr_assert(touches("select 1; SELECT set_config('search_path', 'x', false)"));
    cr_assert(touches("SELECT pg_catalog.set_config('a.b', 'x', false)"));
    cr_assert(touches("DO $$BEGIN PERFORM set_config('work_mem', '7MB', false); END$$"));
    cr_assert(touches("CALL my_procedure()"));
    cr_assert(touches("EXECUTE p(1)"));
    cr_assert(touches("SELECT my_function()"));
    cr_assert(touches("SELECT setseed(0.5)"));
    cr_assert(touches("this is not sql"));
}

Test(classifier, facts_are_cached_with_the_class) {
    Classifier classifier;
    cr_assert(classifier.facts("SELECT set_config('a.b', '1', false)").touches_session);
    cr_assert(classifier.facts("SELECT set_config('a.b', '2', false)").touches_session);
    cr_assert_eq(classifier.parses(), 1u);
    cr_assert(!classifier.facts("SELECT 1").touches_session);
}
