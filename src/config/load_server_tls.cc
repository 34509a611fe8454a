// The server TLS settings of every level (see server_tls.h): read into a ServerTlsLevel by
// whichever section meets them, then resolved over the level above and built into a
// context here, so each distinct set costs one SSL_CTX however many aliases and nodes
// share it.
#include <filesystem>

#include "pgplex/base/assert.h"
#include "pgplex/config/loader.h"
#include "pgplex/config/server_tls.h"

namespace pgplex::config {

namespace {

using FileField = std::optional<std::string> ServerTlsLevel::*;

constexpr std::pair<std::string_view, FileField> file_settings[] = {
    {"server_tls_cert_file", &ServerTlsLevel::cert_file},
    {"server_tls_key_file", &ServerTlsLevel::key_file},
    {"server_tls_ca_file", &ServerTlsLevel::ca_file},
};

constexpr std::pair<std::string_view, FileField> text_settings[] = {
    {"server_tls_protocols", &ServerTlsLevel::protocols},
    {"server_tls_ciphers", &ServerTlsLevel::ciphers},
    {"server_tls13_ciphers", &ServerTlsLevel::tls13_ciphers},
};

// A relative file name is relative to the config file's directory.
std::string beside(const std::string& config_path, const std::string& name) {
    std::filesystem::path file(name);
    if (name.empty() || !file.is_relative()) return name;
    return (std::filesystem::path(config_path).parent_path() / file).string();
}

bool read_enum_setting(Loader& loader, ServerTlsLevel& level) {
    std::string value;
    if (loader.name == "server_tls_sslmode") {
        if (!loader.one_of({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
                           value))
            return false;
        tls::SslMode mode = tls::SslMode::Disable;
        tls::parse_ssl_mode(value, mode);
        level.mode = mode;
        return true;
    }
    if (loader.name == "server_channel_binding") {
        if (!loader.one_of({"disable", "prefer", "require"}, value)) return false;
        level.channel_binding = value == "disable"   ? ChannelBinding::Disable
                                : value == "require" ? ChannelBinding::Require
                                                     : ChannelBinding::Prefer;
        return true;
    }
    PGPLEX_ASSERT(loader.name == "server_tls_negotiation");
    if (!loader.one_of({"postgres", "direct"}, value)) return false;
    level.negotiation = value == "direct" ? TlsNegotiation::Direct : TlsNegotiation::Postgres;
    return true;
}

ServerTls resolved(const ServerTls& base, const ServerTlsLevel& level) {
    ServerTls out;
    out.settings = base.settings;
    out.channel_binding = level.channel_binding.value_or(base.channel_binding);
    out.negotiation = level.negotiation.value_or(base.negotiation);
    tls::Settings& settings = out.settings;
    settings.mode = level.mode.value_or(settings.mode);
    settings.cert_file = level.cert_file.value_or(settings.cert_file);
    settings.key_file = level.key_file.value_or(settings.key_file);
    settings.ca_file = level.ca_file.value_or(settings.ca_file);
    settings.protocols = level.protocols.value_or(settings.protocols);
    settings.ciphers = level.ciphers.value_or(settings.ciphers);
    settings.tls13_ciphers = level.tls13_ciphers.value_or(settings.tls13_ciphers);
    return out;
}

// What can never work, refused at load rather than at every login.
bool check(Loader& loader, const ServerTls& set, uint32_t line, const std::string& prefix) {
    tls::SslMode mode = set.settings.mode;
    if (set.negotiation == TlsNegotiation::Direct && mode < tls::SslMode::Require)
        return loader.fail_at(line,
                              prefix +
                                  "server_tls_negotiation = \"direct\" needs "
                                  "server_tls_sslmode require, verify-ca or verify-full "
                                  "(a direct TLS handshake has no plaintext fallback), not \"" +
                                  tls::to_string(mode) + "\"");
    if (set.channel_binding == ChannelBinding::Require && mode < tls::SslMode::Prefer)
        return loader.fail_at(line, prefix +
                                        "server_channel_binding = \"require\" needs TLS, and "
                                        "server_tls_sslmode is \"" +
                                        tls::to_string(mode) + "\"");
    return true;
}

}  // namespace

const char* to_string(ChannelBinding binding) {
    switch (binding) {
        case ChannelBinding::Disable:
            return "disable";
        case ChannelBinding::Prefer:
            return "prefer";
        case ChannelBinding::Require:
            return "require";
    }
    return "prefer";
}

const char* to_string(TlsNegotiation negotiation) {
    switch (negotiation) {
        case TlsNegotiation::Postgres:
            return "postgres";
        case TlsNegotiation::Direct:
            return "direct";
    }
    return "postgres";
}

bool ServerTls::same_as(const ServerTls& other) const {
    const tls::Settings& a = settings;
    const tls::Settings& b = other.settings;
    return a.mode == b.mode && a.cert_file == b.cert_file && a.key_file == b.key_file &&
           a.ca_file == b.ca_file && a.protocols == b.protocols && a.ciphers == b.ciphers &&
           a.tls13_ciphers == b.tls13_ciphers && channel_binding == other.channel_binding &&
           negotiation == other.negotiation;
}

const ServerTls& current_server_tls(const Config& config, const ServerTls& wanted) {
    for (const std::shared_ptr<const ServerTls>& set : config.server_tls_sets)
        if (set->same_as(wanted)) return *set;
    return wanted;
}

bool is_server_tls_setting(std::string_view name) {
    if (name == "server_tls_sslmode" || name == "server_channel_binding" ||
        name == "server_tls_negotiation")
        return true;
    for (const auto& [known, field] : file_settings)
        if (name == known) return true;
    for (const auto& [known, field] : text_settings)
        if (name == known) return true;
    return false;
}

bool read_server_tls_setting(Loader& loader, ServerTlsLevel& level) {
    PGPLEX_ASSERT(is_server_tls_setting(loader.name));
    if (level.line == 0) level.line = loader.node->source().begin.line;
    for (const auto& [known, field] : file_settings) {
        if (loader.name != known) continue;
        std::string name;
        if (!loader.string(name)) return false;
        level.*field = beside(loader.path, name);
        return true;
    }
    for (const auto& [known, field] : text_settings) {
        if (loader.name != known) continue;
        std::string text;
        if (!loader.string(text)) return false;
        level.*field = std::move(text);
        return true;
    }
    return read_enum_setting(loader, level);
}

bool resolve_server_tls(Loader& loader, Config& config, const ServerTls& base,
                        const ServerTlsLevel& level, const std::string& what,
                        std::shared_ptr<const ServerTls>& out) {
    ServerTls set = resolved(base, level);
    uint32_t line = level.line != 0 ? level.line : 1;
    std::string prefix = what.empty() ? "" : what + ": ";
    if (!check(loader, set, line, prefix)) return false;
    for (const std::shared_ptr<const ServerTls>& known : config.server_tls_sets) {
        if (!known->same_as(set)) continue;
        out = known;
        return true;
    }
    if (set.settings.mode >= tls::SslMode::Prefer) {
        std::string error;
        set.context = tls::Context::make_client(set.settings, error);
        if (!set.context)
            return loader.fail_at(line, prefix + "server_tls_sslmode = \"" +
                                            tls::to_string(set.settings.mode) + "\": " + error);
    }
    out = std::make_shared<const ServerTls>(std::move(set));
    config.server_tls_sets.push_back(out);
    return true;
}

}  // namespace pgplex::config
