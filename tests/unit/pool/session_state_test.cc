// Reading SET and RESET from a client's queries, and the SQL that brings a server to the
// client's settings.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>

#include "pgplex/pool/session_state.h"

using namespace pgplex::pool;

namespace {

const std::string* none(const std::string&) {
    return nullptr;
}

}  // namespace

Test(session_state, a_plain_set_is_kept_with_its_statement) {
    auto changes = parse_set_statements("SET search_path TO app, public");
    cr_assert_eq(changes.size(), 1u);
    cr_assert_eq(changes[0].kind, SetKind::Set);
    cr_assert_str_eq(changes[0].name.c_str(), "search_path");
    cr_assert_str_eq(changes[0].sql.c_str(), "SET search_path TO app, public");
}

Test(session_state, set_local_transaction_and_constraints_are_not_session_state) {
    cr_assert(parse_set_statements("SET LOCAL statement_timeout = 5").empty());
    cr_assert(parse_set_statements("set transaction isolation level serializable").empty());
    cr_assert(parse_set_statements("SET CONSTRAINTS ALL DEFERRED").empty());
}

Test(session_state, time_zone_session_and_default_forms_are_understood) {
    auto changes = parse_set_statements(
        "SET TIME ZONE 'UTC'; set session statement_timeout = '5s'; SET work_mem TO DEFAULT;"
        "SET SESSION AUTHORIZATION alice; RESET TIME ZONE");
    cr_assert_eq(changes.size(), 5u);
    cr_assert_str_eq(changes[0].name.c_str(), "timezone");
    cr_assert_str_eq(changes[1].name.c_str(), "statement_timeout");
    cr_assert_eq(changes[1].kind, SetKind::Set);
    cr_assert_eq(changes[2].kind, SetKind::Reset);
    cr_assert_str_eq(changes[2].name.c_str(), "work_mem");
    cr_assert_str_eq(changes[3].name.c_str(), "session authorization");
    cr_assert_eq(changes[4].kind, SetKind::Reset);
    cr_assert_str_eq(changes[4].name.c_str(), "timezone");
}

Test(session_state, semicolons_in_quotes_and_comments_do_not_split_statements) {
    auto changes = parse_set_statements(
        "SELECT 'a;SET x.y = 1' /* ; SET a.b = 2 */; SELECT $q$;SET c.d = 3$q$; -- SET e.f = 4\n"
        "SET app.name = 'x;y'");
    cr_assert_eq(changes.size(), 1u);
    cr_assert_str_eq(changes[0].name.c_str(), "app.name");
    cr_assert_str_eq(changes[0].sql.c_str(), "SET app.name = 'x;y'");
}

Test(session_state, sync_sets_what_the_server_lacks_and_resets_what_the_client_lacks) {
    std::vector<Setting> client = {{"search_path", {}, "a"}, {"timezone", {}, "UTC"}};
    std::vector<Setting> server = {{"search_path", {}, "a"}, {"statement_timeout", {}, "5s"}};
    SettingsSync sync = settings_sync(client, server, none);
    assert_text(sync.sql,
                "RESET \"statement_timeout\";SELECT pg_catalog.set_config(n, v, false) FROM "
                "(VALUES (E'timezone',E'UTC')) AS s(n, v);");
    cr_assert_eq(sync.applied.size(), 2u);
    cr_assert(!in_sync({}, client, server, none));
    cr_assert(in_sync({}, client, client, none));
    assert_text(settings_sync(client, client, none).sql, "");
}

Test(session_state, values_are_quoted_whatever_they_hold) {
    std::vector<Setting> client = {{"search_path", {}, "\"my schema\", 'x'\\y"}};
    assert_text(settings_sync(client, {}, none).sql,
                "SELECT pg_catalog.set_config(n, v, false) FROM (VALUES "
                "(E'search_path',E'\"my schema\", ''x''\\\\y')) AS s(n, v);");
}

Test(session_state, role_goes_after_authorization_which_goes_after_the_settings) {
    std::vector<Setting> client = {
        {"role", {}, "reader"}, {"session_authorization", {}, "bob"}, {"work_mem", {}, "8MB"}};
    assert_text(settings_sync(client, {}, none).sql,
                "SELECT pg_catalog.set_config(n, v, false) FROM (VALUES "
                "(E'work_mem',E'8MB')) AS s(n, v);SET SESSION AUTHORIZATION E'bob';"
                "SET ROLE E'reader';");
    // Back to the login user first (the authorization is reset, and with it the role), then
    // the settings, as that user.
    std::vector<Setting> server = client;
    assert_text(settings_sync({}, server, none).sql,
                "RESET SESSION AUTHORIZATION;RESET \"work_mem\";");
    // A role alone, then none.
    std::vector<Setting> role = {{"role", {}, "reader"}};
    assert_text(settings_sync({}, role, none).sql, "RESET ROLE;");
}

