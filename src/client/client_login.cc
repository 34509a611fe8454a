// A client's login: SSLRequest/GSSENCRequest refused with 'N', the StartupMessage read and
// checked, the alias found, the password or SASL exchange against the auth file, the pool
// chosen. Mirrors PostgreSQL's ProcessStartupPacket() and ClientAuthentication(), and the
// messages they send, so clients and tools see what they expect.
#include <openssl/rand.h>

#include <pwd.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <algorithm>

#include <cstring>
#include <string>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_admin.h"
#include "pgplex/client/client_auth_query.h"
#include "pgplex/client/client_handover.h"
#include "pgplex/client/client_limits.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_route.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/startup.h"
#include "pgplex/proto/writer.h"
#include "pgplex/route/router.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_work.h"
#include "pgplex/tls/md5.h"

namespace pgplex::client {

namespace {

// The first byte of a TLS handshake record (a ClientHello); no StartupMessage begins so, as
// its length would be over 369 MB.
constexpr uint8_t tls_handshake_record = 0x16;

// The pool mode of a client: a direct service's clients each keep their own server; else as
// PgBouncer decides (config.h), for a client of no alias from [users] and [pgplex].
config::PoolMode mode_of(const config::Config& config, const config::Alias* alias,
                         const Session& session) {
    if (session.routing && session.routing->dest == config::Dest::Direct)
        return config::PoolMode::Session;
    if (alias != nullptr) return config.pool_mode_of(*alias, session.user);
    auto user = config.user_settings.find(session.user);
    if (user != config.user_settings.end() && user->second.pool_mode_set)
        return user->second.pool_mode;
    return config.pool_mode;
}

using proto::Severity;

// "-c name=value" and "--name=value" words of the options startup parameter, with
// PostgreSQL's backslash escapes (pg_split_opts). Returns false on any other switch.
bool parse_options(std::string_view options, std::vector<std::pair<std::string, std::string>>& out,
                   std::string& bad) {
    std::vector<std::string> words;
    std::string word;
    bool escaped = false;
    for (char ch : options) {
        if (escaped) {
            word += ch;
            escaped = false;
        } else if (ch == '\\') {
            escaped = true;
        } else if (ch == ' ' || ch == '\t' || ch == '\n') {
            if (!word.empty()) words.push_back(std::move(word)), word.clear();
        } else {
            word += ch;
        }
    }
    if (!word.empty()) words.push_back(word);
    for (size_t i = 0; i < words.size(); ++i) {
        std::string setting;
        if (words[i] == "-c" && i + 1 < words.size())
            setting = words[++i];
        else if (words[i].rfind("-c", 0) == 0 && words[i].size() > 2)
            setting = words[i].substr(2);
        else if (words[i].rfind("--", 0) == 0)
            setting = words[i].substr(2);
        size_t equals = setting.find('=');
        if (setting.empty() || equals == std::string::npos || equals == 0) {
            bad = words[i];
            return false;
        }
        std::string name = setting.substr(0, equals);
        for (char& ch : name)
            if (ch == '-') ch = '_';
        out.emplace_back(name, setting.substr(equals + 1));
    }
    return true;
}

void send_auth_request(worker::Worker& worker, Client& client, proto::AuthRequest request,
                       const void* data, uint32_t size) {
    uint8_t bytes[512];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_authentication(writer, request, data, size);
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, bytes, writer.size());
}

void answer_failed_password(worker::Worker& worker, Client& client) {
    std::string message = "password authentication failed for user \"" +
                          (client.session ? client.session->user : std::string()) + "\"";
    fail(worker, client, CloseReason::LoginFailed, Severity::Fatal, sqlstate::invalid_password,
         message);
}

// The auth_failures slot of the client's address, or null when its address is not known.
std::atomic<uint64_t>* failure_slot(worker::Worker& worker, const Client& client) {
    size_t slot = 0;
    return address_slot(client, slot) ? &worker.shared.auth_failures[slot] : nullptr;
}

// A slot holds {second its minute began << 32 | failures since}: the minute starts at the
// first failure after the previous one ended.
uint64_t now_seconds(const worker::Worker& worker) {
    return uint64_t(worker.now / 1000) & 0xffffffffu;
}

bool within_minute(uint64_t seen, uint64_t now) {
    return seen != 0 && now - (seen >> 32) < 60;
}

void count_failure(worker::Worker& worker, const Client& client) {
    std::atomic<uint64_t>* slot = failure_slot(worker, client);
    if (slot == nullptr) return;
    uint64_t now = now_seconds(worker);
    uint64_t seen = slot->load(std::memory_order_relaxed);
    while (true) {
        uint64_t next = within_minute(seen, now)
                            ? (seen & ~uint64_t(0xffffffffu)) |
                                  std::min<uint64_t>((seen & 0xffffffffu) + 1, 0xffffffffu)
                            : now << 32 | 1;
        if (slot->compare_exchange_weak(seen, next, std::memory_order_relaxed)) return;
    }
}

// auth_failure_limit: whether the client's address failed too often in its minute.
bool too_many_failures(worker::Worker& worker, const Client& client) {
    int limit = worker.config->auth_failure_limit;
    std::atomic<uint64_t>* slot = failure_slot(worker, client);
    if (limit <= 0 || slot == nullptr) return false;
    uint64_t seen = slot->load(std::memory_order_relaxed);
    return within_minute(seen, now_seconds(worker)) && (seen & 0xffffffffu) >= uint64_t(limit);
}

// A wrong password: answered at once, or after auth_failure_delay (login_tick).
void fail_password(worker::Worker& worker, Client& client) {
    ++worker.counters.auth_failures;
    count_failure(worker, client);
    if (worker.config->auth_failure_delay_ms <= 0) return answer_failed_password(worker, client);
    client.login->step = AuthStep::Failed;
    client.login->failed_at = worker.now;
    worker.pause_recv(client.conn, io::Op::ClientRecv, worker.client_slot(client));
}

// The SCRAM secret to check this user's proof against: the stored one, one derived from a
// plain-text password (cached per worker: PBKDF2 is deliberately slow), or for an unknown
// user a random one, so the exchange looks the same and fails at the proof.
tls::scram::Secret scram_secret_for(worker::Worker& worker, const Login& login) {
    tls::scram::Secret secret;
    if (login.user_known && tls::scram::parse_secret(login.secret, secret)) return secret;
    if (login.user_known && !tls::md5::is_hash(login.secret)) {
        auto found = worker.scram_cache.find(login.secret);
        if (found != worker.scram_cache.end()) return found->second;
        uint8_t salt[16];
        RAND_bytes(salt, sizeof salt);
        secret = tls::scram::make_secret(login.secret,
                                         std::string_view(reinterpret_cast<char*>(salt), 16),
                                         tls::scram::default_iterations);
        worker.scram_cache.emplace(login.secret, secret);
        return secret;
    }
    secret.iterations = tls::scram::default_iterations;
    secret.salt.resize(16);
    RAND_bytes(reinterpret_cast<uint8_t*>(secret.salt.data()), 16);
    RAND_bytes(secret.stored_key.data(), 32);
    RAND_bytes(secret.server_key.data(), 32);
    return secret;
}

void start_scram(worker::Worker& worker, Client& client) {
    Login& login = *client.login;
    login.scram = std::make_unique<tls::scram::ServerExchange>(scram_secret_for(worker, login));
    // Lists ending with an empty name. Over TLS, -PLUS first: libpq takes it when it can.
    static const char plain[] = "SCRAM-SHA-256\0";
    static const char with_plus[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
    std::string end_point;
    if (client.conn.tls && client.conn.tls->established())
        end_point = client.conn.tls->server_end_point();
    if (!end_point.empty()) {
        login.scram->offer_channel_binding(std::move(end_point));
        send_auth_request(worker, client, proto::AuthRequest::SASL, with_plus, sizeof with_plus);
    } else {
        send_auth_request(worker, client, proto::AuthRequest::SASL, plain, sizeof plain);
    }
    login.step = AuthStep::ScramFirst;
    set_state(worker, client, ClientState::Auth);
}

void start_md5(worker::Worker& worker, Client& client) {
    Login& login = *client.login;
    uint32_t salt = worker.random_u32();
    memcpy(login.md5_salt, &salt, 4);
    send_auth_request(worker, client, proto::AuthRequest::MD5Password, login.md5_salt, 4);
    login.step = AuthStep::Md5;
    set_state(worker, client, ClientState::Auth);
}

void authenticated(worker::Worker& worker, Client& client);

// PasswordMessage in clear (hba's "password"): checked against a plain secret, an md5 hash
// or a SCRAM secret alike.
void start_cleartext(worker::Worker& worker, Client& client) {
    send_auth_request(worker, client, proto::AuthRequest::CleartextPassword, nullptr, 0);
    client.login->step = AuthStep::Cleartext;
    set_state(worker, client, ClientState::Auth);
}

bool cleartext_matches(const std::string& user, const std::string& secret,
                       std::string_view password) {
    if (tls::scram::is_secret(secret)) {
        tls::scram::Secret stored;
        if (!tls::scram::parse_secret(secret, stored)) return false;
        tls::scram::Secret derived =
            tls::scram::make_secret(password, stored.salt, stored.iterations);
        return CRYPTO_memcmp(derived.stored_key.data(), stored.stored_key.data(), 32) == 0;
    }
    std::string expected = tls::md5::is_hash(secret) ? secret : std::string();
    std::string given =
        tls::md5::is_hash(secret) ? tls::md5::password_hash(user, password) : std::string(password);
    if (!tls::md5::is_hash(secret)) expected = secret;
    return given.size() == expected.size() &&
           CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

// hba "peer": the operating system user connected on the Unix socket has the name the client
// logs in as (PostgreSQL's peer authentication, without a user name map). getpwuid_r may
// ask NSS, as PgBouncer's getpwuid does; it runs once per login on a local socket.
bool peer_is_user(const Client& client) {
    if (client.peer_uid == io::Loop::uid_unknown || !client.session) return false;
    passwd entry{};
    passwd* found = nullptr;
    char buffer[2048];
    if (getpwuid_r(uid_t(client.peer_uid), &entry, buffer, sizeof buffer, &found) != 0 ||
        found == nullptr)
        return false;
    return client.session->user == found->pw_name;
}

// Whether the client came in by a Unix socket (hba "local" lines match it).
bool on_unix_socket(const worker::Worker& worker, const Client& client) {
    return client.listener < worker.listener_roles.size() &&
           worker.listener_roles[client.listener].local;
}

// "host "127.0.0.1", user "u", database "d", SSL encryption": PostgreSQL's words.
std::string hba_who(const Client& client) {
    std::string address = address_text(client);
    if (address == "unix") address = "[local]";
    return "host \"" + address + "\", user \"" + client.session->user + "\", database \"" +
           client.session->database + "\", " +
           (client.conn.tls ? "SSL encryption" : "no encryption");
}

void start_md5_or_scram(worker::Worker& worker, Client& client, config::AuthType type);

// auth_type = "hba": the first matching rule of auth_hba_file says how.
void begin_hba_auth(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    if (client.addresses_asked) {
        client.login->awaiting_addresses = true;  // resume_login
        return;
    }
    config::HbaPeer peer;
    peer.local = on_unix_socket(worker, client);
    peer.tls = client.conn.tls != nullptr;
    peer.address =
        client.addresses_known ? reinterpret_cast<const sockaddr*>(&client.peer.address) : nullptr;
    peer.database = client.session->database;
    peer.user = client.session->user;
    const config::HbaRule* rule = config.hba ? config.hba->match(peer) : nullptr;
    auto refuse = [&](const std::string& message) {
        ++worker.counters.logins_refused;
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::invalid_authorization_specification, message);
    };
    if (rule == nullptr) return refuse("no pg_hba.conf entry for " + hba_who(client));
    switch (rule->method) {
        case config::HbaMethod::Trust:
            authenticated(worker, client);
            return;
        case config::HbaMethod::Reject:
            return refuse("pg_hba.conf rejects connection for " + hba_who(client));
        case config::HbaMethod::Md5:
            return start_md5_or_scram(worker, client, config::AuthType::Md5);
        case config::HbaMethod::ScramSha256:
            return start_md5_or_scram(worker, client, config::AuthType::ScramSha256);
        case config::HbaMethod::Password:
            return start_cleartext(worker, client);
        case config::HbaMethod::Cert: {
            tls::Session* session = client.conn.tls.get();
            if (session != nullptr && session->peer_verified() &&
                session->peer_common_name() == client.session->user) {
                authenticated(worker, client);
                return;
            }
            return refuse("certificate authentication failed for user \"" + client.session->user +
                          "\"");
        }
        case config::HbaMethod::Peer:
            if (peer_is_user(client)) {
                authenticated(worker, client);
                return;
            }
            return refuse("Peer authentication failed for user \"" + client.session->user + "\"");
    }
}

void begin_auth(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    Login& login = *client.login;
    auto found = config.users.find(client.session->user);
    login.user_known = found != config.users.end();
    if (login.user_known) login.secret = found->second;
    if (too_many_failures(worker, client)) {
        ++worker.counters.logins_refused;
        log_warning("%s: %s: refused, over auth_failure_limit (%d a minute)",
                    log_context(worker, client).c_str(), hba_who(client).c_str(),
                    config.auth_failure_limit);
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::invalid_authorization_specification,
             "too many failed logins from this address; try again in a minute");
        return;
    }
    if (!login.user_known && begin_lookup(worker, client)) return;  // on to continue_auth
    continue_auth(worker, client);
}

}  // namespace

