// The untyped packets that open a connection (protocol-message-formats.html):
// StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.
//
// parse_startup() reads a whole packet (length word included). Views in the result point
// into that packet and live as long as it does.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace pgplex::proto {

enum class StartupKind : uint8_t { Startup, SSLRequest, GSSENCRequest, CancelRequest };

struct StartupPacket {
    StartupKind kind = StartupKind::Startup;
    uint16_t protocol_major = 0;
    uint16_t protocol_minor = 0;
    std::string_view user;
    std::string_view database;  // defaults to user, as PostgreSQL does
    std::string_view options;
    std::string_view replication;
    // Every other parameter, in order, names as sent (application_name, client_encoding,
    // DateStyle, ...). "_pq_." protocol options are collected apart.
    std::vector<std::pair<std::string_view, std::string_view>> parameters;
    std::vector<std::string_view> protocol_options;
    uint32_t cancel_pid = 0;
    uint32_t cancel_key = 0;
};

enum class StartupError : uint8_t {
    None,
    BadLength,            // length word out of range for the packet kind
    UnsupportedProtocol,  // a protocol major version other than 3
    Malformed,            // parameters not NUL-terminated pairs, or a missing user
};

// The length word of a startup packet, once 4 bytes are there; checks it is within
// [8, startup_packet_bytes_max]. Returns 0 when the length is out of range.
uint32_t startup_length(const uint8_t* first_four_bytes);

// Parses one whole packet of `size` bytes (size equals its length word).
// On error, reason is a sentence fit for an ErrorResponse.
StartupError parse_startup(const uint8_t* packet, uint32_t size, StartupPacket& out,
                           const char*& reason);

}  // namespace pgplex::proto
