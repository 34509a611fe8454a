// Opening a server connection: socket, connect, StartupMessage, authentication (trust,
// cleartext, md5, SCRAM-SHA-256), then ParameterStatus and BackendKeyData until the first
// ReadyForQuery (protocol-flow.html#PROTOCOL-FLOW-START-UP).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/writer.h"
#include "pgplex/route/router.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_listen.h"
#include "pgplex/server/server_work.h"
#include "pgplex/tls/md5.h"

namespace pgplex::server {

namespace {

using proto::AuthRequest;
using proto::BackendMessage;

// The server TLS settings of the server's pool (its alias's, cluster's or node's, else
// [pgplex]'s), with the context of the newest config that has them.
const config::ServerTls& server_tls_of(const worker::Worker& worker, const Server& server) {
    const config::Config& config = *worker.config;
    const pool::Target& target = server.pool->target;
    return config::current_server_tls(config,
                                      target.server_tls ? *target.server_tls : *config.server_tls);
}

void begin_login(worker::Worker& worker, Server& server);

}  // namespace

// A connected, non-blocking socket of the endpoint's family, installed as a fixed file.
bool open_socket(worker::Worker& worker, Server& server, uint32_t slot, std::string& reason) {
    const config::Endpoint& endpoint = server.pool->target.endpoint;
    int fd = socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        reason = std::string("socket: ") + strerror(errno);
        return false;
    }
    if (endpoint.address.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    int rc = worker.ring.install_file(worker.server_file(slot), fd);
    ::close(fd);
    if (rc < 0) {
        reason = std::string("registering the socket: ") + strerror(-rc);
        return false;
    }
    server.conn.file = worker.server_file(slot);
    return true;
}

void submit_connect(worker::Worker& worker, Server& server) {
    const config::Endpoint& endpoint = server.pool->target.endpoint;
    io_uring_sqe* sqe = worker.ring.sqe();
    io_uring_prep_connect(sqe, int(server.conn.file),
                          reinterpret_cast<const sockaddr*>(&endpoint.address),
                          endpoint.address_bytes);
    sqe->flags |= IOSQE_FIXED_FILE;
    uint32_t slot = worker.server_slot(server);
    io_uring_sqe_set_data64(sqe, io::pack(io::Op::ServerConnect, slot, server.conn.generation));
    ++server.conn.inflight;
}

namespace {

void send_startup(worker::Worker& worker, Server& server) {
    const pool::Target& target = server.pool->target;
    std::vector<uint8_t> bytes(64 + target.user.size() + target.dbname.size());
    for (const auto& [name, value] : target.startup_parameters)
        bytes.resize(bytes.size() + name.size() + value.size() + 2);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    writer.begin_untyped();
    writer.int32(uint32_t(proto::StartupCode::Protocol3));
    writer.cstring("user");
    writer.cstring(target.user);
    writer.cstring("database");
    writer.cstring(target.dbname);
    for (const auto& [name, value] : target.startup_parameters) {
        writer.cstring(name);
        writer.cstring(value);
    }
    writer.int8(0);
    writer.end();
    PGPLEX_ASSERT(writer.ok());
    queue(worker, server, writer.data(), writer.size());
}

void send_password(worker::Worker& worker, Server& server, std::string_view payload) {
    send_message(worker, server, proto::FrontendMessage::PasswordMessage, payload);
}

bool offers(std::string_view mechanisms, std::string_view wanted) {
    for (size_t at = 0; at < mechanisms.size();) {
        size_t end = mechanisms.find('\0', at);
        if (end == std::string_view::npos || end == at) break;
        if (mechanisms.substr(at, end - at) == wanted) return true;
        at = end + 1;
    }
    return false;
}

// server_channel_binding, as libpq's channel_binding: SCRAM-SHA-256-PLUS over TLS when the
// server offers it (prefer, require); "y" when pgplex could bind and the server offered no
// -PLUS (RFC 5802 6: a server that does support it then sees the downgrade); require
// refuses anything else. False with why.
bool choose_binding(const worker::Worker& worker, const Server& server, std::string_view mechanisms,
                    tls::scram::ClientExchange& exchange, std::string& why) {
    config::ChannelBinding policy = server_tls_of(worker, server).channel_binding;
    const tls::Session* session = server.conn.tls.get();
    bool over_tls = session != nullptr && session->established();
    std::string end_point = over_tls ? session->peer_end_point() : std::string();
    bool plus = offers(mechanisms, "SCRAM-SHA-256-PLUS");
    if (policy != config::ChannelBinding::Disable && plus && !end_point.empty()) {
        exchange.bind(tls::scram::Binding::EndPoint, std::move(end_point));
        return true;
    }
    if (policy == config::ChannelBinding::Require) {
        why = !over_tls ? "server_channel_binding = \"require\", and the connection to the "
                          "server is not encrypted"
              : !plus   ? "server_channel_binding = \"require\", and the server does not "
                          "offer SCRAM-SHA-256-PLUS"
                        : "server_channel_binding = \"require\", and the server's certificate "
                          "has no hash to bind to";
        return false;
    }
    if (!offers(mechanisms, "SCRAM-SHA-256")) {
        why = "the server offers no SASL mechanism pgplex supports";
        return false;
    }
    bool could = over_tls && policy != config::ChannelBinding::Disable && !end_point.empty();
    exchange.bind(could ? tls::scram::Binding::Supported : tls::scram::Binding::None);
    return true;
}

bool start_scram(worker::Worker& worker, Server& server, std::string_view mechanisms,
                 std::string& why) {
    pool::Pool& pool = *server.pool;
    const std::string& password = pool.target.password;
    auto login = std::make_unique<ServerLogin>();
    if (tls::scram::is_secret(password)) {
        if (!pool.scram_keys_ready.load(std::memory_order_acquire)) {
            why = "the auth file holds only a SCRAM secret for user \"" + pool.target.user +
                  "\", and no client has logged in with it yet to lend its key";
            return false;
        }
        login->scram = std::make_unique<tls::scram::ClientExchange>(
            tls::scram::ClientExchange::with_keys(pool.scram_client_key, pool.scram_server_key));
    } else if (tls::md5::is_hash(password)) {
        why = "the server wants SCRAM but only an md5 hash is known for user \"" +
              pool.target.user + "\"";
        return false;
    } else {
        login->scram = std::make_unique<tls::scram::ClientExchange>(
            tls::scram::ClientExchange::with_password(password));
    }
    if (!choose_binding(worker, server, mechanisms, *login->scram, why)) return false;
    std::string first = login->scram->client_first();
    std::string payload = login->scram->mechanism();
    payload.push_back('\0');
    uint32_t size = uint32_t(first.size());
    uint8_t length[4] = {uint8_t(size >> 24), uint8_t(size >> 16), uint8_t(size >> 8),
                         uint8_t(size)};
    payload.append(reinterpret_cast<char*>(length), 4);
    payload += first;
    send_password(worker, server, payload);
    server.login = std::move(login);
    return true;
}

// server_channel_binding = "require": the server may not log pgplex in, nor ask for a
// password, other than through SCRAM-SHA-256-PLUS (libpq's check, which stops a man in the
// middle from answering "trust" or asking for the password in clear).
bool binding_allows(const worker::Worker& worker, const Server& server, AuthRequest request,
                    std::string& why) {
    if (server_tls_of(worker, server).channel_binding != config::ChannelBinding::Require)
        return true;
    const tls::scram::ClientExchange* scram = server.login ? server.login->scram.get() : nullptr;
    bool bound = scram != nullptr && scram->binding() == tls::scram::Binding::EndPoint;
    switch (request) {
        case AuthRequest::Ok:
            if (bound && scram->finished()) return true;
            why =
                "server_channel_binding = \"require\", and the server logged pgplex in "
                "without channel binding";
            return false;
        case AuthRequest::SASL:
        case AuthRequest::SASLContinue:
        case AuthRequest::SASLFinal:
            return true;
        case AuthRequest::CleartextPassword:
        case AuthRequest::MD5Password:
        case AuthRequest::KerberosV5:
        case AuthRequest::GSS:
        case AuthRequest::GSSContinue:
        case AuthRequest::SSPI:
            break;
    }
    why =
        "server_channel_binding = \"require\", and the server asks for a password "
        "without SCRAM channel binding";
    return false;
}

// Answers one Authentication message. Returns false with why on failure.
bool on_authentication(worker::Worker& worker, Server& server, const uint8_t* body, uint32_t size,
                       std::string& why) {
    auto request = static_cast<AuthRequest>(proto::read_be32(body));
    const pool::Target& target = server.pool->target;
    const std::string& password = target.password;
    std::string_view data(reinterpret_cast<const char*>(body + 4), size - 4);
    if (!binding_allows(worker, server, request, why)) return false;
    switch (request) {
        case AuthRequest::Ok:
            return true;
        case AuthRequest::CleartextPassword:
            if (password.empty() || tls::md5::is_hash(password) ||
                tls::scram::is_secret(password)) {
                why =
                    "the server asks for a cleartext password, and pgplex knows none for user \"" +
                    target.user + "\"";
                return false;
            }
            send_password(worker, server, std::string(password) + '\0');
            return true;
        case AuthRequest::MD5Password: {
            if (data.size() != 4 || password.empty() || tls::scram::is_secret(password)) {
                why = "the server asks for an md5 password, and pgplex knows none for user \"" +
                      target.user + "\"";
                return false;
            }
            std::array<uint8_t, 4> salt;
            memcpy(salt.data(), data.data(), 4);
            std::string hash = tls::md5::is_hash(password)
                                   ? password
                                   : tls::md5::password_hash(target.user, password);
            send_password(worker, server, tls::md5::response_from_hash(hash, salt) + '\0');
            return true;
        }
        case AuthRequest::SASL:
            return start_scram(worker, server, data, why);
        case AuthRequest::SASLContinue: {
            std::string final_message;
            if (!server.login || !server.login->scram ||
                !server.login->scram->handle_server_first(data, final_message, why))
                return false;
            send_password(worker, server, final_message);
            return true;
        }
        case AuthRequest::SASLFinal:
            return server.login && server.login->scram &&
                   server.login->scram->handle_server_final(data, why);
        case AuthRequest::KerberosV5:
        case AuthRequest::GSS:
        case AuthRequest::GSSContinue:
        case AuthRequest::SSPI:
            break;
    }
    why = "the server asks for an authentication method pgplex does not support (" +
          std::to_string(int32_t(request)) + ")";
    return false;
}

// Whether the next client this server would serve was placed on its node as the primary
// (a write, or the primary service): the monitor may have found the node in recovery since
// the client was placed, so the topology alone does not say it.
bool waiter_needs_primary(worker::Worker& worker, const pool::Pool& pool) {
    uint32_t slot = waiter_front(worker, pool);
    if (slot == io::nil) return false;
    const client::Client& client = worker.client(slot);
    if (!client.session || !client.session->routing || !worker.router) return false;
    const route::Routing& routing = *client.session->routing;
    return worker.router->needs_primary(routing, routing.pending);
}

// Whether the server is in recovery (in_hot_standby = on, PostgreSQL 14 and later) on the
// node the topology calls its cluster's primary, or for a client placed there as on the
// primary. Patroni restarts a leader whose postmaster died read-only ("starting as readonly
// because i had the session lock") and promotes it a moment later, and its GET /primary
// answers 200 all along: the data path can see the read-only window before the monitor.
bool primary_in_recovery(worker::Worker& worker, const Server& server) {
    const std::string* standby = parameter(server, "in_hot_standby");
    if (standby == nullptr || *standby != "on") return false;
    if (waiter_needs_primary(worker, *server.pool)) return true;
    worker.refresh_topology();
    if (!worker.topology) return false;
    std::string endpoint = server.pool->target.endpoint.to_string();
    for (const cluster::ClusterStatus& cluster : worker.topology->clusters)
        if (cluster.primary >= 0 &&
            cluster.nodes[size_t(cluster.primary)].endpoint.to_string() == endpoint)
            return true;
    return false;
}

// A login to the primary that finds it in recovery fails as a node that is starting up
// does (57P03): writes sent over it would fail with 25006, so the clients waiting for it
// wait for a node again (reroute_after_failure), and the monitor checks the node now; its
// SQL then finds it in recovery and writes wait for the primary until it is promoted.
void refuse_primary_in_recovery(worker::Worker& worker, Server& server) {
    worker.shared.suspects.report(server.pool->target.endpoint);
    std::string message = "node " + server.pool->target.endpoint.to_string() +
                          " is in recovery (in_hot_standby = on) but routed as the primary";
    std::vector<uint8_t> error(message.size() + 64);
    proto::Writer writer(error.data(), uint32_t(error.size()));
    proto::write_error(writer, proto::Severity::Fatal, sqlstate::cannot_connect_now, message);
    login_failed(worker, server, error.data() + 5, writer.size() - 5, "the primary is in recovery");
}

void login_done(worker::Worker& worker, Server& server) {
    if (server.listener) {
        server.login.reset();
        listener_logged_in(worker, server);
        return;
    }
    if (primary_in_recovery(worker, server)) {
        refuse_primary_in_recovery(worker, server);
        return;
    }
    worker.pools[server.pool->id].connecting--;
    server.pool->login_failed_ms.store(0, std::memory_order_release);
    ++worker.counters.servers_connected;
    // What protects the login, so a log shows whether TLS and channel binding were used.
    const tls::scram::ClientExchange* scram = server.login ? server.login->scram.get() : nullptr;
    std::string how = server.conn.tls ? server.conn.tls->version() : std::string("no TLS");
    if (scram != nullptr) how += std::string(", ") + scram->mechanism();
    log_info("%s: logged in (backend pid %u, worker %u, %s)", log_context(server).c_str(),
             server.backend_pid, worker.index, how.c_str());
    server.login.reset();
    make_available(worker, server);
}

struct LoginHandler {
    worker::Worker& worker;
    Server& server;
    std::string why;
    bool failed = false;
    bool done = false;