void continue_auth(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    if (config.auth_type == config::AuthType::Hba) {
        begin_hba_auth(worker, client);
        return;
    }
    start_md5_or_scram(worker, client, config.auth_type);
}

namespace {

void start_md5_or_scram(worker::Worker& worker, Client& client, config::AuthType type) {
    Login& login = *client.login;
    switch (type) {
        case config::AuthType::Hba:
        case config::AuthType::Trust:
            authenticated(worker, client);
            return;
        case config::AuthType::Md5:
            if (login.user_known && tls::scram::is_secret(login.secret))
                start_scram(worker, client);
            else
                start_md5(worker, client);
            return;
        case config::AuthType::ScramSha256:
            if (login.user_known && tls::md5::is_hash(login.secret)) {
                log_warning(
                    "%s: auth_type is scram-sha-256 but the auth file holds an md5 hash for "
                    "the user; the login is refused",
                    log_context(worker, client).c_str());
                login.user_known = false;  // the exchange runs and fails, as for a stranger
            }
            start_scram(worker, client);
            return;
    }
}

}  // namespace

bool login_tick(worker::Worker& worker, Client& client) {
    if (client.login && client.login->lookup == LookupStep::InLine) lookup_tick(worker, client);
    if (!client.login || client.login->step != AuthStep::Failed) return false;
    if (worker.now - client.login->failed_at >= worker.config->auth_failure_delay_ms)
        answer_failed_password(worker, client);
    return true;
}