Test(session_state, the_checked_rows_leave_out_the_servers_own_defaults) {
    std::vector<Setting> rows;
    add_checked(rows, "role", "none", "app");
    add_checked(rows, "session_authorization", "app", "app");
    add_checked(rows, "search_path", "x", "app");
    add_checked(rows, "session_authorization", "bob", "app");
    cr_assert_eq(rows.size(), 2u);
    assert_text(rows[0].name, "search_path");
    assert_text(rows[1].value, "bob");
}

Test(session_state, startup_values_stand_unless_the_session_set_its_own) {
    std::vector<Setting> startup = {{"datestyle", {}, "ISO, DMY"},
                                    {"application_name", {}, "psql"}};
    std::vector<Setting> session = {{"datestyle", {}, "German, DMY"}};
    std::vector<Setting> wanted = effective(startup, session);
    cr_assert_eq(wanted.size(), 2u);
    assert_text(*value_of(wanted, "datestyle"), "German, DMY");
    assert_text(*value_of(wanted, "application_name"), "psql");
}

Test(session_state, a_startup_parameter_the_server_reports_at_that_value_needs_no_set) {
    std::vector<Setting> startup = {{"client_encoding", {}, "UTF8"}};
    std::string utf8 = "UTF8";
    auto reports_utf8 = [&](const std::string& name) -> const std::string* {
        return name == "client_encoding" ? &utf8 : nullptr;
    };
    cr_assert(in_sync(startup, {}, {}, reports_utf8));
    assert_text(settings_sync(startup, {}, reports_utf8).sql, "");
    cr_assert(settings_sync(startup, {}, reports_utf8).applied.empty());
    cr_assert(!in_sync(startup, {}, {}, none));
    assert_text(settings_sync(startup, {}, none).sql,
                "SELECT pg_catalog.set_config(n, v, false) FROM (VALUES "
                "(E'client_encoding',E'UTF8')) AS s(n, v);");
}

Test(session_state, may_set_is_a_cheap_superset) {
    cr_assert(may_set("SELECT 1; set x.y = 1"));
    cr_assert(may_set("RESET ALL"));
    cr_assert(may_set("discard all"));
    cr_assert_not(may_set("SELECT abalance FROM pgbench_accounts WHERE aid = 1"));
}

Test(session_state, statements_that_create_session_state_are_told_apart) {
    using pgplex::pool::detect_session_state;
    cr_assert_eq(detect_session_state("SELECT pg_advisory_lock(1)"), pgplex::pool::advisory_lock);
    cr_assert_eq(detect_session_state("select PG_TRY_ADVISORY_LOCK_SHARED(1, 2)"),
                 pgplex::pool::advisory_lock);
    cr_assert_eq(detect_session_state("SELECT pg_advisory_xact_lock(1)"), 0);
    cr_assert_eq(detect_session_state("CREATE TEMP TABLE t (x int)"), pgplex::pool::temp_table);
    cr_assert_eq(detect_session_state("create global temporary table t (x int)"),
                 pgplex::pool::temp_table);
    cr_assert_eq(detect_session_state("SELECT 1 AS a INTO TEMP t2"), pgplex::pool::temp_table);
    cr_assert_eq(detect_session_state("CREATE TABLE temperature (x int)"), 0);
    cr_assert_eq(detect_session_state("SELECT temp FROM readings"), 0);
    cr_assert_eq(detect_session_state("DECLARE c CURSOR WITH\n  HOLD FOR SELECT 1"),
                 pgplex::pool::hold_cursor);
    cr_assert_eq(detect_session_state("DECLARE c CURSOR FOR SELECT 'with hold'"), 0);
    cr_assert_eq(detect_session_state("BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; "
                                      "SELECT pg_advisory_lock(2); COMMIT"),
                 pgplex::pool::hold_cursor | pgplex::pool::advisory_lock);
    assert_text(pgplex::pool::describe_session_state(pgplex::pool::temp_table |
                                                     pgplex::pool::advisory_lock),
                "session advisory locks, temporary tables");
}

Test(session_state, sql_prepare_and_deallocate_are_tracked_and_replayed_as_a_difference) {
    using namespace pgplex::pool;
    std::vector<Setting> client;
    for (const SetChange& change : parse_set_statements(
             "PREPARE q (int) AS SELECT $1; prepare \"Two\" AS SELECT 2; PREPARE q AS SELECT 9"))
        apply_prepare_change(client, change);
    cr_assert_eq(client.size(), 2);
    assert_text(client[0].name, "q");
    assert_text(client[0].sql, "PREPARE q (int) AS SELECT $1");  // the first q stays
    assert_text(client[1].name, "Two");
    std::vector<Setting> server = {{"q", "PREPARE q AS SELECT 'other'", {}},
                                   {"gone", "PREPARE gone AS SELECT 0", {}}};
    std::vector<Setting> statements = prepared_sync(client, server);
    cr_assert_eq(statements.size(), 4u);
    assert_text(statements[0].sql, "DEALLOCATE \"q\"");
    assert_text(statements[1].sql, "DEALLOCATE \"gone\"");
    assert_text(statements[2].sql, "PREPARE q (int) AS SELECT $1");
    assert_text(statements[3].sql, "prepare \"Two\" AS SELECT 2");
    cr_assert(prepared_sync(client, client).empty());
    for (const SetChange& change : parse_set_statements("DEALLOCATE PREPARE q"))
        apply_prepare_change(client, change);
    cr_assert_eq(client.size(), 1);
    for (const SetChange& change : parse_set_statements("DISCARD ALL"))
        apply_prepare_change(client, change);
    cr_assert(client.empty());
}

