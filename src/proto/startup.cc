// See startup.h. Mirrors ProcessStartupPacket() in PostgreSQL's postmaster.c: the same
// length bounds, the same codes, the same "user is required" rule.
#include "pgplex/proto/startup.h"

#include <cstring>

#include "pgplex/base/limits.h"
#include "pgplex/proto/frame.h"
#include "pgplex/proto/message.h"

namespace pgplex::proto {

uint32_t startup_length(const uint8_t* first_four_bytes) {
    uint32_t length = read_be32(first_four_bytes);
    if (length < 8 || length > limits::startup_packet_bytes_max) return 0;
    return length;
}

namespace {

StartupError parse_parameters(const uint8_t* at, const uint8_t* end, StartupPacket& out,
                              const char*& reason) {
    // name\0value\0 ... \0
    while (at < end && *at != 0) {
        const uint8_t* name_end = static_cast<const uint8_t*>(memchr(at, 0, end - at));
        if (name_end == nullptr || name_end + 1 >= end) break;
        const uint8_t* value = name_end + 1;
        const uint8_t* value_end = static_cast<const uint8_t*>(memchr(value, 0, end - value));
        if (value_end == nullptr) break;
        std::string_view name(reinterpret_cast<const char*>(at), name_end - at);
        std::string_view text(reinterpret_cast<const char*>(value), value_end - value);
        if (name == "user") out.user = text;
        else if (name == "database") out.database = text;
        else if (name == "options") out.options = text;
        else if (name == "replication") out.replication = text;
        else if (name.substr(0, 5) == "_pq_.") out.protocol_options.push_back(name);
        else out.parameters.emplace_back(name, text);
        at = value_end + 1;
    }
    if (at >= end || *at != 0 || at + 1 != end) {
        reason = "invalid startup packet layout: expected terminator as last byte";
        return StartupError::Malformed;
    }
    if (out.user.empty()) {
        reason = "no PostgreSQL user name specified in startup packet";
        return StartupError::Malformed;
    }
    if (out.database.empty()) out.database = out.user;
    return StartupError::None;
}

}  // namespace

StartupError parse_startup(const uint8_t* packet, uint32_t size, StartupPacket& out,
                           const char*& reason) {
    out = StartupPacket{};
    if (size < 8 || size > limits::startup_packet_bytes_max || read_be32(packet) != size) {
        reason = "invalid length of startup packet";
        return StartupError::BadLength;
    }
    uint32_t code = read_be32(packet + 4);
    switch (code) {
        case uint32_t(StartupCode::SSLRequest):
        case uint32_t(StartupCode::GSSENCRequest):
            if (size != 8) {
                reason = "invalid length of startup packet";
                return StartupError::BadLength;
            }
            out.kind = code == uint32_t(StartupCode::SSLRequest) ? StartupKind::SSLRequest
                                                                  : StartupKind::GSSENCRequest;
            return StartupError::None;
        case uint32_t(StartupCode::CancelRequest):
            if (size != limits::cancel_request_bytes) {
                reason = "invalid length of cancel request packet";
                return StartupError::BadLength;
            }
            out.kind = StartupKind::CancelRequest;
            out.cancel_pid = read_be32(packet + 8);
            out.cancel_key = read_be32(packet + 12);
            return StartupError::None;
        default: break;
    }
    out.kind = StartupKind::Startup;
    out.protocol_major = uint16_t(code >> 16);
    out.protocol_minor = uint16_t(code & 0xffff);
    if (out.protocol_major == 0 || out.protocol_major >= 1234) {
        // Majors from 1234 up are request codes (SSLRequest...); none other is known, and
        // a major of 0 is no protocol at all: garbage, not an old or future client.
        reason = "invalid startup packet: unknown protocol version or request code";
        return StartupError::Malformed;
    }
    if (out.protocol_major != 3) {
        reason = "unsupported frontend protocol: pgplex supports 3.0";
        return StartupError::UnsupportedProtocol;
    }
    return parse_parameters(packet + 8, packet + size, out, reason);
}

}  // namespace pgplex::proto