void resume_login(worker::Worker& worker, Client& client) {
    if (client.state == ClientState::Startup || client.state == ClientState::Auth)
        begin_hba_auth(worker, client);
}

namespace {

// A startup parameter as a setting: "SET name = E'value'", kept under its lower-case name.
bool add_startup_setting(std::vector<pool::Setting>& settings, const std::string& name,
                         const std::string& value) {
    if (name.empty()) return false;
    for (char ch : name)
        if (!isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.') return false;
    pool::Setting setting;
    for (char ch : name) setting.name += char(tolower(static_cast<unsigned char>(ch)));
    setting.sql = "SET " + name + " = E'";
    for (char ch : value) {
        if (ch == '\'' || ch == '\\') setting.sql += '\\';
        setting.sql += ch;
    }
    setting.sql += "'";
    setting.value = value;
    for (pool::Setting& existing : settings)
        if (existing.name == setting.name) {
            existing = std::move(setting);
            return true;
        }
    settings.push_back(std::move(setting));
    return true;
}

// A StartupMessage: check what PostgreSQL would check, record the session, authenticate.
void begin_session(worker::Worker& worker, Client& client, const proto::StartupPacket& packet) {
    if (!packet.replication.empty() && packet.replication != "false" && packet.replication != "0" &&
        packet.replication != "off" && packet.replication != "no") {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::feature_not_supported,
             "replication connections are not supported by pgplex");
        return;
    }
    if (packet.user.size() > limits::name_bytes_max ||
        packet.database.size() > limits::name_bytes_max) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::protocol_violation, "user or database name too long");
        return;
    }
    client.session = std::make_unique<Session>();
    Session& session = *client.session;
    session.user = packet.user;
    session.database = packet.database;
    std::vector<std::pair<std::string, std::string>> parameters;
    for (const auto& [name, value] : packet.parameters)
        parameters.emplace_back(std::string(name), std::string(value));
    std::string bad;
    if (!parse_options(packet.options, parameters, bad)) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::feature_not_supported,
             "unsupported startup option \"" + bad + "\": pgplex accepts only -c name=value");
        return;
    }
    // pgplex.intent steers routing; no server ever sees it.
    std::string intent;
    std::erase_if(parameters, [&intent](const auto& parameter) {
        if (strcasecmp(parameter.first.c_str(), "pgplex.intent") != 0) return false;
        intent = parameter.second;
        return true;
    });
    std::vector<pool::Setting> settings;
    for (const auto& [name, value] : parameters) {
        if (!add_startup_setting(settings, name, value)) {
            fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
                 sqlstate::protocol_violation, "invalid startup parameter name \"" + name + "\"");
            return;
        }
    }
    session.startup = worker.settings.intern(std::move(settings));
    Resolved resolved;
    if (!resolve_login(worker, client, intent, resolved)) return;
    const config::Config& config = *worker.config;
    session.admin = resolved.admin;
    session.mode = mode_of(config, resolved.alias, session);
    session.pin_allowed = resolved.alias ? config.pin_on_session_state_of(*resolved.alias)
                                         : config.pin_on_session_state;
    begin_auth(worker, client);
}

