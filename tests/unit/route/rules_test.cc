// [[rules]] and [[rewrites]]: which statements a rule sends where, for whom, and how
// rewrites change a statement's text.
#include <criterion/criterion.h>

#include "../support.h"

#include <chrono>
#include <memory>
#include <string>

#include "pgplex/route/route.h"

using namespace pgplex;
using namespace pgplex::route;

namespace {

config::Rule rule(const char* pattern, const char* route, uint32_t line = 1) {
    config::Rule out;
    out.line = line;
    out.pattern = pattern;
    out.route = route;
    return out;
}

config::Rewrite rewrite(const char* pattern, const char* replacement, uint32_t line = 1) {
    config::Rewrite out;
    out.line = line;
    out.pattern = pattern;
    out.replacement = replacement;
    return out;
}

std::unique_ptr<Rules> compiled(const config::Config& config) {
    std::string error;
    auto rules = Rules::compile(config, error);
    cr_assert(rules != nullptr, "%s", error.c_str());
    cr_assert(error.empty());
    return rules;
}

const Who app{"app", "appdb", "psql"};

}  // namespace

Test(rules, no_rules_match_nothing) {
    config::Config config;
    auto rules = compiled(config);
    cr_assert(rules->empty());
    cr_assert_not(rules->has_rewrites());
    cr_assert_eq(rules->match("SELECT 1", app).route, Target::None);
    std::string out = "untouched";
    cr_assert_not(rules->rewrite("SELECT 1", app, out));
    assert_text(out, "untouched");
}

Test(rules, the_first_matching_rule_wins) {
    config::Config config;
    config.rules.push_back(rule("(?i)^\\s*select\\b.*\\bfrom\\s+reports\\b", "replica"));
    config.rules.push_back(rule("(?i)reports", "offline"));
    config.rules.push_back(rule("(?i)^select", "standby"));
    auto rules = compiled(config);
    cr_assert_not(rules->empty());
    cr_assert_eq(rules->match("  SELECT * FROM reports WHERE x", app).route, Target::Replica);
    cr_assert_eq(rules->match("DELETE FROM reports", app).route, Target::Offline);
    cr_assert_eq(rules->match("select * from accounts", app).route, Target::Standby);
    cr_assert_eq(rules->match("UPDATE accounts SET x = 1", app).route, Target::None);
    cr_assert_eq(rules->match("", app).route, Target::None);
}

Test(rules, conditions_compare_exactly_and_empty_means_any) {
    config::Config config;
    config::Rule for_user = rule("reports", "offline");
    for_user.user = "analyst";
    config::Rule for_app = rule("reports", "standby");
    for_app.database = "appdb";
    for_app.application_name = "psql";
    config.rules = {for_user, for_app, rule("reports", "replica")};
    auto rules = compiled(config);
    cr_assert_eq(rules->match("reports", Who{"analyst", "x", "y"}).route, Target::Offline);
    cr_assert_eq(rules->match("reports", Who{"Analyst", "x", "y"}).route, Target::Replica);
    cr_assert_eq(rules->match("reports", app).route, Target::Standby);
    cr_assert_eq(rules->match("reports", Who{"app", "appdb", "psql2"}).route, Target::Replica);
    cr_assert_eq(rules->match("reports", Who{"app", "appdb2", "psql"}).route, Target::Replica);
}

Test(rules, a_rule_with_a_node_routes_to_that_node) {
    config::Config config;
    config::Rule to_node = rule("^SELECT", "");
    to_node.node = "127.0.0.1:25434";
    config.rules.push_back(to_node);
    auto rules = compiled(config);
    RuleMatch match = rules->match("SELECT 1", app);
    cr_assert_eq(match.route, Target::Node);
    assert_text(std::string(match.node), "127.0.0.1:25434");
}

Test(rules, a_bad_pattern_names_its_rule_line_and_offset) {
    config::Config config;
    config.rules.push_back(rule("fine", "replica", 10));
    config.rules.push_back(rule("select (unclosed", "replica", 14));
    std::string error;
    cr_assert_null(Rules::compile(config, error));
    assert_text(error,
                "rules[1] (line 14): missing closing parenthesis at offset 16 of the "
                "pattern");

    config::Config rewrites;
    rewrites.rewrites.push_back(rewrite("a{2,1}", "b", 30));
    error.clear();
    cr_assert_null(Rules::compile(rewrites, error));
    assert_text(error,
                "rewrites[0] (line 30): numbers out of order in {} quantifier at offset "
                "5 of the pattern");
}

