// How pgplex speaks TLS to one server: PgBouncer's server_tls_* settings, libpq's
// channel_binding (server_channel_binding) and sslnegotiation (server_tls_negotiation).
//
// [pgplex] gives the defaults; a [databases] alias, a [clusters.NAME] table and a node's
// node_options table may each set any of them again, the most specific winning setting by
// setting (node over cluster over [pgplex]; alias over [pgplex]). Every distinct resolved
// set is built into its own tls::Context once, at load, so a bad file is refused with its
// line and a reload keeps the old contexts until the new ones are whole.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "pgplex/tls/session.h"

namespace pgplex::config {

struct Config;

// libpq's channel_binding, toward servers.
enum class ChannelBinding : uint8_t {
    Disable,  // never SCRAM-SHA-256-PLUS
    Prefer,   // SCRAM-SHA-256-PLUS when the connection is TLS and the server offers it
    Require,  // no login unless it went through SCRAM-SHA-256-PLUS
};

// libpq's sslnegotiation (PostgreSQL 17), toward servers.
enum class TlsNegotiation : uint8_t {
    Postgres,  // an SSLRequest first; TLS after the server's 'S'
    Direct,    // the TLS handshake at once, with ALPN "postgresql"
};

const char* to_string(ChannelBinding binding);
const char* to_string(TlsNegotiation negotiation);

// The resolved settings of one connection. Immutable once loaded; shared by the pools
// (pool::Target) and monitors that use it.
struct ServerTls {
    tls::Settings settings;  // files resolved beside the config file
    ChannelBinding channel_binding = ChannelBinding::Prefer;
    TlsNegotiation negotiation = TlsNegotiation::Postgres;
    // Null when settings.mode is disable or allow (both start in clear).
    std::shared_ptr<const tls::Context> context;

    // Everything but the context: two sets that are the same use one context.
    bool same_as(const ServerTls& other) const;
};

// What one level of the file writes; an unset field inherits from the level above.
struct ServerTlsLevel {
    std::optional<tls::SslMode> mode;
    std::optional<std::string> cert_file, key_file, ca_file, protocols, ciphers, tls13_ciphers;
    std::optional<ChannelBinding> channel_binding;
    std::optional<TlsNegotiation> negotiation;
    uint32_t line = 0;  // of the first of its settings, for messages; 0: it sets none

    bool empty() const { return line == 0; }
};

// The newest config's set equal to `wanted`, whose context holds the certificates as they
// were at the last reload; `wanted` itself when the config has no such set any more.
const ServerTls& current_server_tls(const Config& config, const ServerTls& wanted);

}  // namespace pgplex::config