// SSLRequest: 'S' and the server side of a TLS handshake when client_tls_sslmode is not
// "disable", else 'N'.
void answer_ssl_request(worker::Worker& worker, Client& client) {
    if (client.conn.tls) {
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::protocol_violation, "SSLRequest received on an encrypted connection");
        return;
    }
    const tls::Context* context = worker.config->client_tls_context.get();
    if (context == nullptr) {
        const uint8_t no = 'N';
        queue(worker, client, &no, 1);
        return;
    }
    const uint8_t yes = 'S';
    worker.start_tls(client.conn, *context, io::Op::ClientSend, worker.client_slot(client), &yes,
                     1);
    client.login->ssl_answered = true;
}

// A connection that begins with a TLS record (PostgreSQL 17's sslnegotiation=direct): the
// handshake starts at once, on what arrived. Returns the bytes used.
uint32_t begin_direct_tls(worker::Worker& worker, Client& client, const uint8_t* data,
                          uint32_t size) {
    client.login->direct_tls = true;
    uint32_t slot = worker.client_slot(client);
    worker.start_tls(client.conn, *worker.config->client_tls_context, io::Op::ClientSend, slot,
                     nullptr, 0);
    tls::Status status = worker.open_tls(client.conn, io::Op::ClientSend, slot, data, size,
                                         [&worker, &client](uint32_t buffer, uint32_t got) {
                                             on_recv(worker, client, buffer, got);
                                         });
    if (status == tls::Status::Failed) on_tls_failed(worker, client, client.conn.tls->reason());
    return size;
}

