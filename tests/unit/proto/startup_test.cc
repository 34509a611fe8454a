// Startup-phase packets: what a client asks for in its StartupMessage, and the packets
// PostgreSQL itself refuses (bad lengths, other protocol versions, missing user).
#include <criterion/criterion.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/startup.h"

using namespace std::literals;
using pgplex::proto::parse_startup;
using pgplex::proto::startup_length;
using pgplex::proto::StartupCode;
using pgplex::proto::StartupError;
using pgplex::proto::StartupKind;
using pgplex::proto::StartupPacket;
namespace limits = pgplex::limits;

namespace {

using Bytes = std::vector<uint8_t>;

void append_be32(Bytes& out, uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(value >> shift));
}

// A packet: length word (the real length unless `length` is given), code, then `rest`.
Bytes packet(uint32_t code, std::string_view rest, uint32_t length = 0) {
    Bytes out;
    append_be32(out, length != 0 ? length : uint32_t(8 + rest.size()));
    append_be32(out, code);
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
}

Bytes startup(std::string_view parameters) {
    return packet(uint32_t(StartupCode::Protocol3), parameters);
}

// The packet's views point into `bytes`, which a Parsed keeps alive (a moved vector keeps
// its storage).
struct Parsed {
    Bytes bytes;
    StartupError error = StartupError::None;
    StartupPacket packet;
    const char* reason = nullptr;
};

// Parses from a buffer of exactly the packet's size, so ASan sees any read past it.
Parsed parse(Bytes bytes) {
    Parsed parsed{std::move(bytes)};
    parsed.error = parse_startup(parsed.bytes.data(), uint32_t(parsed.bytes.size()),
                                 parsed.packet, parsed.reason);
    return parsed;
}

Parsed parse_ok(Bytes bytes) {
    Parsed parsed = parse(std::move(bytes));
    cr_assert_eq(parsed.error, StartupError::None, "refused: %s",
                 parsed.reason != nullptr ? parsed.reason : "(no reason)");
    return parsed;
}

}  // namespace

Test(startup, startup_message_gives_user_database_options_and_parameters) {
    Parsed parsed = parse_ok(startup(
        "user\0alice\0database\0sales\0options\0-c work_mem=64MB\0"
        "application_name\0psql\0client_encoding\0UTF8\0DateStyle\0ISO, MDY\0\0"sv));
    const StartupPacket& p = parsed.packet;
    cr_assert_eq(p.kind, StartupKind::Startup);
    cr_assert_eq(p.protocol_major, 3);
    cr_assert_eq(p.protocol_minor, 0);
    cr_assert(p.user == "alice");
    cr_assert(p.database == "sales");
    cr_assert(p.options == "-c work_mem=64MB");
    cr_assert(p.replication.empty());
    cr_assert_eq(p.parameters.size(), 3);
    cr_assert(p.parameters[0].first == "application_name");
    cr_assert(p.parameters[0].second == "psql");
    cr_assert(p.parameters[1].first == "client_encoding");
    cr_assert(p.parameters[1].second == "UTF8");
    cr_assert(p.parameters[2].first == "DateStyle");
    cr_assert(p.parameters[2].second == "ISO, MDY");
    cr_assert(p.protocol_options.empty());
}

Test(startup, database_defaults_to_user) {
    Parsed parsed = parse_ok(startup("user\0bob\0application_name\0app\0\0"sv));
    cr_assert(parsed.packet.user == "bob");
    cr_assert(parsed.packet.database == "bob");
    parsed = parse_ok(startup("database\0\0user\0carol\0\0"sv));
    cr_assert(parsed.packet.database == "carol", "an empty database also means the user's");
}

Test(startup, replication_is_collected_apart) {
    Parsed parsed = parse_ok(startup("user\0rep\0replication\0database\0\0"sv));
    cr_assert(parsed.packet.replication == "database");
    cr_assert(parsed.packet.parameters.empty());
}

