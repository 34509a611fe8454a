// "--!pgplex" routing hints at the head of a statement, the session intent's values, and
// the SET / RESET pgplex.intent statements pgplex answers itself.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>

#include "pgplex/route/route.h"

using namespace pgplex::route;

namespace {

HintStatus hint_of(const std::string& text, Hint& hint, std::string& error) {
    error.clear();
    return parse_hint(text, hint, error);
}

}  // namespace

Test(hint, a_route_hint_names_the_target_and_keeps_no_lag) {
    Hint hint;
    std::string error;
    cr_assert_eq(hint_of("--!pgplex route=replica\nSELECT 1", hint, error), HintStatus::Ok);
    cr_assert_eq(hint.route, Target::Replica);
    cr_assert(hint.node.empty());
    cr_assert_eq(hint.max_lag_ms, -1);
}

Test(hint, every_target_name_is_read_whatever_its_case) {
    const std::pair<const char*, Target> cases[] = {
        {"primary", Target::Primary}, {"REPLICA", Target::Replica}, {"Standby", Target::Standby},
        {"offline", Target::Offline}, {"delayed", Target::Delayed},
    };
    for (const auto& [name, target] : cases) {
        Target parsed = Target::None;
        cr_assert(parse_target(name, parsed), "%s", name);
        cr_assert_eq(parsed, target, "%s", name);
    }
    Target parsed = Target::None;
    cr_assert_not(parse_target("node", parsed));
    cr_assert_not(parse_target("none", parsed));
    cr_assert_not(parse_target("", parsed));
    cr_assert_str_eq(to_string(Target::Standby), "standby");
}

Test(hint, leading_whitespace_and_several_lines_add_up_with_later_keys_winning) {
    Hint hint;
    std::string error;
    std::string text =
        "  \n\t--!pgplex route=primary max_lag=10s\r\n--!pgplex   route=standby\n"
        "--!pgplex max_lag=250ms\nSELECT 1";
    cr_assert_eq(hint_of(text, hint, error), HintStatus::Ok);
    cr_assert_eq(hint.route, Target::Standby);
    cr_assert_eq(hint.max_lag_ms, 250);
}

