// tls::Session and tls::Context: the server side of a handshake driven through memory
// alone, against an OpenSSL client the test drives the same way; ALPN; garbage; bad files.
#include "pgplex/tls/session.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <filesystem>
#include <string>
#include <vector>

#include "../../support/tls_identity.h"
#include "../support.h"

using pgplex::tls::Context;
using pgplex::tls::Session;
using pgplex::tls::Settings;
using pgplex::tls::SslMode;
using pgplex::tls::Status;

namespace {

struct Fixture {
    tls_test::Identity identity = tls_test::make_identity();
    std::shared_ptr<const Context> context;
    Fixture() {
        cr_assert(!identity.dir.empty(), "could not make a test identity");
        Settings settings;
        settings.mode = SslMode::Require;
        settings.cert_file = identity.cert_file;
        settings.key_file = identity.key_file;
        std::string error;
        context = Context::make_server(settings, error);
        cr_assert(context != nullptr, "%s", error.c_str());
    }
    ~Fixture() { std::filesystem::remove_all(identity.dir); }
};

// An OpenSSL client on memory BIOs.
struct Client {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = nullptr;
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    explicit Client(const char* alpn, const std::string& ca_file) {
        SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        ssl = SSL_new(ctx);
        BIO_set_mem_eof_return(in, -1);
        BIO_set_mem_eof_return(out, -1);
        SSL_set_bio(ssl, in, out);
        SSL_set_connect_state(ssl);
        SSL_set_tlsext_host_name(ssl, "localhost");
        if (alpn != nullptr) {
            std::string wire(1, char(strlen(alpn)));
            wire += alpn;
            SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                                unsigned(wire.size()));
        }
    }
    ~Client() {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }
};

// Moves the client's ciphertext to the server and back until neither has any; returns
// the plaintext the server read meanwhile.
std::string pump(Client& client, Session& server) {
    std::string read;
    for (int round = 0; round < 20; ++round) {
        SSL_do_handshake(client.ssl);
        uint8_t bytes[16384];
        bool moved = false;
        int got;
        while ((got = BIO_read(client.out, bytes, sizeof bytes)) > 0) {
            server.feed(bytes, uint32_t(got));
            moved = true;
        }
        uint32_t plain;
        while ((plain = server.read(bytes, sizeof bytes)) > 0)
            read.append(reinterpret_cast<char*>(bytes), plain);
        uint32_t taken;
        while ((taken = server.take(bytes, sizeof bytes)) > 0) {
            BIO_write(client.in, bytes, int(taken));
            moved = true;
        }
        if (!moved) break;
    }
    ERR_clear_error();
    return read;
}

}  // namespace

Test(tls_session, handshake_then_plaintext_both_ways_with_alpn_postgresql) {
    Fixture fixture;
    Session server(*fixture.context);
    Client client("postgresql", fixture.identity.cert_file);
    pump(client, server);
    cr_assert(server.established());
    cr_assert_eq(SSL_is_init_finished(client.ssl), 1);
    cr_assert_eq(SSL_get_verify_result(client.ssl), X509_V_OK);
    assert_text(server.alpn(), "postgresql");
    cr_assert(server.version() == "TLSv1.3" || server.version() == "TLSv1.2");
    std::string hello = "a StartupMessage, say";
    SSL_write(client.ssl, hello.data(), int(hello.size()));
    assert_text(pump(client, server), hello);
    std::string reply(70000, 'r');  // several records
    cr_assert(server.write(reinterpret_cast<const uint8_t*>(reply.data()), uint32_t(reply.size())));
    pump(client, server);
    std::string got;
    char bytes[16384];
    int n;
    while ((n = SSL_read(client.ssl, bytes, sizeof bytes)) > 0) got.append(bytes, size_t(n));
    cr_assert_eq(got.size(), reply.size());
    cr_assert(got == reply);
    cr_assert_eq(server.server_end_point().size(), 32u);  // SHA-256 of a P-256/SHA-256 cert
    SSL_shutdown(client.ssl);
    pump(client, server);
    cr_assert_eq(int(server.status()), int(Status::Closed));
}

Test(tls_session, no_alpn_is_accepted_and_told_apart) {
    Fixture fixture;
    Session server(*fixture.context);
    Client client(nullptr, fixture.identity.cert_file);
    pump(client, server);
    cr_assert(server.established());
    assert_text(server.alpn(), "");
}

Test(tls_session, alpn_without_postgresql_fails_the_handshake) {
    Fixture fixture;
    Session server(*fixture.context);
    Client client("http/1.1", fixture.identity.cert_file);
    pump(client, server);
    cr_assert(!server.established());
    cr_assert_eq(int(server.status()), int(Status::Failed));
    cr_assert(!server.reason().empty());
}

