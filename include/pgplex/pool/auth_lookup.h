// auth_query (PgBouncer's name): the secret of a user the auth file does not list, read from
// the server by pgplex's own query, run as auth_user over a pool of its own.
//
// The query's first row gives (user name, secret [, valid until]). A NULL secret, no row,
// or more than one row means the user cannot log in; the exchange with the client still
// runs, against a random secret, so a stranger learns nothing (PostgreSQL does the same).
// The lookup connection never carries a client's startup parameters (CVE-2025-12819): its
// pool is its own, with DateStyle ISO and TimeZone UTC fixed so a valid-until time reads
// one way. Results are kept per worker for auth_cache_ttl.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pgplex/base/clock.h"

namespace pgplex::pool {

// What the lookup found for one user.
struct LookupResult {
    bool found = false;     // a row named the user with a non-NULL secret
    std::string secret;     // plain, "md5..." or a SCRAM secret
    int64_t valid_until_s;  // seconds since the epoch; no_expiry when none
    static constexpr int64_t no_expiry = INT64_MAX;
    LookupResult() : valid_until_s(no_expiry) {}
};

// Reads one DataRow body of the lookup (text format) for `user`. False when the row is not
// (name, secret[, valid until]) with the name equal to `user` and a readable time: the
// caller refuses the login and logs `reason`. A NULL secret is a readable row, not found.
bool parse_lookup_row(const uint8_t* body, uint32_t size, std::string_view user, LookupResult& out,
                      std::string& reason);

// A timestamptz as PostgreSQL prints it with DateStyle ISO ("2026-12-07 09:00:00.5+00",
// any offset; "infinity", "-infinity"), as seconds since the epoch (rounded down).
bool parse_timestamp(std::string_view text, int64_t& seconds);

// Parse (unnamed statement), Bind (the user as its one text parameter), Execute, Sync.
std::vector<uint8_t> lookup_messages(std::string_view query, std::string_view user);

// Lookups of one worker, by pool and user, kept for a time.
class AuthCache {
  public:
    // The result if kept and younger than ttl_ms.
    const LookupResult* find(uint32_t pool, std::string_view user, base::Milliseconds now,
                             int64_t ttl_ms) const;
    void put(uint32_t pool, std::string_view user, LookupResult result, base::Milliseconds now);
    size_t size() const { return entries_.size(); }

  private:
    struct Entry {
        LookupResult result;
        base::Milliseconds at = 0;
    };
    static std::string key(uint32_t pool, std::string_view user);
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace pgplex::pool