Test(hint, max_lag_takes_the_config_durations) {
    const std::pair<const char*, int64_t> cases[] = {
        {"--!pgplex max_lag=500ms", 500},  {"--!pgplex max_lag=10s", 10'000},
        {"--!pgplex max_lag=5m", 300'000}, {"--!pgplex max_lag=2", 2'000},
        {"--!pgplex max_lag=0ms", 0},
    };
    for (const auto& [text, lag_ms] : cases) {
        Hint hint;
        std::string error;
        cr_assert_eq(hint_of(text, hint, error), HintStatus::Ok, "%s", text);
        cr_assert_eq(hint.route, Target::None);
        cr_assert_eq(hint.max_lag_ms, lag_ms, "%s", text);
    }
}

Test(hint, a_node_alone_routes_to_that_node) {
    Hint hint;
    std::string error;
    cr_assert_eq(hint_of("--!pgplex node=127.0.0.1:25433 max_lag=1s\nSELECT 1", hint, error),
                 HintStatus::Ok);
    cr_assert_eq(hint.route, Target::Node);
    assert_text(hint.node, "127.0.0.1:25433");
    cr_assert_eq(hint.max_lag_ms, 1000);
    cr_assert_eq(hint_of("--!pgplex node=[::1]:5432", hint, error), HintStatus::Ok);
    assert_text(hint.node, "[::1]:5432");
}

Test(hint, a_route_given_with_a_node_wins_in_either_order) {
    Hint hint;
    std::string error;
    cr_assert_eq(hint_of("--!pgplex route=replica node=10.0.0.1:5432", hint, error),
                 HintStatus::Ok);
    cr_assert_eq(hint.route, Target::Replica);
    cr_assert(hint.node.empty());
    cr_assert_eq(hint_of("--!pgplex node=10.0.0.1:5432\n--!pgplex route=primary", hint, error),
                 HintStatus::Ok);
    cr_assert_eq(hint.route, Target::Primary);
}

Test(hint, a_block_comment_hint_is_read_too) {
    Hint hint;
    std::string error;
    cr_assert_eq(hint_of("/*!pgplex route=offline\n max_lag=1m */ SELECT 1", hint, error),
                 HintStatus::Ok);
    cr_assert_eq(hint.route, Target::Offline);
    cr_assert_eq(hint.max_lag_ms, 60'000);
    cr_assert_eq(hint_of("/*!pgplex route=delayed*/\n--!pgplex max_lag=3s", hint, error),
                 HintStatus::Ok);
    cr_assert_eq(hint.route, Target::Delayed);
    cr_assert_eq(hint.max_lag_ms, 3000);
}

Test(hint, text_without_a_hint_at_its_head_has_none) {
    const char* texts[] = {
        "SELECT 1",
        "",
        "   ",
        "-- a comment\n--!pgplex route=replica\nSELECT 1",
        "SELECT 1 --!pgplex route=replica",
        "--!pgplexroute=replica\nSELECT 1",
        "--! pgplex route=replica",
        "/* pgplex route=replica */ SELECT 1",
    };
    for (const char* text : texts) {
        Hint hint;
        std::string error;
        cr_assert_eq(hint_of(text, hint, error), HintStatus::None, "%s", text);
        cr_assert_eq(hint.route, Target::None);
        cr_assert(error.empty());
    }
}

Test(hint, a_wrong_key_or_value_is_invalid_and_says_why) {
    const std::pair<const char*, const char*> cases[] = {
        {"--!pgplex route=master",
         "pgplex hint: route \"master\" is not primary, replica, standby, offline or delayed"},
        {"--!pgplex route=replica lag=1s",
         "pgplex hint: unknown key \"lag\" (expected route, node or max_lag)"},
        {"--!pgplex max_lag=fast",
         "pgplex hint: max_lag \"fast\" is not a duration (500ms, 10s, 5m, 1h or whole "
         "seconds)"},
        {"--!pgplex max_lag=-1",
         "pgplex hint: max_lag \"-1\" is not a duration (500ms, 10s, "
         "5m, 1h or whole seconds)"},
        {"--!pgplex node=db1", "pgplex hint: node \"db1\" is not host:port"},
        {"--!pgplex node=db1:0", "pgplex hint: node \"db1:0\" is not host:port"},
        {"--!pgplex node=db1:65536", "pgplex hint: node \"db1:65536\" is not host:port"},
        {"--!pgplex replica", "pgplex hint: \"replica\" is not key=value"},
        {"--!pgplex route=", "pgplex hint: \"route=\" is not key=value"},
        {"--!pgplex route = replica", "pgplex hint: \"route\" is not key=value"},
        {"--!pgplex\nSELECT 1", "pgplex hint: empty; expected route=, node= or max_lag="},
        {"/*!pgplex route=replica", "pgplex hint: /*!pgplex comment without its closing */"},
        {"--!pgplex route=replica\n--!pgplex route=nowhere",
         "pgplex hint: route \"nowhere\" is not primary, replica, standby, offline or "
         "delayed"},
    };
    for (const auto& [text, expected] : cases) {
        Hint hint;
        std::string error;
        cr_assert_eq(hint_of(text, hint, error), HintStatus::Invalid, "%s", text);
        assert_text(error, expected);
    }
}

Test(hint, a_long_wrong_value_is_cut_in_the_error) {
    Hint hint;
    std::string error;
    std::string text = "--!pgplex route=" + std::string(1000, 'x');
    cr_assert_eq(hint_of(text, hint, error), HintStatus::Invalid);
    cr_assert_lt(error.size(), 200u);
    cr_assert(error.find("...\"") != std::string::npos);
}

Test(intent, every_spelling_of_read_only_and_read_write_is_read) {
    const std::pair<const char*, Intent> cases[] = {
        {"read-only", Intent::ReadOnly},
        {"READ_ONLY", Intent::ReadOnly},
        {"readonly", Intent::ReadOnly},
        {"ro", Intent::ReadOnly},
        {"read-write", Intent::ReadWrite},
        {"Read_Write", Intent::ReadWrite},
        {"readwrite", Intent::ReadWrite},
        {"RW", Intent::ReadWrite},
        {"", Intent::None},
        {"DEFAULT", Intent::None},
    };
    for (const auto& [text, expected] : cases) {
        Intent intent = Intent::ReadWrite;
        if (expected == Intent::ReadWrite) intent = Intent::None;
        cr_assert(parse_intent(text, intent), "%s", text);
        cr_assert_eq(intent, expected, "%s", text);
    }
    Intent intent = Intent::None;
    cr_assert_not(parse_intent("read", intent));
    cr_assert_not(parse_intent("read only", intent));
    cr_assert_not(parse_intent(" ro", intent));
    cr_assert_eq(intent, Intent::None);
}

Test(intent, its_names_read_back_as_the_same_intent) {
    for (Intent intent : {Intent::None, Intent::ReadOnly, Intent::ReadWrite}) {
        Intent parsed = intent == Intent::None ? Intent::ReadOnly : Intent::None;
        cr_assert(parse_intent(to_string(intent), parsed));
        cr_assert_eq(parsed, intent);
    }
}

Test(intent, set_and_reset_of_pgplex_intent_are_recognised) {
    const std::pair<const char*, const char*> cases[] = {
        {"SET pgplex.intent = 'read-only'", "read-only"},
        {"set pgplex.intent to read_write;", "read_write"},
        {"SET SESSION pgplex.intent TO 'ro'  ;  ", "ro"},
        {"SET LOCAL pgplex.intent = rw", "rw"},
        {"  SET PGPLEX.INTENT='read-write'", "read-write"},
        {"SET pgplex . intent = read-only", "read-only"},
        {"SET pgplex.intent TO DEFAULT", ""},
        {"SET pgplex.intent = 'it''s'", "it's"},
        {"RESET pgplex.intent", ""},
        {"reset pgplex.intent ;\n", ""},
        {"/* app */ SET pgplex.intent = ro -- why\n", "ro"},
    };
    for (const auto& [text, expected] : cases) {
        std::string value = "unchanged";
        cr_assert(is_intent_set(text, value), "%s", text);
        assert_text(value, expected);
    }
}

Test(intent, other_statements_are_not_intent_sets) {
    const char* texts[] = {
        "SET search_path = public",
        "SET pgplex.other = 1",
        "SET pgplex.intent_x = ro",
        "SETTINGS pgplex.intent = ro",
        "SET pgplex.intent ro",
        "SET pgplex.intent =",
        "SET pgplex.intent = 'ro",
        "SET pgplex.intent = ro; SELECT 1",
        "SET pgplex.intent = ro ro",
        "RESET ALL",
        "RESET pgplex.intent; RESET pgplex.intent",
        "SELECT 'SET pgplex.intent = ro'",
        "",
    };
    for (const char* text : texts) {
        std::string value = "unchanged";
        cr_assert_not(is_intent_set(text, value), "%s", text);
        assert_text(value, "unchanged");
    }
}