    proto::Fate on_header(uint8_t, uint32_t length) {
        if (length > limits::assembled_message_bytes_max) {
            why = "a login message from the server is too long";
            failed = true;
            return proto::Fate::Hold;
        }
        return proto::Fate::Inspect;
    }
    void forward(const uint8_t*, uint32_t, bool) {}
    uint8_t* assembly(uint32_t size) { return server::assembly(server, size); }
    proto::Verdict on_message(uint8_t type, const uint8_t* body, uint32_t size) {
        switch (type) {
            case uint8_t(BackendMessage::Authentication):
                if (!on_authentication(worker, server, body, size, why)) failed = true;
                break;
            case uint8_t(BackendMessage::ParameterStatus): {
                const char* name = reinterpret_cast<const char*>(body);
                size_t name_size = strnlen(name, size);
                if (name_size + 1 < size)
                    set_parameter(server, std::string(name, name_size),
                                  std::string(name + name_size + 1,
                                              strnlen(name + name_size + 1, size - name_size - 1)));
                break;
            }
            case uint8_t(BackendMessage::BackendKeyData):
                server.backend_pid = proto::read_be32(body);
                server.backend_key = proto::read_be32(body + 4);
                break;
            case uint8_t(BackendMessage::ErrorResponse):
                login_failed(worker, server, body, size, "the server refused the login");
                return proto::Verdict::Pause;
            case uint8_t(BackendMessage::ReadyForQuery):
                server.status = static_cast<proto::TransactionStatus>(body[0]);
                done = true;
                return proto::Verdict::Pause;
            case uint8_t(BackendMessage::NoticeResponse):
            case uint8_t(BackendMessage::NegotiateProtocolVersion):
                break;
            default:
                why = "unexpected message during login";
                failed = true;
                break;
        }
        return failed ? proto::Verdict::Pause : proto::Verdict::Continue;
    }
};

}  // namespace

namespace {

// The server's one-byte answer to pgplex's SSLRequest. Returns the bytes used.
uint32_t on_ssl_answer(worker::Worker& worker, Server& server, const uint8_t* data, uint32_t size) {
    server.login->awaiting_ssl = false;
    const config::ServerTls& server_tls = server_tls_of(worker, server);
    if (data[0] == 'S') {
        // Bytes after the 'S' were not encrypted, so anyone on the path could have put them
        // there (CVE-2021-23222): refused, as libpq refuses them.
        if (size > 1 || server.conn.held_in.bytes > size || !server_tls.context) {
            login_failed(worker, server, nullptr, 0,
                         "the server sent unencrypted data after its answer to SSLRequest");
            return size;
        }
        worker.start_tls_client(server.conn, *server_tls.context, server.pool->target.endpoint.host,
                                io::Op::ServerSend, worker.server_slot(server));
        send_startup(worker, server);  // waits for the handshake
        return 1;
    }
    if (data[0] == 'N') {
        if (server_tls.settings.mode >= tls::SslMode::Require) {
            std::string why = std::string(
                                  "the server does not accept TLS, and server_tls_sslmode "
                                  "is \"") +
                              tls::to_string(server_tls.settings.mode) + "\"";
            login_failed(worker, server, nullptr, 0, why.c_str());
            return size;
        }
        send_startup(worker, server);
        return 1;
    }
    return 0;  // an ErrorResponse (too many connections, say): read as any login message
}

}  // namespace

uint32_t login_consume(worker::Worker& worker, Server& server, uint32_t, const uint8_t* data,
                       uint32_t size) {
    if (server.login && server.login->check_alpn && size > 0) {
        // As libpq: a server that took a direct handshake without ALPN "postgresql" may be
        // something else speaking TLS on that port.
        server.login->check_alpn = false;
        if (!server.conn.tls || server.conn.tls->alpn() != "postgresql") {
            login_failed(worker, server, nullptr, 0,
                         "server_tls_negotiation = \"direct\", and the server did not choose "
                         "ALPN \"postgresql\" in the TLS handshake");
            return size;
        }
    }
    if (server.login && server.login->awaiting_ssl && size > 0) {
        uint32_t used = on_ssl_answer(worker, server, data, size);
        if (used > 0) return used;
    }
    LoginHandler handler{worker, server};
    proto::FeedResult result =
        proto::feed(server.conn.frame, proto::Direction::Backend, data, size, handler);
    if (server.state == ServerState::Closing) return size;
    if (result.status == proto::FeedStatus::Violation || handler.failed) {
        login_failed(worker, server, nullptr, 0,
                     handler.failed ? handler.why.c_str() : result.reason);
        return size;
    }
    if (handler.done) login_done(worker, server);
    return result.consumed;
}

void login_failed(worker::Worker& worker, Server& server, const uint8_t* error, uint32_t error_size,
                  const char* why) {
    if (server.listener) {
        listener_login_failed(worker, server, error, error_size, why);
        return;
    }
    pool::Pool& pool = *server.pool;
    proto::ErrorFields fields;
    if (error != nullptr && proto::parse_error(error, error_size, fields))
        log_warning("%s: login failed: %s: %.*s", log_context(server).c_str(), why,
                    int(fields.message.size()), fields.message.data());
    else
        log_warning("%s: login failed: %s", log_context(server).c_str(), why);
    pool.login_failed_ms.store(worker.now, std::memory_order_release);
    pool::PoolLocal& local = worker.pools[pool.id];
    local.connecting--;
    close(worker, server, CloseReason::LoginFailed);
    // Nothing else will serve the waiters soon: tell them now rather than at
    // query_wait_timeout.
    if (local.connecting > 0 || local.idle_count > 0) return;
    std::string message = std::string("pgplex could not log in to the server: ") + why;
    std::vector<uint8_t> own(message.size() + 64);
    if (error == nullptr) {
        proto::Writer writer(own.data(), uint32_t(own.size()));
        proto::write_error(writer, proto::Severity::Fatal,
                           sqlstate::sqlclient_unable_to_establish_sqlconnection, message);
        error = own.data() + 5;
        error_size = writer.size() - 5;
    }
    while (true) {
        uint32_t waiter = waiter_front(worker, pool);
        if (waiter == io::nil) break;
        client::on_server_failed(worker, worker.client(waiter), error, error_size);
    }
}

bool connect(worker::Worker& worker, pool::Pool& pool) {
    uint32_t slot = worker.server_acquire();
    if (slot == io::nil) {
        pool.release_server();
        log_warning("worker %u: no free server slot", worker.index);
        return false;
    }
    Server& server = claim(worker, slot, ServerState::Connecting, pool);
    worker.pools[pool.id].connecting++;
    std::string reason;
    if (!open_socket(worker, server, slot, reason)) {
        server.conn.file = io::nil;
        login_failed(worker, server, nullptr, 0, reason.c_str());
        return false;
    }
    submit_connect(worker, server);
    return true;
}

void on_connected(worker::Worker& worker, Server& server, int result) {
    uint32_t slot = worker.server_slot(server);
    if (result < 0) {
        std::string why = std::string("could not connect: ") + strerror(-result);
        worker.shared.suspects.report(server.pool->target.endpoint);
        if (server.state == ServerState::Cancelling) {
            close(worker, server, CloseReason::CancelDone);
            return;
        }
        login_failed(worker, server, nullptr, 0, why.c_str());
        return;
    }
    worker.arm_recv(server.conn, io::Op::ServerRecv, slot);
    if (server.state == ServerState::Cancelling) {
        begin_cancel(worker, server);
        return;
    }
    set_state(worker, server, ServerState::Login);
    begin_login(worker, server);
}

namespace {

// The CancelRequest itself; PostgreSQL closes the connection once it has signalled the
// backend (cancel_done). Under TLS it waits in the queue for the handshake.
void send_cancel_request(worker::Worker& worker, Server& server) {
    uint8_t packet[16];
    proto::Writer writer(packet, sizeof packet);
    writer.begin_untyped();
    writer.int32(uint32_t(proto::StartupCode::CancelRequest));
    writer.int32(server.cancel_pid);
    writer.int32(server.cancel_key);
    writer.end();
    queue(worker, server, writer.data(), writer.size());
}

void send_ssl_request(worker::Worker& worker, Server& server) {
    if (!server.login) server.login = std::make_unique<ServerLogin>();
    server.login->awaiting_ssl = true;
    uint8_t request[8];
    proto::Writer writer(request, sizeof request);
    writer.begin_untyped();
    writer.int32(uint32_t(proto::StartupCode::SSLRequest));
    writer.end();
    queue(worker, server, writer.data(), writer.size());
}

}  // namespace

// A cancel request goes as the server's own connections do: under the same TLS (PostgreSQL
// accepts a CancelRequest after SSLRequest, or over direct TLS), so the key that lets anyone
// cancel the client's statement never crosses the network in clear when TLS is asked for.
void begin_cancel(worker::Worker& worker, Server& server) {
    const config::ServerTls& server_tls = server_tls_of(worker, server);
    const config::Endpoint& endpoint = server.pool->target.endpoint;
    if (!server_tls.context || endpoint.is_unix()) {
        send_cancel_request(worker, server);
        return;
    }
    if (server_tls.negotiation == config::TlsNegotiation::Direct) {
        worker.start_tls_client(server.conn, *server_tls.context, endpoint.host, io::Op::ServerSend,
                                worker.server_slot(server));
        send_cancel_request(worker, server);
        return;
    }
    send_ssl_request(worker, server);
}

// The server's answer to a cancel connection's SSLRequest: the CancelRequest follows, in TLS
// after 'S'; in clear after 'N' only when server_tls_sslmode allows plain text. Returns the
// bytes used; the rest of what a cancel connection receives is ignored.
uint32_t cancel_consume(worker::Worker& worker, Server& server, const uint8_t* data,
                        uint32_t size) {
    if (!server.login || !server.login->awaiting_ssl || size == 0) return size;
    server.login->awaiting_ssl = false;
    const config::ServerTls& server_tls = server_tls_of(worker, server);
    bool plain_allowed = server_tls.settings.mode < tls::SslMode::Require;
    if (data[0] == 'S' && size == 1 && server.conn.held_in.bytes <= size) {
        worker.start_tls_client(server.conn, *server_tls.context, server.pool->target.endpoint.host,
                                io::Op::ServerSend, worker.server_slot(server));
        send_cancel_request(worker, server);
    } else if (data[0] == 'N' && plain_allowed) {
        send_cancel_request(worker, server);
    } else {
        log_warning("%s: cancel request not sent: %s", log_context(server).c_str(),
                    data[0] == 'N' ? "the server does not accept TLS, and server_tls_sslmode "
                                     "requires it"
                                   : "unexpected answer to SSLRequest");
        close(worker, server, CloseReason::CancelDone);
    }
    return size;
}

namespace {

// server_tls_sslmode prefer and up: an SSLRequest first, or with server_tls_negotiation =
// "direct" the TLS handshake at once (PostgreSQL 17's sslnegotiation=direct, ALPN
// "postgresql"); the StartupMessage waits in the queue for the handshake. PostgreSQL speaks
// no TLS over its Unix socket (it says 'N' there): such servers are never asked.
void begin_login(worker::Worker& worker, Server& server) {
    const config::ServerTls& server_tls = server_tls_of(worker, server);
    const config::Endpoint& endpoint = server.pool->target.endpoint;
    if (server_tls.context && !endpoint.is_unix() &&
        server_tls.negotiation == config::TlsNegotiation::Direct) {
        if (!server.login) server.login = std::make_unique<ServerLogin>();
        server.login->check_alpn = true;
        worker.start_tls_client(server.conn, *server_tls.context, endpoint.host, io::Op::ServerSend,
                                worker.server_slot(server));
        send_startup(worker, server);
        return;
    }
    if (server_tls.context && !endpoint.is_unix()) {
        send_ssl_request(worker, server);
        return;
    }
    send_startup(worker, server);
}

}  // namespace

void on_tls_failed(worker::Worker& worker, Server& server, const std::string& reason) {
    if (server.state == ServerState::Login) {
        login_failed(worker, server, nullptr, 0, reason.c_str());
        return;
    }
    log_warning("%s: %s", log_context(server).c_str(), reason.c_str());
    on_recv_end(worker, server, -EPROTO);
}

void send_cancel(worker::Worker& worker, Server& target) {
    uint32_t slot = worker.server_acquire();
    if (slot == io::nil) return;
    Server& server = claim(worker, slot, ServerState::Cancelling, *target.pool);
    server.cancel_pid = target.backend_pid;
    server.cancel_key = target.backend_key;
    std::string reason;
    if (!open_socket(worker, server, slot, reason)) {
        log_warning("cancel: %s", reason.c_str());
        set_state(worker, server, ServerState::Free);
        worker.server_release_slot(slot);
        return;
    }
    server.cancel_of = worker.server_slot(target);
    server.cancel_of_generation = target.conn.generation;
    ++target.cancels_in_flight;
    submit_connect(worker, server);
}

Server& claim(worker::Worker& worker, uint32_t slot, ServerState state, pool::Pool& pool) {
    Server& server = worker.server(slot);
    PGPLEX_ASSERT(server.state == ServerState::Free);
    uint32_t generation = server.conn.generation + 1;
    server.conn = io::Conn{};
    server.conn.generation = generation;
    set_state(worker, server, state);
    server.pool = &pool;
    server.listener = false;
    server.created = worker.now;
    server.parameters.clear();
    server.applied.reset();
    server.pending_syncs = 0;
    server.unsynced = false;
    server.status = proto::TransactionStatus::Idle;
    return server;
}

}  // namespace pgplex::server
