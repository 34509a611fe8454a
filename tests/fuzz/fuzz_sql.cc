// Fuzzes the SQL lexer pgplex runs on client statements in transaction pooling: SET/RESET
// tracking, DEALLOCATE, DISCARD ALL and the detection of session state. None may crash or
// read outside the text (an exactly sized heap copy, so ASan sees any overrun), and what
// they return must be consistent: a name found by parse_deallocate is non-empty unless it
// means ALL; every change parsed has a name unless it resets everything; the sync SQL
// built from the changes round-trips through the parser without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/pool/session_state.h"

#define FUZZ_CHECK(condition)      \
    do {                           \
        if (!(condition)) abort(); \
    } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 1 << 16) return 0;
    std::vector<char> copy(data, data + size);
    std::string_view query(copy.data(), copy.size());
    using namespace pgplex::pool;

    std::vector<SetChange> changes;
    if (may_set(query)) changes = parse_set_statements(query);
    std::vector<Setting> settings;
    for (const SetChange& change : changes) {
        FUZZ_CHECK(change.kind == SetKind::ResetAll || !change.name.empty());
        apply_change(settings, change);
    }
    std::string sync =
        sync_sql(settings, {}, [](const std::string&) -> const std::string* { return nullptr; });
    parse_set_statements(sync);

    std::string name;
    bool all = false;
    if (parse_deallocate(query, name, all)) FUZZ_CHECK(all == name.empty());
    drops_prepared(query);
    may_deallocate(query);

    uint8_t kinds = detect_session_state(query);
    FUZZ_CHECK((kinds & ~(advisory_lock | hold_cursor | temp_table)) == 0);
    FUZZ_CHECK((kinds == 0) == describe_session_state(kinds).empty());
    return 0;
}