// Before a login begins: whether the connection is as encrypted as client_tls_sslmode
// asks (else it is refused, 28000), and a direct TLS one spoke ALPN "postgresql".
bool tls_acceptable(worker::Worker& worker, Client& client, std::string_view user) {
    const config::Config& config = *worker.config;
    tls::SslMode mode = config.client_tls.mode;
    tls::Session* session = client.conn.tls.get();
    if (session != nullptr && client.login->direct_tls && session->alpn() != "postgresql") {
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::protocol_violation,
             "a direct TLS connection must negotiate ALPN protocol \"postgresql\"");
        return false;
    }
    // As PgBouncer: the file system guards a Unix socket (unix_socket_mode), and libpq never
    // asks for TLS over one.
    if (session == nullptr && mode >= tls::SslMode::Require && !on_unix_socket(worker, client)) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::invalid_authorization_specification,
             "TLS is required: this pgplex accepts only encrypted connections", {},
             std::string("client_tls_sslmode is \"") + tls::to_string(mode) +
                 "\"; connect with sslmode=require (or verify-ca, verify-full).");
        return false;
    }
    if (session != nullptr && mode == tls::SslMode::VerifyFull &&
        session->peer_common_name() != user) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::invalid_authorization_specification,
             "the client certificate's common name \"" + session->peer_common_name() +
                 "\" does not match user \"" + std::string(user) + "\"",
             {}, "client_tls_sslmode = \"verify-full\" needs CN = the user name.");
        return false;
    }
    return true;
}

// The startup packet is complete: answer SSL/GSS, route a cancel, or begin a login.
void on_startup_packet(worker::Worker& worker, Client& client) {
    Login& login = *client.login;
    proto::StartupPacket packet;
    const char* reason = nullptr;
    proto::StartupError error =
        proto::parse_startup(login.packet.data(), uint32_t(login.packet.size()), packet, reason);
    if (error == proto::StartupError::UnsupportedProtocol) {
        std::string message =
            "unsupported frontend protocol " + std::to_string(packet.protocol_major) + "." +
            std::to_string(packet.protocol_minor) + ": server supports 3.0 to 3.0";
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::feature_not_supported, message);
        return;
    }
    if (error != proto::StartupError::None) {
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::protocol_violation, reason);
        return;
    }
    switch (packet.kind) {
        case proto::StartupKind::SSLRequest:
            login.packet.clear();
            answer_ssl_request(worker, client);
            return;
        case proto::StartupKind::GSSENCRequest: {
            const uint8_t no = 'N';
            queue(worker, client, &no, 1);
            login.packet.clear();
            return;
        }
        case proto::StartupKind::CancelRequest: {
            // A client handed over by an earlier pgplex still cancels with its pid from there.
            packet.cancel_pid = handed_cancel_pid(worker, packet.cancel_pid, packet.cancel_key);
            uint32_t target_worker = limits::pid_worker(packet.cancel_pid);
            if (limits::pid_appliance(packet.cancel_pid) != worker.config->gossip.index)
                forward_cancel(worker, packet.cancel_pid, packet.cancel_key);
            else if (target_worker == worker.index)
                cancel(worker, packet.cancel_pid, packet.cancel_key);
            else if (target_worker < worker.shared.ring_fds.size())
                worker.message(target_worker, io::MessageKind::CancelClient, packet.cancel_key,
                               packet.cancel_pid);
            close(worker, client, CloseReason::CancelRequest);
            return;
        }
        case proto::StartupKind::Startup:
            break;
    }
    login.packet.clear();
    if (!tls_acceptable(worker, client, packet.user)) return;
    begin_session(worker, client, packet);
}

uint32_t consume_startup(worker::Worker& worker, Client& client, const uint8_t* data,
                         uint32_t size) {
    Login& login = *client.login;
    uint32_t used = 0;
    if (login.packet.empty() && !client.conn.tls && size > 0 && data[0] == tls_handshake_record &&
        worker.config->client_tls_context)
        return begin_direct_tls(worker, client, data, size);
    if (login.packet.size() < 4) {
        uint32_t take = std::min<uint32_t>(4 - uint32_t(login.packet.size()), size);
        login.packet.insert(login.packet.end(), data, data + take);
        used += take;
        if (login.packet.size() < 4) return used;
        if (proto::startup_length(login.packet.data()) == 0) {
            fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
                 sqlstate::protocol_violation, "invalid length of startup packet");
            return size;
        }
    }
    uint32_t length = proto::read_be32(login.packet.data());
    uint32_t take = std::min<uint32_t>(length - uint32_t(login.packet.size()), size - used);
    login.packet.insert(login.packet.end(), data + used, data + used + take);
    used += take;
    if (login.packet.size() == length) on_startup_packet(worker, client);
    if (client.login && login.ssl_answered) {
        login.ssl_answered = false;
        // Bytes sent after the SSLRequest before the handshake are not the client's to
        // send: read as plaintext they could be injected by anyone on the path
        // (CVE-2021-3935). PostgreSQL refuses them the same way.
        if (used < size || client.conn.held_in.bytes > size) {
            fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
                 sqlstate::protocol_violation, "received unencrypted data after SSL request");
            return size;
        }
    }
    return used;
}

