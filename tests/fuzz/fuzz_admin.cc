// Fuzzes the management database's reading of an admin's Query text (admin/show.h): any text
// is answered with whole messages (RowDescription, DataRow..., CommandComplete, or one
// ErrorResponse; EmptyQueryResponse for no command), never a crash or a read outside the text
// (an exactly sized heap copy, so ASan sees any overrun); a text needs_clients says no to is
// answered the same without the client list. The context holds a worker and clients with odd values
// (NUL-free but long and empty strings, a zero wall clock), as SHOW CLIENTS may meet them.
// The same text read as a client's "--!pgplex COMMAND" Query (console.h comment_command)
// gives a command inside the text, with a first word that has no '='.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "pgplex/admin/console.h"
#include "pgplex/admin/show.h"
#include "pgplex/config/config.h"

#define FUZZ_CHECK(condition)      \
    do {                           \
        if (!(condition)) abort(); \
    } while (0)

namespace {

uint32_t read_be32(const uint8_t* at) {
    return uint32_t(at[0]) << 24 | uint32_t(at[1]) << 16 | uint32_t(at[2]) << 8 | at[3];
}

// Walks the answer message by message: every length is in bounds and every type known.
void check_messages(const std::vector<uint8_t>& out) {
    size_t at = 0;
    FUZZ_CHECK(!out.empty());
    while (at < out.size()) {
        FUZZ_CHECK(out.size() - at >= 5);
        uint8_t type = out[at];
        FUZZ_CHECK(std::strchr("TDCEI", type) != nullptr && type != 0);
        uint32_t length = read_be32(out.data() + at + 1);
        FUZZ_CHECK(length >= 4 && out.size() - at - 1 >= length);
        at += 1 + length;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pgplex;
    auto text = std::make_unique<char[]>(size);
    if (size > 0) std::memcpy(text.get(), data, size);
    std::string_view sql(text.get(), size);

    static const config::Config config;
    std::vector<admin::WorkerState> workers(1);
    workers[0].clients = {{"idle", 1}};
    std::vector<admin::ClientRow> clients(2);
    clients[0].user = std::string(300, 'u');
    clients[0].wait_reason = "pool";
    clients[0].wait_since_ms = 5;  // later than now: a wait never shows negative
    clients[1].state = "startup";
    admin::Context context{config, nullptr, 1, &workers, &clients, 0};

    std::vector<uint8_t> out;
    admin::answer(sql, context, out);
    check_messages(out);
    // A text that needs no client list is answered the same without one (the worker then
    // answers at once, gathering nothing).
    if (!admin::needs_clients(sql)) {
        std::vector<uint8_t> alone;
        context.clients = nullptr;
        admin::answer(sql, context, alone);
        FUZZ_CHECK(alone == out);
    }
    std::string_view command;
    bool by_itself = false;
    if (admin::comment_command(sql, command, by_itself)) {
        FUZZ_CHECK(command.data() >= sql.data() &&
                   command.data() + command.size() <= sql.data() + sql.size());
        FUZZ_CHECK(!command.empty() &&
                   command.substr(0, command.find_first_of(" \t\n\r\f\v")).find('=') ==
                       std::string_view::npos);
    }
    return 0;
}