Test(session_state, a_session_value_over_a_different_startup_one_is_never_left_to_the_default) {
    std::vector<Setting> startup = {{"application_name", {}, "start"}};
    std::vector<Setting> cleared = {{"application_name", {}, ""}};
    std::vector<Setting> same = {{"application_name", {}, "start"}};
    cr_assert(!default_may_stand(startup, cleared, "application_name"));
    cr_assert(default_may_stand(startup, same, "application_name"));
    cr_assert(default_may_stand({}, cleared, "application_name"));
    cr_assert(default_may_stand(startup, {}, "application_name"));
    cr_assert(default_may_stand(startup, cleared, "work_mem"));
}

Test(session_state, a_prepare_replays_in_a_block_under_the_settings_it_was_prepared_under) {
    auto context = std::make_shared<const std::vector<Setting>>(
        std::vector<Setting>{{"search_path", {}, "s", {}}, {"datestyle", {}, "ISO, DMY", {}}});
    Setting prepare = {"p1", "PREPARE p1 AS SELECT * FROM t", {}, context};
    std::vector<Setting> server = {
        {"search_path", {}, "pg_catalog", {}}, {"work_mem", {}, "5MB", {}}, {"role", {}, "r3", {}}};
    std::vector<std::string> queries = prepare_in_context(prepare, server);
    cr_assert_eq(queries.size(), 3u);
    assert_text(queries[0],
                "BEGIN;SET LOCAL ROLE NONE;SET LOCAL \"work_mem\" TO DEFAULT;"
                "SELECT pg_catalog.set_config(n, v, true) FROM (VALUES (E'search_path',E's'),"
                "(E'datestyle',E'ISO, DMY')) AS s(n, v);");
    assert_text(queries[1], "PREPARE p1 AS SELECT * FROM t");  // alone: its own text
    assert_text(queries[2], "COMMIT");
}

Test(session_state, the_same_prepare_under_other_settings_is_another_statement) {
    auto here = std::make_shared<const std::vector<Setting>>(
        std::vector<Setting>{{"search_path", {}, "a", {}}});
    auto there = std::make_shared<const std::vector<Setting>>(
        std::vector<Setting>{{"search_path", {}, "b", {}}});
    auto also_here = std::make_shared<const std::vector<Setting>>(*here);
    std::vector<Setting> client = {{"p", "PREPARE p AS SELECT * FROM t", {}, here}};
    std::vector<Setting> server = {{"p", "PREPARE p AS SELECT * FROM t", {}, there}};
    std::vector<Setting> steps = prepared_sync(client, server);
    cr_assert_eq(steps.size(), 2u);
    assert_text(steps[0].sql, "DEALLOCATE \"p\"");
    cr_assert(steps[1].context == here);
    server[0].context = also_here;
    cr_assert(prepared_sync(client, server).empty());
}

Test(session_state, settings_change_as_the_login_user_then_the_role_comes_back) {
    std::vector<Setting> server = {{"role", {}, "r1"}};
    std::vector<Setting> client = {{"work_mem", {}, "5MB"}, {"role", {}, "r1"}};
    assert_text(settings_sync(client, server, none).sql,
                "RESET ROLE;SELECT pg_catalog.set_config(n, v, false) FROM (VALUES "
                "(E'work_mem',E'5MB')) AS s(n, v);SET ROLE E'r1';");
    assert_text(settings_sync({{"role", {}, "r2"}}, server, none).sql, "SET ROLE E'r2';");
}

Test(session_state, a_reset_of_a_startup_parameter_is_followed_by_its_startup_value) {
    std::vector<Setting> startup = {{"application_name", {}, "start", {}},
                                    {"work_mem", {}, "6MB", {}}};
    assert_text(reset_follow_up_sql(startup, parse_set_statements("SET search_path = x")), "");
    std::string sql =
        reset_follow_up_sql(startup, parse_set_statements("RESET work_mem; SELECT 1"));
    cr_assert(sql.find("(E'work_mem',E'6MB')") != std::string::npos);
    cr_assert(sql.find("set_config(p.name, s.v, false)") != std::string::npos);
    cr_assert(sql.find("application_name") == std::string::npos);
    // SET LOCAL ... TO DEFAULT: the startup value for the transaction only.
    sql =
        reset_follow_up_sql(startup, parse_set_statements("SET LOCAL application_name TO DEFAULT"));
    cr_assert(sql.find("set_config(p.name, s.v, true)") != std::string::npos);
    cr_assert(sql.find("(E'application_name',E'start')") != std::string::npos);
    cr_assert(sql.find("false") == std::string::npos);
    assert_text(reset_follow_up_sql(startup, parse_set_statements("SET LOCAL work_mem = '1MB'")),
                "");
}