// --- the password / SASL exchange ---------------------------------------------------------

bool md5_matches(const Client& client, std::string_view response) {
    const Login& login = *client.login;
    std::array<uint8_t, 4> salt;
    memcpy(salt.data(), login.md5_salt, 4);
    return login.user_known && tls::md5::verify(client.session->user, login.secret, salt, response);
}

// SASLInitialResponse: the mechanism the client chose, and its client-first-message.
void on_sasl_initial_response(worker::Worker& worker, Client& client, const uint8_t* body,
                              uint32_t size) {
    Login& login = *client.login;
    std::string_view text(reinterpret_cast<const char*>(body), size);
    size_t nul = text.find('\0');
    std::string_view mechanism =
        nul == std::string_view::npos ? std::string_view{} : text.substr(0, nul);
    bool plus = mechanism == "SCRAM-SHA-256-PLUS" && login.scram->offers_channel_binding();
    if ((mechanism != "SCRAM-SHA-256" && !plus) || size < nul + 5) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::protocol_violation,
             "client selected an invalid SASL authentication mechanism");
        return;
    }
    uint32_t length = proto::read_be32(body + nul + 1);
    std::string_view data = text.substr(nul + 5);
    if (length != data.size()) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::protocol_violation, "malformed SASLInitialResponse");
        return;
    }
    std::string server_first, reason;
    login.scram->choose_plus(plus);
    if (!login.scram->handle_client_first(data, server_first, reason)) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::protocol_violation, "malformed SCRAM message: " + reason);
        return;
    }
    send_auth_request(worker, client, proto::AuthRequest::SASLContinue, server_first.data(),
                      uint32_t(server_first.size()));
    login.step = AuthStep::ScramFinal;
    return;
}

void on_password_message(worker::Worker& worker, Client& client, const uint8_t* body,
                         uint32_t size) {
    Login& login = *client.login;
    std::string_view text(reinterpret_cast<const char*>(body), size);
    switch (login.step) {
        case AuthStep::Cleartext:
        case AuthStep::Md5: {
            std::string_view given = text.substr(0, text.find('\0'));
            bool right = login.step == AuthStep::Md5
                             ? md5_matches(client, given)
                             : login.user_known &&
                                   cleartext_matches(client.session->user, login.secret, given);
            tls::scram::Secret secret;
            if (right && login.step == AuthStep::Cleartext &&
                tls::scram::parse_secret(login.secret, secret))
                login.password_key = tls::scram::client_key_of(given, secret);
            if (right)
                authenticated(worker, client);
            else
                fail_password(worker, client);
            return;
        }
        case AuthStep::ScramFirst:
            on_sasl_initial_response(worker, client, body, size);
            return;
        case AuthStep::ScramFinal: {
            std::string server_final, reason;
            bool ok = login.scram->handle_client_final(text, server_final, reason);
            if (!ok || !login.user_known) {
                if (!ok && !login.scram->proof_was_wrong() && login.user_known)
                    fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
                         sqlstate::protocol_violation, "malformed SCRAM message: " + reason);
                else
                    fail_password(worker, client);
                return;
            }
            send_auth_request(worker, client, proto::AuthRequest::SASLFinal, server_final.data(),
                              uint32_t(server_final.size()));
            authenticated(worker, client);
            return;
        }
        case AuthStep::Failed:  // not reached: consume_auth reads nothing then
        case AuthStep::None:
            break;
    }
    fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
         sqlstate::protocol_violation, "unexpected password message");
}

struct AuthHandler {
    worker::Worker& worker;
    Client& client;
    bool violation = false;

    proto::Fate on_header(uint8_t type, uint32_t length) {
        if (type != uint8_t(proto::FrontendMessage::PasswordMessage) ||
            length > limits::assembled_message_bytes_max) {
            violation = true;
            return proto::Fate::Hold;
        }
        return proto::Fate::Inspect;
    }
    void forward(const uint8_t*, uint32_t, bool) {}
    uint8_t* assembly(uint32_t size) {
        client.login->assembly.resize(size);
        return client.login->assembly.data();
    }
    proto::Verdict on_message(uint8_t, const uint8_t* body, uint32_t size) {
        on_password_message(worker, client, body, size);
        return proto::Verdict::Pause;  // the state may have changed: look again
    }
};

