// auth_query's rows and times (pool/auth_lookup.h): what a lookup's DataRow says about a
// user, read strictly; the messages pgplex sends; the per-worker cache.
#include "pgplex/pool/auth_lookup.h"

#include <optional>
#include <string>
#include <vector>

#include "../support.h"

using pgplex::pool::AuthCache;
using pgplex::pool::lookup_messages;
using pgplex::pool::LookupResult;
using pgplex::pool::parse_lookup_row;
using pgplex::pool::parse_timestamp;

namespace {

// A DataRow body of text columns; nullopt is NULL.
std::string row(const std::vector<std::optional<std::string>>& columns) {
    std::string body;
    body += char(columns.size() >> 8);
    body += char(columns.size());
    for (const auto& column : columns) {
        uint32_t length = column ? uint32_t(column->size()) : 0xffffffffu;
        for (int shift = 24; shift >= 0; shift -= 8) body += char(length >> shift);
        if (column) body += *column;
    }
    return body;
}

bool parse(const std::string& body, const char* user, LookupResult& out, std::string& reason) {
    return parse_lookup_row(reinterpret_cast<const uint8_t*>(body.data()), uint32_t(body.size()),
                            user, out, reason);
}

int64_t seconds(const char* text) {
    int64_t value = 0;
    cr_assert(parse_timestamp(text, value), "refused: %s", text);
    return value;
}

}  // namespace

Test(auth_lookup, a_row_gives_the_secret_and_its_expiry) {
    LookupResult result;
    std::string reason;
    cr_assert(parse(row({"alice", "md5abc", "2026-12-07 09:00:00+00"}), "alice", result, reason));
    cr_assert(result.found);
    assert_text(result.secret, "md5abc");
    cr_assert_eq(result.valid_until_s, 1796634000);
    cr_assert(parse(row({"alice", "pw"}), "alice", result, reason));
    cr_assert(result.found);
    cr_assert_eq(result.valid_until_s, LookupResult::no_expiry);
    cr_assert(parse(row({"alice", "pw", std::nullopt}), "alice", result, reason));
    cr_assert_eq(result.valid_until_s, LookupResult::no_expiry);
}

Test(auth_lookup, no_secret_is_not_found) {
    LookupResult result;
    std::string reason;
    cr_assert(parse(row({"alice", std::nullopt, std::nullopt}), "alice", result, reason));
    cr_assert(!result.found);
    cr_assert(parse(row({"alice", ""}), "alice", result, reason));
    cr_assert(!result.found);
}

Test(auth_lookup, other_shapes_are_refused) {
    LookupResult result;
    std::string reason;
    cr_assert(!parse(row({"alice"}), "alice", result, reason));
    cr_assert(reason.find("2 or 3 columns") != std::string::npos);
    cr_assert(!parse(row({"alice", "pw", "x", "y"}), "alice", result, reason));
    cr_assert(!parse(row({"mallory", "pw"}), "alice", result, reason), "another user's row");
    cr_assert(!parse(row({std::nullopt, "pw"}), "alice", result, reason));
    cr_assert(!parse(row({"alice", "pw", "next tuesday"}), "alice", result, reason));
    std::string cut = row({"alice", "pw"});
    cr_assert(!parse(cut.substr(0, cut.size() - 1), "alice", result, reason), "truncated");
    cr_assert(!parse(cut + "x", "alice", result, reason), "trailing bytes");
    cr_assert(!parse("", "alice", result, reason));
}

Test(auth_lookup, timestamps_as_postgresql_prints_them_in_iso) {
    cr_assert_eq(seconds("1970-01-01 00:00:00+00"), 0);
    cr_assert_eq(seconds("1970-01-01 01:00:00+01"), 0);
    cr_assert_eq(seconds("1969-12-31 19:00:00-05"), 0);
    cr_assert_eq(seconds("1970-01-01 05:30:00.999999+05:30"), 0);
    cr_assert_eq(seconds("2000-02-29 12:00:00+00"), 951825600);
    cr_assert_eq(seconds("infinity"), LookupResult::no_expiry);
    cr_assert_eq(seconds("-infinity"), INT64_MIN);
    cr_assert_lt(seconds("0044-03-15 12:00:00+00 BC"), seconds("0001-01-01 00:00:00+00"));
    cr_assert_gt(seconds("12000-01-01 00:00:00+00"), seconds("9999-12-31 23:59:59+00"));
    int64_t value = 0;
    for (const char* bad : {"", "2026-12-07", "2026-12-07 09:00:00", "2026-13-01 00:00:00+00",
                            "2026-12-07T09:00:00+00", "12/07/2026 09:00:00+00",
                            "2026-12-07 09:00:00+00 AD", "2026-12-07 09:00:00.+00"})
        cr_assert(!parse_timestamp(bad, value), "accepted: %s", bad);
}

Test(auth_lookup, the_user_is_a_bound_parameter) {
    std::vector<uint8_t> bytes = lookup_messages("SELECT * FROM f($1)", "o'neil");
    std::string text(bytes.begin(), bytes.end());
    cr_assert_eq(text[0], 'P');
    cr_assert(text.find("SELECT * FROM f($1)") != std::string::npos);
    cr_assert(text.find("o'neil") != std::string::npos);
    cr_assert(text.find("o''neil") == std::string::npos);
    cr_assert_eq(text[text.size() - 5], 'S', "ends with a Sync");
}

Test(auth_lookup, the_cache_keeps_results_for_their_time) {
    AuthCache cache;
    LookupResult found;
    found.found = true;
    found.secret = "pw";
    cache.put(1, "alice", found, 1000);
    cr_assert_not_null(cache.find(1, "alice", 1500, 1000));
    cr_assert_null(cache.find(1, "alice", 2000, 1000), "expired");
    cr_assert_null(cache.find(2, "alice", 1500, 1000), "another pool's");
    cr_assert_null(cache.find(1, "alic", 1500, 1000));
    for (uint32_t i = 0; i < 20000; ++i) cache.put(1, "user" + std::to_string(i), {}, 1000);
    cr_assert_leq(cache.size(), 10000u);
}
