// TLS in user space, without sockets: OpenSSL reads ciphertext from and writes ciphertext to
// memory BIOs, so the io_uring data path keeps its own receives and sends (io/loop.h) and a
// session is driven by the bytes handed to it. A Context is one [pgplex] TLS configuration
// (certificate, key, CA, protocols, ciphers), immutable once built and shared by every
// worker; a Session is one connection's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;
using BIO = struct bio_st;
using SSL_METHOD = struct ssl_method_st;

namespace pgplex::tls {

// PgBouncer's client_tls_sslmode / server_tls_sslmode values.
enum class SslMode : uint8_t { Disable, Allow, Prefer, Require, VerifyCa, VerifyFull };

const char* to_string(SslMode mode);
bool parse_ssl_mode(std::string_view text, SslMode& out);

struct Settings {
    SslMode mode = SslMode::Disable;
    std::string cert_file;
    std::string key_file;
    std::string ca_file;
    std::string protocols = "secure";  // "secure" (TLS 1.2 and 1.3), "all", or a list
    std::string ciphers = "default";
    std::string tls13_ciphers;  // empty: OpenSSL's
};

class Context {
  public:
    // The server side (toward clients): certificate and key are required; with a CA file,
    // client certificates are asked for (required from verify-ca on). Null on error, with
    // `error` saying why (a file that cannot be read, a key that does not match...).
    static std::shared_ptr<const Context> make_server(const Settings& settings, std::string& error);
    // The client side (toward servers): verify-ca and verify-full check the server's
    // certificate against ca_file (verify-full also its name, per Session); cert_file and
    // key_file, when set, are presented to servers that ask for a client certificate.
    static std::shared_ptr<const Context> make_client(const Settings& settings, std::string& error);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    SSL_CTX* raw() const { return ctx_; }
    const Settings& settings() const { return settings_; }

  private:
    Context(SSL_CTX* ctx, Settings settings) : ctx_(ctx), settings_(std::move(settings)) {}
    // What both sides share: protocols, options, cipher lists; `side` ("client" or
    // "server") names the settings in errors. Null on error.
    static std::shared_ptr<Context> make_context(const SSL_METHOD* method, const Settings& settings,
                                                 const char* side, std::string& error);
    SSL_CTX* ctx_;
    Settings settings_;
};

// What a Session wants after being fed.
enum class Status : uint8_t {
    Ok,      // go on: read() what is readable, send what pending() holds
    Closed,  // the peer sent close_notify
    Failed,  // a TLS error (reason() says which); the connection must be closed
};

class Session {
  public:
    // The server side of one connection, on a context that outlives nothing: the session
    // holds its own reference to the SSL_CTX.
    explicit Session(const Context& context);
    // The client side, toward `host` (a name or an address): sent as SNI when a name, and
    // checked against the certificate under verify-full. start() makes the ClientHello.
    Session(const Context& context, const std::string& host);
    void start();
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Ciphertext from the peer.
    void feed(const uint8_t* data, uint32_t size);
    // Plaintext decrypted from what was fed, up to `capacity` bytes; 0 when nothing more is
    // readable now (see status()).
    uint32_t read(uint8_t* out, uint32_t capacity);
    // Plaintext to the peer, encrypted whole into pending(). False on error.
    bool write(const uint8_t* data, uint32_t size);
    // Ciphertext to send: how much, and taking it.
    size_t pending() const;
    uint32_t take(uint8_t* out, uint32_t capacity);
    // Sends close_notify (into pending()).
    void shutdown();

    Status status() const { return status_; }
    bool established() const { return established_; }
    const std::string& reason() const { return reason_; }
    // After the handshake: the protocol ("TLSv1.3"), cipher, the ALPN protocol the client
    // offered and got ("postgresql", or empty), and the client certificate's common name
    // (empty when none was sent).
    std::string version() const;
    std::string cipher() const;
    std::string alpn() const;
    std::string peer_common_name() const;
    bool peer_verified() const;
    // tls-server-end-point channel binding data (RFC 5929): the hash of our certificate on
    // the server side; on the client side, peer_end_point() is the server certificate's
    // (empty before the handshake, or when the certificate's algorithm names no digest).
    std::string server_end_point() const;
    std::string peer_end_point() const;

  private:
    void attach(const Context& context);  // the SSL and its two memory BIOs
    void fail();
    SSL* ssl_ = nullptr;
    BIO* in_ = nullptr;   // ciphertext from the peer (owned by ssl_)
    BIO* out_ = nullptr;  // ciphertext to the peer (owned by ssl_)
    Status status_ = Status::Ok;
    bool established_ = false;
    std::string reason_;
};

}  // namespace pgplex::tls