uint32_t consume_auth(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    if (client.login->step == AuthStep::Failed) return size;  // nothing more is read
    AuthHandler handler{worker, client};
    proto::FeedResult result =
        proto::feed(client.conn.frame, proto::Direction::Frontend, data, size, handler);
    if (result.status == proto::FeedStatus::Violation || handler.violation) {
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::protocol_violation,
             handler.violation ? "expected password response" : result.reason);
        return size;
    }
    return result.consumed;
}

// --- after authentication -----------------------------------------------------------------

// A client of no alias (a service port, or "db@cluster") logs in to the database it named,
// as itself.
// The database a client's servers and the client itself count against (max_db_connections,
// max_db_client_connections): the alias, or under [databases."*"] the name the client gave,
// as each such name is a database of its own in PgBouncer.
std::string budget_database(const config::Alias* alias, const Session& session) {
    return alias != nullptr && alias->name != "*" ? alias->name : session.database;
}

pool::Target target_for(const config::Config& config, const config::Alias* alias,
                        const Session& session, const Login& login) {
    pool::Target target;
    // "db@cluster" names db, unless an alias answers for the whole name.
    size_t at = session.routing && session.routing->service.empty() &&
                        (alias == nullptr || alias->name != session.database)
                    ? session.database.rfind('@')
                    : std::string::npos;
    std::string database = session.database.substr(0, at);
    if (alias == nullptr) {
        target.alias = session.database;
        target.database = session.database;
        target.dbname = database;
        target.user = session.user;
        target.password = login.secret;
        return target;
    }
    target.alias = alias->name;
    target.database = budget_database(alias, session);
    target.endpoint = alias->server;
    target.dbname = alias->dbname.empty() ? database : alias->dbname;
    target.user = alias->user.empty() ? session.user : alias->user;
    if (!alias->password.empty()) {
        target.password = alias->password;
    } else if (alias->user.empty()) {
        target.password = login.secret;
    } else {
        auto found = config.users.find(alias->user);
        if (found != config.users.end()) target.password = found->second;
    }
    target.startup_parameters = alias->startup_parameters;
    target.server_tls = alias->server_tls;
    return target;
}

}  // namespace

const config::Alias* routed_alias(const config::Config& config, const Session& session) {
    const config::Alias* alias = config.find_alias(session.database);
    if (alias != nullptr && alias->name != "*") return alias;
    size_t at = session.database.rfind('@');
    if (at == std::string::npos || !session.routing->service.empty()) return alias;
    alias = config.find_alias(session.database.substr(0, at));
    return alias != nullptr && alias->name != "*" ? alias : nullptr;
}

namespace {

// The client proved the password of the SCRAM secret its pools log in with: the keys that
// let pgplex log in too (SCRAM pass-through). False when it did not.
bool proven_scram_keys(const Login& login, const pool::Target& target, tls::scram::Key& client,
                       tls::scram::Key& server) {
    const tls::scram::Key* client_key = login.scram          ? &login.scram->client_key()
                                        : login.password_key ? &*login.password_key
                                                             : nullptr;
    tls::scram::Secret secret;
    if (client_key == nullptr || !login.user_known || target.password != login.secret ||
        !tls::scram::parse_secret(login.secret, secret))
        return false;
    client = *client_key;
    server = secret.server_key;
    return true;
}

}  // namespace

// The part of a login after authentication that gives the client its place: the
// database's state (DISABLE), the client limits, and its pool, or for a routed client its
// routing's base target. Also for a client handed over by an earlier pgplex, with the
// secret it logged in with there (client_handover.cc).
Attached attach_session(worker::Worker& worker, Client& client, const Login& login) {
    const config::Config& config = *worker.config;
    Session& session = *client.session;
    const admin::Console& console = worker.shared.console;
    std::string name = session.database.substr(0, session.database.rfind('@'));
    if (console.named.load(std::memory_order_acquire) > 0 &&
        (console.is_disabled(session.database) || console.is_disabled(name))) {
        // PgBouncer's words and SQLSTATE (its pooler errors are 08P01).
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::protocol_violation, "database \"" + name + "\" is disabled", "",
             "The management console's DISABLE holds it until ENABLE.");
        return Attached::Failed;
    }
    const config::Alias* wanted =
        session.routing ? routed_alias(config, session) : config.find_alias(session.database);
    if (!admit_to_database(worker, client, budget_database(wanted, session)))
        return Attached::Failed;
    if (session.routing) {
        pool::Target base = target_for(config, routed_alias(config, session), session, login);
        route::Routing& routing = *session.routing;
        routing.scram_keys =
            proven_scram_keys(login, base, routing.scram_client_key, routing.scram_server_key);
        base.direct = routing.dest == config::Dest::Direct;
        routing.base = std::move(base);
        return Attached::Routed;
    }
    const config::Alias* alias = config.find_alias(session.database);
    if (alias == nullptr) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::invalid_catalog_name, "database \"" + session.database + "\" does not exist",
             "its [databases] entry was removed by a reload during the login");
        return Attached::Failed;
    }
    pool::Target target = target_for(config, alias, session, login);
    pool::Pool* pool = worker.shared.pools.find_or_create(target);
    if (pool == nullptr) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::too_many_connections, "no more pools can be created (pool table full)");
        return Attached::Failed;
    }
    if (console.named.load(std::memory_order_acquire) > 0 && console.is_paused(alias->name))
        pool->paused.store(true, std::memory_order_release);  // a pool made while PAUSE db holds
    pool->set_size_limit(config.pool_size(*alias));
    pool->set_budget_limits(config);
    pool->reserve_limit.store(config.reserve_pool_size_of(*alias), std::memory_order_release);
    pool->min_size.store(config.min_pool_size_of(*alias), std::memory_order_release);
    tls::scram::Key client_key, server_key;
    if (proven_scram_keys(login, target, client_key, server_key))
        pool->publish_scram_keys(client_key, server_key);
    client.pool = pool;
    return Attached::Pooled;
}

