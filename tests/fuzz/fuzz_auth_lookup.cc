// libFuzzer target for auth_query's results (pool/auth_lookup.h): any DataRow body is either
// read as (user, secret[, valid until]) for the user asked for, or refused with a reason;
// any text either reads as a timestamp or not. Nothing may crash, and a row that reads must
// name the user asked for.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pgplex/pool/auth_lookup.h"

namespace pool = pgplex::pool;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    pool::LookupResult result;
    std::string reason;
    bool read = pool::parse_lookup_row(data, uint32_t(size), "alice", result, reason);
    if (!read && reason.empty()) std::abort();
    if (read && result.found && result.secret.empty()) std::abort();
    // The row must have named "alice" in its first column: the same bytes asked for another
    // user are refused.
    pool::LookupResult other;
    if (read && pool::parse_lookup_row(data, uint32_t(size), "bob", other, reason)) std::abort();
    int64_t seconds = 0;
    pool::parse_timestamp(std::string_view(reinterpret_cast<const char*>(data), size), seconds);
    return 0;
}