Test(tls_session, garbage_fails_with_a_reason_and_nothing_readable) {
    Fixture fixture;
    Session server(*fixture.context);
    std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    server.feed(reinterpret_cast<const uint8_t*>(garbage.data()), uint32_t(garbage.size()));
    uint8_t bytes[1024];
    cr_assert_eq(server.read(bytes, sizeof bytes), 0u);
    cr_assert_eq(int(server.status()), int(Status::Failed));
    cr_assert(!server.reason().empty());
    cr_assert(!server.write(bytes, 1));  // never established: nothing can be sent
}

Test(tls_context, refuses_a_key_of_another_certificate_and_missing_files) {
    Fixture fixture;
    tls_test::Identity other = tls_test::make_identity("other");
    Settings settings;
    settings.mode = SslMode::Require;
    settings.cert_file = fixture.identity.cert_file;
    settings.key_file = other.key_file;
    std::string error;
    cr_assert(Context::make_server(settings, error) == nullptr);
    cr_assert(error.find(other.key_file) != std::string::npos, "%s", error.c_str());
    settings.key_file = fixture.identity.key_file;
    settings.cert_file = fixture.identity.dir + "/absent.pem";
    error.clear();
    cr_assert(Context::make_server(settings, error) == nullptr);
    cr_assert(error.find("absent.pem") != std::string::npos, "%s", error.c_str());
    settings.cert_file = fixture.identity.cert_file;
    settings.mode = SslMode::VerifyCa;  // needs a CA file
    error.clear();
    cr_assert(Context::make_server(settings, error) == nullptr);
    cr_assert(error.find("client_tls_ca_file") != std::string::npos, "%s", error.c_str());
    settings.mode = SslMode::Require;
    settings.protocols = "tlsv1.1";
    error.clear();
    cr_assert(Context::make_server(settings, error) == nullptr);
    cr_assert(error.find("tlsv1.1") != std::string::npos, "%s", error.c_str());
    std::filesystem::remove_all(other.dir);
}

Test(tls_context, ssl_modes_parse_as_pgbouncer_spells_them) {
    for (const char* name : {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}) {
        SslMode mode;
        cr_assert(pgplex::tls::parse_ssl_mode(name, mode), "%s", name);
        assert_text(pgplex::tls::to_string(mode), name);
    }
    SslMode mode;
    cr_assert(!pgplex::tls::parse_ssl_mode("on", mode));
}

// Both ends are pgplex's Sessions: the client side (toward a server) against the server
// side (toward clients). Returns whether the client's handshake finished.
static bool handshake(Session& client, Session& server) {
    client.start();
    uint8_t bytes[16384];
    for (int round = 0; round < 20; ++round) {
        bool moved = false;
        uint32_t got;
        while ((got = client.take(bytes, sizeof bytes)) > 0) {
            server.feed(bytes, got);
            moved = true;
        }
        server.read(bytes, sizeof bytes);
        while ((got = server.take(bytes, sizeof bytes)) > 0) {
            client.feed(bytes, got);
            moved = true;
        }
        client.read(bytes, sizeof bytes);
        if (!moved) break;
    }
    return client.established();
}

Test(tls_session, client_side_verify_full_checks_the_name) {
    Fixture fixture;
    Settings settings;
    settings.mode = SslMode::VerifyFull;
    settings.ca_file = fixture.identity.cert_file;  // self-signed: its own CA
    std::string error;
    std::shared_ptr<const Context> client_context = Context::make_client(settings, error);
    cr_assert(client_context != nullptr, "%s", error.c_str());
    {
        Session server(*fixture.context);
        Session client(*client_context, "localhost");
        cr_assert(handshake(client, server), "%s", client.reason().c_str());
        assert_text(client.alpn(), "postgresql");
        std::string text = "StartupMessage";
        cr_assert(
            client.write(reinterpret_cast<const uint8_t*>(text.data()), uint32_t(text.size())));
        uint8_t bytes[256];
        uint32_t got = client.take(bytes, sizeof bytes);
        server.feed(bytes, got);
        got = server.read(bytes, sizeof bytes);
        assert_text(std::string(reinterpret_cast<char*>(bytes), got), text);
    }
    {
        Session server(*fixture.context);
        Session client(*client_context, "elsewhere.example");
        cr_assert(!handshake(client, server));
        cr_assert_eq(int(client.status()), int(Status::Failed));
        cr_assert(client.reason().find("certificate verify failed") != std::string::npos, "%s",
                  client.reason().c_str());
    }
    settings.mode = SslMode::Require;  // no verification: any name
    std::shared_ptr<const Context> lax = Context::make_client(settings, error);
    Session server(*fixture.context);
    Session client(*lax, "elsewhere.example");
    cr_assert(handshake(client, server));
}