Test(rules, an_unknown_route_is_an_error) {
    config::Config config;
    config.rules.push_back(rule("x", "master", 7));
    std::string error;
    cr_assert_null(Rules::compile(config, error));
    assert_text(error,
                "rules[0] (line 7): route \"master\" is not primary, replica, standby, "
                "offline or delayed");
}

Test(rules, patterns_match_bytes_not_characters) {
    config::Config config;
    config.rules.push_back(rule("^SELECT '\\xc3\\xa9'$", "replica"));
    config.rules.push_back(rule("\\x00", "offline"));
    auto rules = compiled(config);
    cr_assert_eq(rules->match("SELECT '\xc3\xa9'", app).route, Target::Replica);
    cr_assert_eq(rules->match(std::string_view("a\0b", 3), app).route, Target::Offline);
    cr_assert_eq(rules->match("SELECT '\xff'", app).route, Target::None);  // not UTF-8
}

Test(rules, a_pathological_pattern_gives_up_and_does_not_match) {
    config::Config config;
    config.rules.push_back(rule("^(a+)+$", "replica"));
    config.rules.push_back(rule("^a", "offline"));
    auto rules = compiled(config);
    std::string text(40, 'a');
    text.push_back('b');
    auto start = std::chrono::steady_clock::now();
    cr_assert_eq(rules->match(text, app).route, Target::Offline);
    auto took = std::chrono::steady_clock::now() - start;
    cr_assert_lt(std::chrono::duration_cast<std::chrono::seconds>(took).count(), 5);
    cr_assert_eq(rules->match("aaaa", app).route, Target::Replica);
}

Test(rewrites, every_match_is_replaced_with_groups) {
    config::Config config;
    config.rewrites.push_back(rewrite("(?i)\\bFROM\\s+old_(\\w+)", "FROM new_$1"));
    auto rules = compiled(config);
    cr_assert(rules->has_rewrites());
    std::string out;
    cr_assert(
        rules->rewrite("SELECT * FROM old_a JOIN x ON true, (select 1 from OLD_b) s", app, out));
    assert_text(out, "SELECT * FROM new_a JOIN x ON true, (select 1 FROM new_b) s");
    out = "untouched";
    cr_assert_not(rules->rewrite("SELECT * FROM fresh", app, out));
    assert_text(out, "untouched");
}

Test(rewrites, named_groups_and_sequences_apply_in_order) {
    config::Config config;
    config.rewrites.push_back(rewrite("(?<table>\\bold_table\\b)", "${table}_v2"));
    config.rewrites.push_back(rewrite("old_table_v2", "new_table"));
    config.rewrites.push_back(rewrite("never", "matched"));
    config.rewrites.push_back(rewrite("new_table", "public.new_table"));
    auto rules = compiled(config);
    std::string out;
    cr_assert(rules->rewrite("SELECT * FROM old_table; DELETE FROM old_table", app, out));
    assert_text(out, "SELECT * FROM public.new_table; DELETE FROM public.new_table");
}

Test(rewrites, conditions_choose_which_rewrites_apply) {
    config::Config config;
    config::Rewrite for_analyst = rewrite("accounts", "accounts_archive");
    for_analyst.user = "analyst";
    config.rewrites.push_back(for_analyst);
    auto rules = compiled(config);
    std::string out;
    cr_assert_not(rules->rewrite("SELECT * FROM accounts", app, out));
    cr_assert(rules->rewrite("SELECT * FROM accounts", Who{"analyst", "appdb", ""}, out));
    assert_text(out, "SELECT * FROM accounts_archive");
}

Test(rewrites, a_much_longer_result_is_written_whole) {
    config::Config config;
    config.rewrites.push_back(rewrite("x", "0123456789abcdef0123456789abcdef"));
    auto rules = compiled(config);
    std::string out;
    std::string text(1000, 'x');
    cr_assert(rules->rewrite(text, app, out));
    cr_assert_eq(out.size(), 32'000u);
    cr_assert(rules->rewrite("xx", app, out));
    assert_text(out, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
}

Test(rewrites, a_replacement_naming_a_missing_group_leaves_the_text) {
    config::Config config;
    config.rewrites.push_back(rewrite("a", "$9"));
    config.rewrites.push_back(rewrite("b", "c"));
    auto rules = compiled(config);
    std::string out;
    cr_assert(rules->rewrite("ab", app, out));
    assert_text(out, "ac");
}
