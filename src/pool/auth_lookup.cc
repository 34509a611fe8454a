// auth_query's row, its time format, its messages and its per-worker cache (auth_lookup.h).
#include "pgplex/pool/auth_lookup.h"

#include "pgplex/base/limits.h"
#include "pgplex/proto/frame.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/writer.h"

namespace pgplex::pool {

namespace {

// Digits at `at`: at least `min`, at most `max` of them; false otherwise.
bool digits(std::string_view text, size_t& at, size_t min, size_t max, int64_t& value) {
    size_t start = at;
    value = 0;
    while (at < text.size() && at - start < max && text[at] >= '0' && text[at] <= '9')
        value = value * 10 + (text[at++] - '0');
    return at - start >= min;
}

bool expect(std::string_view text, size_t& at, char c) {
    if (at >= text.size() || text[at] != c) return false;
    ++at;
    return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t days_from_civil(int64_t year, int64_t month, int64_t day) {
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

// "+HH", "+HH:MM" or "+HH:MM:SS" (or "-"), as seconds east of UTC.
bool parse_offset(std::string_view text, size_t& at, int64_t& offset) {
    if (at >= text.size() || (text[at] != '+' && text[at] != '-')) return false;
    int64_t sign = text[at++] == '-' ? -1 : 1;
    int64_t hours = 0, minutes = 0, seconds = 0;
    if (!digits(text, at, 2, 2, hours)) return false;
    if (expect(text, at, ':')) {
        if (!digits(text, at, 2, 2, minutes)) return false;
        if (expect(text, at, ':') && !digits(text, at, 2, 2, seconds)) return false;
    }
    offset = sign * (hours * 3600 + minutes * 60 + seconds);
    return true;
}

// One text column of a DataRow at `at`: null, or its bytes. False past the end.
bool column(const uint8_t* body, uint32_t size, uint32_t& at, bool& null, std::string_view& out) {
    if (size - at < 4) return false;
    int32_t length = int32_t(proto::read_be32(body + at));
    at += 4;
    null = length < 0;
    if (null) return length == -1;
    if (uint32_t(length) > size - at) return false;
    out = std::string_view(reinterpret_cast<const char*>(body + at), uint32_t(length));
    at += uint32_t(length);
    return true;
}

}  // namespace

bool parse_timestamp(std::string_view text, int64_t& seconds) {
    if (text == "infinity") {
        seconds = LookupResult::no_expiry;
        return true;
    }
    if (text == "-infinity") {
        seconds = INT64_MIN;
        return true;
    }
    size_t at = 0;
    int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, fraction = 0;
    bool ok =
        digits(text, at, 4, 7, year) && expect(text, at, '-') && digits(text, at, 2, 2, month) &&
        expect(text, at, '-') && digits(text, at, 2, 2, day) && expect(text, at, ' ') &&
        digits(text, at, 2, 2, hour) && expect(text, at, ':') && digits(text, at, 2, 2, minute) &&
        expect(text, at, ':') && digits(text, at, 2, 2, second);
    if (!ok || month < 1 || month > 12 || day < 1 || day > 31 || hour > 24 || minute > 59 ||
        second > 60)
        return false;
    if (expect(text, at, '.') && !digits(text, at, 1, 6, fraction)) return false;
    int64_t offset = 0;
    if (!parse_offset(text, at, offset)) return false;
    bool bc = text.substr(at) == " BC";
    if (!bc && at != text.size()) return false;
    if (bc) year = 1 - year;  // 1 BC is year 0
    seconds =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    return true;
}

bool parse_lookup_row(const uint8_t* body, uint32_t size, std::string_view user, LookupResult& out,
                      std::string& reason) {
    out = LookupResult{};
    uint16_t columns = size >= 2 ? proto::read_be16(body) : 0;
    if (columns != 2 && columns != 3) {
        reason = "auth_query must return 2 or 3 columns (user name, secret[, valid until])";
        return false;
    }
    uint32_t at = 2;
    bool null[3] = {};
    std::string_view text[3];
    for (uint16_t i = 0; i < columns; ++i) {
        if (!column(body, size, at, null[i], text[i])) {
            reason = "auth_query returned a malformed row";
            return false;
        }
    }
    if (at != size) {
        reason = "auth_query returned a malformed row";
        return false;
    }
    if (null[0] || text[0] != user) {
        reason = "auth_query returned a row for another user than the one asked for";
        return false;
    }
    if (columns == 3 && !null[2] && !parse_timestamp(text[2], out.valid_until_s)) {
        reason = "auth_query's third column is not a timestamp pgplex can read";
        return false;
    }
    if (null[1] || text[1].empty() || text[1].size() > limits::password_bytes_max) return true;
    out.found = true;
    out.secret = std::string(text[1]);
    return true;
}

std::vector<uint8_t> lookup_messages(std::string_view query, std::string_view user) {
    std::vector<uint8_t> bytes(query.size() + user.size() + 64);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    writer.begin(proto::FrontendMessage::Parse);
    writer.cstring("");
    writer.cstring(query);
    writer.int16(0);  // parameter types: the server infers them
    writer.end();
    writer.begin(proto::FrontendMessage::Bind);
    writer.cstring("");
    writer.cstring("");
    writer.int16(0);  // parameters are text
    writer.int16(1);
    writer.int32(uint32_t(user.size()));
    writer.bytes(user.data(), uint32_t(user.size()));
    writer.int16(0);  // results are text
    writer.end();
    writer.begin(proto::FrontendMessage::Execute);
    writer.cstring("");
    writer.int32(0);
    writer.end();
    writer.begin(proto::FrontendMessage::Sync);
    writer.end();
    PGPLEX_ASSERT(writer.ok());
    bytes.resize(writer.size());
    return bytes;
}

std::string AuthCache::key(uint32_t pool, std::string_view user) {
    std::string out = std::to_string(pool);
    out += '\0';
    out += user;
    return out;
}

const LookupResult* AuthCache::find(uint32_t pool, std::string_view user, base::Milliseconds now,
                                    int64_t ttl_ms) const {
    auto found = entries_.find(key(pool, user));
    if (found == entries_.end() || now - found->second.at >= ttl_ms) return nullptr;
    return &found->second.result;
}

void AuthCache::put(uint32_t pool, std::string_view user, LookupResult result,
                    base::Milliseconds now) {
    // A flood of made-up user names must not grow it without bound: start over.
    if (entries_.size() >= limits::auth_cache_entries_max) entries_.clear();
    entries_[key(pool, user)] = Entry{std::move(result), now};
}

}  // namespace pgplex::pool
