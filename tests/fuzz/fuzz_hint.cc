// Fuzzes what pgplex reads of a routed client's statement before it chooses a node: the
// "--!pgplex" hint, SET / RESET pgplex.intent and its value, and the statement's class from
// libpg_query's parse tree (the JSON scanner behind it sees every shape the parser prints).
// None may crash or read outside the text (an exactly sized heap copy, so ASan sees any
// overrun), and their answers must hold together: a hint read as Ok says something, a node
// is named exactly when the route is Node, an error is given exactly when the hint is
// Invalid; an intent value read from SET parses the same way twice; a class is one of the
// four.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/route/route.h"

#define FUZZ_CHECK(condition)      \
    do {                           \
        if (!(condition)) abort(); \
    } while (0)

namespace {

void check_hint(std::string_view text) {
    using namespace pgplex::route;
    Hint hint;
    std::string error;
    HintStatus status = parse_hint(text, hint, error);
    FUZZ_CHECK((status == HintStatus::Invalid) == !error.empty());
    if (status != HintStatus::Ok) return;
    FUZZ_CHECK(hint.route != Target::None || hint.max_lag_ms >= 0);
    FUZZ_CHECK((hint.route == Target::Node) == !hint.node.empty());
    if (hint.route != Target::None && hint.route != Target::Node) {
        Target again = Target::None;
        FUZZ_CHECK(parse_target(to_string(hint.route), again) && again == hint.route);
    }
}

void check_intent(std::string_view text) {
    using namespace pgplex::route;
    Intent intent = Intent::None;
    if (parse_intent(text, intent)) {
        Intent again = Intent::ReadWrite;
        FUZZ_CHECK(parse_intent(to_string(intent), again) && again == intent);
    }
    std::string value;
    if (is_intent_set(text, value)) {
        FUZZ_CHECK(value.size() <= text.size());
        Intent first = Intent::None, second = Intent::None;
        FUZZ_CHECK(parse_intent(value, first) == parse_intent(value, second));
        FUZZ_CHECK(first == second);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 1 << 16) return 0;
    std::vector<char> copy(data, data + size);
    std::string_view text(copy.data(), copy.size());
    using namespace pgplex::route;

    check_hint(text);
    check_intent(text);

    static const std::vector<std::string> functions = {"my_fn", "app.report"};
    StatementClass value = classify_uncached(text, functions);
    FUZZ_CHECK(value == StatementClass::Read || value == StatementClass::Write ||
               value == StatementClass::ReadOnlyBlock || value == StatementClass::Unparsable);
    // Declaring functions read-only only ever turns a Write into a read.
    StatementClass plain = classify_uncached(text, {});
    FUZZ_CHECK((value == StatementClass::Unparsable) == (plain == StatementClass::Unparsable));
    if (plain == StatementClass::Read) FUZZ_CHECK(value == StatementClass::Read);
    if (value == StatementClass::Write) FUZZ_CHECK(plain == StatementClass::Write);
    return 0;
}
