// Fuzzes the SQL lexer pgplex runs on client statements in transaction pooling: SET/RESET
// tracking, PREPARE/DEALLOCATE, DISCARD ALL, LISTEN/UNLISTEN and the detection of session
// state. None may crash or
// read outside the text (an exactly sized heap copy, so ASan sees any overrun), and what
// they return must be consistent: a name found by parse_deallocate is non-empty unless it
// means ALL; a change parsed has a name exactly when it does not reset everything; the sync SQL
// built from the changes round-trips through the parser without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/pool/notify.h"
#include "pgplex/pool/session_state.h"

#define FUZZ_CHECK(condition)      \
    do {                           \
        if (!(condition)) abort(); \
    } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 1 << 16) return 0;
    std::vector<char> copy(data, data + size);
    std::string_view query(copy.data(), copy.size());
    query = query.substr(0, query.find('\0'));  // as the data path cuts a Query's text
    using namespace pgplex::pool;

    std::vector<SetChange> changes;
    if (may_set(query)) changes = parse_set_statements(query);
    std::vector<Setting> prepared;
    for (const SetChange& change : changes) {
        bool all = change.kind == SetKind::ResetAll || change.kind == SetKind::DeallocateAll;
        FUZZ_CHECK(all == change.name.empty());
        apply_prepare_change(prepared, change);
    }
    for (const Setting& step : prepared_sync(prepared, {})) parse_set_statements(step.sql);
    // A reset's follow-up is pgplex's own SELECT: no SET, RESET or PREPARE of its own.
    std::vector<Setting> startup = {{"application_name", {}, std::string(query), {}}};
    FUZZ_CHECK(parse_set_statements(reset_follow_up_sql(startup, changes)).empty());
    // Any text as a setting's value stays one quoted literal: the replay is one
    // SELECT, whatever the value holds.
    auto none = [](const std::string&) -> const std::string* { return nullptr; };
    std::vector<Setting> settings = {{"x.y", {}, std::string(query)}};
    SettingsSync sync = settings_sync(settings, {}, none);
    FUZZ_CHECK(parse_set_statements(sync.sql).empty());
    FUZZ_CHECK(in_sync({}, settings, sync.applied, none));

    std::string name;
    bool all = false;
    if (parse_deallocate(query, name, all)) FUZZ_CHECK(all == name.empty());
    drops_prepared(query);
    may_deallocate(query);

    // LISTEN / UNLISTEN: what is read must encode, decode and replay to the same channels.
    std::vector<ListenChange> listens;
    if (may_listen(query) && parse_listen(query, listens) == ListenQuery::Only) {
        std::vector<ListenChange> decoded;
        std::string_view error;
        FUZZ_CHECK(decode_listen(encode_listen(listens), decoded, error));
        FUZZ_CHECK(decoded.size() == listens.size());
        std::vector<std::string> channels, again;
        apply_listen(channels, listens);
        apply_listen(again, decoded);
        FUZZ_CHECK(channels == again);
        for (const ListenChange& change : listens) listen_sql(change.kind, change.channel);
    }

    uint8_t kinds = detect_session_state(query);
    FUZZ_CHECK((kinds & ~(advisory_lock | hold_cursor | temp_table)) == 0);
    FUZZ_CHECK((kinds == 0) == describe_session_state(kinds).empty());
    return 0;
}