Test(startup, newer_protocol_minor_versions_are_accepted) {
    Parsed parsed = parse_ok(packet(3u << 16 | 2, "user\0alice\0\0"sv));
    cr_assert_eq(parsed.packet.protocol_major, 3);
    cr_assert_eq(parsed.packet.protocol_minor, 2);
}

Test(startup, missing_user_is_malformed) {
    Parsed parsed = parse(startup("database\0sales\0\0"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
    cr_assert_str_eq(parsed.reason, "no PostgreSQL user name specified in startup packet");
    parsed = parse(startup("user\0\0\0"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed, "an empty user is no user");
    parsed = parse(startup("\0"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
}

Test(startup, missing_final_terminator_is_malformed) {
    const char* layout = "invalid startup packet layout: expected terminator as last byte";
    Parsed parsed = parse(startup("user\0alice\0"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
    cr_assert_str_eq(parsed.reason, layout);
    // A name with no value, a value with no terminator, no parameters at all.
    parsed = parse(startup("user\0alice\0database\0"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
    parsed = parse(startup("user\0alice"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
    parsed = parse(startup("user"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
    parsed = parse(startup(""sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
    cr_assert_str_eq(parsed.reason, layout);
    // Bytes after the terminator.
    parsed = parse(startup("user\0alice\0\0x"sv));
    cr_assert_eq(parsed.error, StartupError::Malformed);
}

Test(startup, ssl_request_is_exactly_eight_bytes) {
    Parsed parsed = parse_ok(packet(uint32_t(StartupCode::SSLRequest), ""sv));
    cr_assert_eq(parsed.packet.kind, StartupKind::SSLRequest);
    parsed = parse(packet(uint32_t(StartupCode::SSLRequest), "\0\0\0\0"sv));
    cr_assert_eq(parsed.error, StartupError::BadLength);
    cr_assert_str_eq(parsed.reason, "invalid length of startup packet");
}

Test(startup, gssenc_request_is_exactly_eight_bytes) {
    Parsed parsed = parse_ok(packet(uint32_t(StartupCode::GSSENCRequest), ""sv));
    cr_assert_eq(parsed.packet.kind, StartupKind::GSSENCRequest);
    parsed = parse(packet(uint32_t(StartupCode::GSSENCRequest), "\0"sv));
    cr_assert_eq(parsed.error, StartupError::BadLength);
}

Test(startup, cancel_request_is_exactly_sixteen_bytes_and_gives_pid_and_key) {
    Parsed parsed = parse_ok(
        packet(uint32_t(StartupCode::CancelRequest), "\x00\x01\xe2\x40\xde\xad\xbe\xef"sv));
    cr_assert_eq(limits::cancel_request_bytes, 16);
    cr_assert_eq(parsed.packet.kind, StartupKind::CancelRequest);
    cr_assert_eq(parsed.packet.cancel_pid, 123456);
    cr_assert_eq(parsed.packet.cancel_key, 0xdeadbeef);

    parsed = parse(packet(uint32_t(StartupCode::CancelRequest), "\0\0\0\1\0\0\0"sv));
    cr_assert_eq(parsed.error, StartupError::BadLength);
    cr_assert_str_eq(parsed.reason, "invalid length of cancel request packet");
    parsed = parse(packet(uint32_t(StartupCode::CancelRequest), "\0\0\0\1\0\0\0\2\0"sv));
    cr_assert_eq(parsed.error, StartupError::BadLength);
    parsed = parse(packet(uint32_t(StartupCode::CancelRequest), ""sv));
    cr_assert_eq(parsed.error, StartupError::BadLength);
}

Test(startup, protocol_versions_other_than_3_are_unsupported) {
    for (uint32_t code : {2u << 16, 4u << 16, 1u << 16}) {
        Parsed parsed = parse(packet(code, "user\0alice\0\0"sv));
        cr_assert_eq(parsed.error, StartupError::UnsupportedProtocol, "code %u", code);
        cr_assert_str_eq(parsed.reason, "unsupported frontend protocol: pgplex supports 3.0");
    }
}

Test(startup, unknown_request_codes_and_a_zero_protocol_are_malformed) {
    for (uint32_t code : {0u, 1234u << 16 | 5681, 0xdeadbeefu}) {
        Parsed parsed = parse(packet(code, "user\0alice\0\0"sv));
        cr_assert_eq(parsed.error, StartupError::Malformed, "code %u", code);
        cr_assert_str_eq(parsed.reason,
                         "invalid startup packet: unknown protocol version or request code");
    }
}

Test(startup, protocol_options_are_collected_apart) {
    Parsed parsed = parse_ok(
        startup("user\0alice\0_pq_.compression\0on\0_pq_.other\0\0TimeZone\0UTC\0\0"sv));
    const StartupPacket& p = parsed.packet;
    cr_assert_eq(p.protocol_options.size(), 2);
    cr_assert(p.protocol_options[0] == "_pq_.compression");
    cr_assert(p.protocol_options[1] == "_pq_.other");
    cr_assert_eq(p.parameters.size(), 1);
    cr_assert(p.parameters[0].first == "TimeZone");
}

Test(startup, length_word_disagreeing_with_the_size_is_a_bad_length) {
    Bytes bytes = startup("user\0alice\0\0"sv);
    bytes[3] += 1;
    Parsed parsed = parse(bytes);
    cr_assert_eq(parsed.error, StartupError::BadLength);
    cr_assert_str_eq(parsed.reason, "invalid length of startup packet");
    bytes[3] -= 2;
    cr_assert_eq(parse(bytes).error, StartupError::BadLength);

    Bytes tiny = {0, 0, 0, 4, 0, 0, 0, 0};
    cr_assert_eq(parse(tiny).error, StartupError::BadLength);
    Bytes short_packet = {0, 0, 0, 7, 0, 3, 0};
    cr_assert_eq(parse(short_packet).error, StartupError::BadLength);
}

Test(startup, startup_length_bounds_the_length_word) {
    auto length_of = [](uint32_t length) {
        Bytes word;
        append_be32(word, length);
        return startup_length(word.data());
    };
    cr_assert_eq(length_of(8), 8);
    cr_assert_eq(length_of(16), 16);
    cr_assert_eq(length_of(limits::startup_packet_bytes_max), 10000);
    cr_assert_eq(length_of(limits::startup_packet_bytes_max + 1), 0);
    cr_assert_eq(length_of(0x7fffffff), 0);
    cr_assert_eq(length_of(0xffffffff), 0);
    cr_assert_eq(length_of(7), 0);
    cr_assert_eq(length_of(0), 0);
}

Test(startup, packet_over_the_limit_is_a_bad_length) {
    std::string parameters = "user\0alice\0application_name\0"s;
    parameters.append(limits::startup_packet_bytes_max, 'a');
    parameters.append("\0\0"sv);
    Parsed parsed = parse(startup(parameters));
    cr_assert_eq(parsed.error, StartupError::BadLength);
}

Test(startup, a_failed_parse_leaves_no_stale_fields) {
    StartupPacket out;
    const char* reason = nullptr;
    Bytes good = startup("user\0alice\0_pq_.x\0y\0a\0b\0\0"sv);
    cr_assert_eq(parse_startup(good.data(), uint32_t(good.size()), out, reason),
                 StartupError::None);
    Bytes ssl = packet(uint32_t(StartupCode::SSLRequest), ""sv);
    cr_assert_eq(parse_startup(ssl.data(), uint32_t(ssl.size()), out, reason),
                 StartupError::None);
    cr_assert(out.user.empty());
    cr_assert(out.parameters.empty());
    cr_assert(out.protocol_options.empty());
}