namespace {

void authenticated(worker::Worker& worker, Client& client) {
    if (client.session->admin) {
        begin_admin(worker, client);
        return;
    }
    switch (attach_session(worker, client, *client.login)) {
        case Attached::Failed:
            return;
        case Attached::Routed:
            begin_routed(worker, client);
            return;
        case Attached::Pooled:
            break;
    }
    const config::Config& config = *worker.config;
    const config::Alias* alias = config.find_alias(client.session->database);
    if (config.log_connections)
        log_info("%s: login: alias=%s server=%s%s%s", log_context(worker, client).c_str(),
                 alias->name.c_str(), alias->server.to_string().c_str(),
                 client.conn.tls ? " tls=" : "",
                 client.conn.tls ? client.conn.tls->version().c_str() : "");
    request_server(worker, client);
}

}  // namespace

uint32_t login_consume(worker::Worker& worker, Client& client, uint32_t, const uint8_t* data,
                       uint32_t size) {
    switch (client.state) {
        case ClientState::Startup:
            return consume_startup(worker, client, data, size);
        case ClientState::Auth:
            return consume_auth(worker, client, data, size);
        case ClientState::Free:
        case ClientState::Idle:
        case ClientState::Waiting:
        case ClientState::Syncing:
        case ClientState::Active:
        case ClientState::Asking:
        case ClientState::Closing:
            break;
    }
    PGPLEX_UNREACHABLE();
}

void request_server(worker::Worker& worker, Client& client) {
    pool::Pool& pool = *client.pool;
    set_state(worker, client, ClientState::Waiting);
    uint32_t slot = worker.client_slot(client);
    while (!server::paused(worker, pool)) {  // paused: it waits for RESUME (serve_waiters)
        uint32_t idle = server::idle_pop(worker, pool);
        if (idle == io::nil) break;
        server::Server& candidate = worker.server(idle);
        const config::Config& config = *worker.config;
        if (config.server_lifetime_ms > 0 &&
            worker.now - candidate.created > config.server_lifetime_ms) {
            server::close(worker, candidate, server::CloseReason::Lifetime);
            continue;
        }
        server::link(worker, candidate, client);
        return;
    }
    if (client.session && client.session->routing && client.session->routing->maxqueue > 0 &&
        pool.waiting.load(std::memory_order_acquire) >= client.session->routing->maxqueue) {
        const route::Routing& routing = *client.session->routing;
        client.pool = nullptr;  // never in the pool's waiter list: nothing to take it out of
        fail(worker, client, CloseReason::TooManyClients, Severity::Fatal,
             sqlstate::too_many_connections,
             "too many clients waiting for node " + routing.node + " of service " +
                 routing.cluster + "." + routing.service,
             "maxqueue = " + std::to_string(routing.maxqueue));
        return;
    }
    server::waiter_push(worker, slot);
    server::want_server(worker, pool);
}

void send_welcome(worker::Worker& worker, Client& client) {
    PGPLEX_ASSERT(client.server != io::nil);
    const server::Server& server = worker.server(client.server);
    std::vector<uint8_t> bytes(256);
    for (const auto& [name, value] : server.parameters)
        bytes.resize(bytes.size() + name.size() + value.size() + 8);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    proto::write_authentication(writer, proto::AuthRequest::Ok);
    for (const auto& [name, value] : server.parameters)
        proto::write_parameter_status(writer, name, value);
    client.cancel_key = worker.random_u32();
    proto::write_backend_key_data(writer, cancel_pid(worker, worker.client_slot(client)),
                                  client.cancel_key);
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, writer.data(), writer.size());
    client.login.reset();
}

}  // namespace pgplex::client
