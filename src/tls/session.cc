// See session.h.
#include "pgplex/tls/session.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "pgplex/base/assert.h"

namespace pgplex::tls {

namespace {

constexpr std::string_view alpn_postgresql = "postgresql";

std::string openssl_error(std::string_view what) {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return std::string(what);
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    return std::string(what) + ": " + text;
}

// PgBouncer's cipher names (libusual's tls.c): each a readable name for an OpenSSL list.
std::string cipher_list(const std::string& ciphers) {
    if (ciphers == "default" || ciphers == "secure" || ciphers == "normal" || ciphers == "fast")
        return "HIGH:!aNULL:!MD5:!3DES:!RC4";
    if (ciphers == "compat" || ciphers == "all") return "HIGH:MEDIUM:!aNULL:!MD5:!RC4";
    return ciphers;
}

// "secure" and "all" (TLS 1.2 and 1.3: OpenSSL 3 refuses older ones at its default security
// level), or a list such as "tlsv1.2,tlsv1.3".
bool protocol_range(const std::string& protocols, int& min, int& max, std::string& error) {
    if (protocols == "secure" || protocols == "all" || protocols == "default" ||
        protocols.empty()) {
        min = TLS1_2_VERSION;
        max = TLS1_3_VERSION;
        return true;
    }
    min = INT_MAX;
    max = 0;
    size_t at = 0;
    while (at <= protocols.size()) {
        size_t end = protocols.find_first_of(", :", at);
        if (end == std::string::npos) end = protocols.size();
        std::string name = protocols.substr(at, end - at);
        at = end + 1;
        if (name.empty()) continue;
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return char(std::tolower(c)); });
        int version = name == "tlsv1.2" ? TLS1_2_VERSION : name == "tlsv1.3" ? TLS1_3_VERSION : 0;
        if (version == 0) {
            error = "unknown TLS protocol \"" + name +
                    "\" (pgplex speaks tlsv1.2 and tlsv1.3; \"secure\" means both)";
            return false;
        }
        min = std::min(min, version);
        max = std::max(max, version);
    }
    if (max == 0) {
        error = "no TLS protocol named";
        return false;
    }
    return true;
}

// ALPN: PostgreSQL 17 clients offer "postgresql" (required for direct TLS). A client that
// offers only other protocols is refused, as PostgreSQL refuses it.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_size, const unsigned char* in,
                unsigned int in_size, void*) {
    unsigned int at = 0;
    while (at < in_size) {
        unsigned int size = in[at];
        if (at + 1 + size > in_size) break;
        std::string_view offered(reinterpret_cast<const char*>(in + at + 1), size);
        if (offered == alpn_postgresql) {
            *out = in + at + 1;
            *out_size = static_cast<unsigned char>(size);
            return SSL_TLSEXT_ERR_OK;
        }
        at += 1 + size;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// tls-server-end-point data (RFC 5929 4.1): the certificate's hash with the digest of its
// signature algorithm, SHA-256 where that is MD5 or SHA-1, as PostgreSQL's
// be_tls_get_certificate_hash computes it. Empty when there is no certificate or its
// signature algorithm names no digest (PostgreSQL refuses to bind to such a certificate).
std::string end_point_of(X509* certificate) {
    if (certificate == nullptr) return {};
    int digest_nid = NID_undef;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(certificate), &digest_nid, nullptr) != 1)
        return {};
    if (digest_nid == NID_md5 || digest_nid == NID_sha1) digest_nid = NID_sha256;
    const EVP_MD* md = EVP_get_digestbynid(digest_nid);
    if (md == nullptr) return {};
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (X509_digest(certificate, md, hash, &size) != 1) return {};
    return std::string(reinterpret_cast<const char*>(hash), size);
}

}  // namespace

const char* to_string(SslMode mode) {
    switch (mode) {
        case SslMode::Disable:
            return "disable";
        case SslMode::Allow:
            return "allow";
        case SslMode::Prefer:
            return "prefer";
        case SslMode::Require:
            return "require";
        case SslMode::VerifyCa:
            return "verify-ca";
        case SslMode::VerifyFull:
            return "verify-full";
    }
    return "?";
}

bool parse_ssl_mode(std::string_view text, SslMode& out) {
    static constexpr SslMode modes[] = {SslMode::Disable, SslMode::Allow,    SslMode::Prefer,
                                        SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull};
    for (SslMode mode : modes) {
        if (text == to_string(mode)) {
            out = mode;
            return true;
        }
    }
    return false;
}

std::shared_ptr<Context> Context::make_context(const SSL_METHOD* method, const Settings& settings,
                                               const char* side, std::string& error) {
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(method);
    if (ctx == nullptr) {
        error = openssl_error("cannot make a TLS context");
        return nullptr;
    }
    std::shared_ptr<Context> context(new Context(ctx, settings));
    int min = 0;
    int max = 0;
    if (!protocol_range(settings.protocols, min, max, error)) return nullptr;
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_max_proto_version(ctx, max);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    std::string prefix = std::string(side) + "_tls";
    if (SSL_CTX_set_cipher_list(ctx, cipher_list(settings.ciphers).c_str()) != 1) {
        error = openssl_error(prefix + "_ciphers \"" + settings.ciphers + "\" names no cipher");
        return nullptr;
    }
    if (!settings.tls13_ciphers.empty() &&
        SSL_CTX_set_ciphersuites(ctx, settings.tls13_ciphers.c_str()) != 1) {
        error = openssl_error(std::string(side) + "_tls13_ciphers \"" + settings.tls13_ciphers +
                              "\" names no TLS 1.3 cipher suite");
        return nullptr;
    }
    return context;
}

std::shared_ptr<const Context> Context::make_server(const Settings& settings, std::string& error) {
    std::shared_ptr<Context> context = make_context(TLS_server_method(), settings, "client", error);
    if (!context) return nullptr;
    SSL_CTX* ctx = context->raw();
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (settings.cert_file.empty() || settings.key_file.empty()) {
        error = "TLS toward clients needs client_tls_cert_file and client_tls_key_file";
        return nullptr;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert_file.c_str()) != 1) {
        error = openssl_error("cannot load certificate \"" + settings.cert_file + "\"");
        return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        error = openssl_error("cannot load private key \"" + settings.key_file + "\"");
        return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        error = openssl_error("private key \"" + settings.key_file +
                              "\" does not match certificate \"" + settings.cert_file + "\"");
        return nullptr;
    }
    bool verify = settings.mode == SslMode::VerifyCa || settings.mode == SslMode::VerifyFull;
    if (verify && settings.ca_file.empty()) {
        error = std::string("client_tls_sslmode = \"") + to_string(settings.mode) +
                "\" needs client_tls_ca_file to verify client certificates with";
        return nullptr;
    }
    if (!settings.ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(ctx, settings.ca_file.c_str(), nullptr) != 1) {
            error = openssl_error("cannot load CA file \"" + settings.ca_file + "\"");
            return nullptr;
        }
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(settings.ca_file.c_str());
        if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    }
    // With a CA file, a certificate is asked for (and checked when sent) whatever the mode,
    // for hba's "cert" method; verify-ca and verify-full require one.
    if (verify)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    else if (!settings.ca_file.empty())
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
    static const unsigned char session_id[] = "pgplex";
    SSL_CTX_set_session_id_context(ctx, session_id, sizeof session_id - 1);
    ERR_clear_error();
    return context;
}

std::shared_ptr<const Context> Context::make_client(const Settings& settings, std::string& error) {
    std::shared_ptr<Context> context = make_context(TLS_client_method(), settings, "server", error);
    if (!context) return nullptr;
    SSL_CTX* ctx = context->raw();
    bool verify = settings.mode == SslMode::VerifyCa || settings.mode == SslMode::VerifyFull;
    if (verify && settings.ca_file.empty()) {
        error = std::string("server_tls_sslmode = \"") + to_string(settings.mode) +
                "\" needs server_tls_ca_file to verify the servers' certificates with";
        return nullptr;
    }
    if (!settings.ca_file.empty() &&
        SSL_CTX_load_verify_locations(ctx, settings.ca_file.c_str(), nullptr) != 1) {
        error = openssl_error("cannot load CA file \"" + settings.ca_file + "\"");
        return nullptr;
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (!settings.cert_file.empty() || !settings.key_file.empty()) {
        if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert_file.c_str()) != 1) {
            error = openssl_error("cannot load certificate \"" + settings.cert_file + "\"");
            return nullptr;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            error = openssl_error("cannot load private key \"" + settings.key_file + "\"");
            return nullptr;
        }
    }
    // PostgreSQL 17 servers want ALPN "postgresql" for direct TLS; earlier ones ignore it.
    static const unsigned char alpn[] = "\x0apostgresql";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    ERR_clear_error();
    return context;
}

Context::~Context() {
    SSL_CTX_free(ctx_);
}

Session::Session(const Context& context) {
    attach(context);
    SSL_set_accept_state(ssl_);
}

void Session::attach(const Context& context) {
    ssl_ = SSL_new(context.raw());
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    PGPLEX_ASSERT(ssl_ != nullptr && in_ != nullptr && out_ != nullptr);
    BIO_set_mem_eof_return(in_, -1);  // no more ciphertext yet: retry, not EOF
    BIO_set_mem_eof_return(out_, -1);
    SSL_set_bio(ssl_, in_, out_);  // ssl_ owns both from now on
}

Session::Session(const Context& context, const std::string& host) {
    attach(context);
    SSL_set_connect_state(ssl_);
    unsigned char address[16];
    bool is_address = inet_pton(AF_INET, host.c_str(), address) == 1 ||
                      inet_pton(AF_INET6, host.c_str(), address) == 1;
    if (!is_address && !host.empty()) SSL_set_tlsext_host_name(ssl_, host.c_str());
    if (context.settings().mode == SslMode::VerifyFull) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
        if (is_address)
            X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
        else
            SSL_set1_host(ssl_, host.c_str());
    }
}

void Session::start() {
    int rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
        int error = SSL_get_error(ssl_, rc);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) fail();
    }
    ERR_clear_error();
}

Session::~Session() {
    SSL_free(ssl_);  // frees both BIOs
}

void Session::fail() {
    status_ = Status::Failed;
    reason_ = openssl_error("TLS error");
    if (reason_ == "TLS error") reason_ = "TLS error: the connection failed";
}

void Session::feed(const uint8_t* data, uint32_t size) {
    if (status_ != Status::Ok || size == 0) return;
    int wrote = BIO_write(in_, data, int(size));
    PGPLEX_ASSERT(wrote == int(size));  // a memory BIO grows
}

uint32_t Session::read(uint8_t* out, uint32_t capacity) {
    if (status_ != Status::Ok || capacity == 0) return 0;
    int got = SSL_read(ssl_, out, int(std::min<uint32_t>(capacity, INT_MAX)));
    established_ = SSL_is_init_finished(ssl_) == 1;
    if (got > 0) return uint32_t(got);
    switch (SSL_get_error(ssl_, got)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            ERR_clear_error();
            return 0;
        case SSL_ERROR_ZERO_RETURN:
            status_ = Status::Closed;
            return 0;
        default:
            fail();
            return 0;
    }
}

bool Session::write(const uint8_t* data, uint32_t size) {
    if (status_ != Status::Ok || !established_) return false;
    while (size > 0) {
        int wrote = SSL_write(ssl_, data, int(std::min<uint32_t>(size, 1u << 30)));
        if (wrote <= 0) {
            fail();
            return false;
        }
        data += wrote;
        size -= uint32_t(wrote);
    }
    return true;
}

size_t Session::pending() const {
    return BIO_ctrl_pending(out_);
}

uint32_t Session::take(uint8_t* out, uint32_t capacity) {
    int got = BIO_read(out_, out, int(std::min<uint32_t>(capacity, INT_MAX)));
    return got > 0 ? uint32_t(got) : 0;
}

void Session::shutdown() {
    if (status_ == Status::Ok && established_) SSL_shutdown(ssl_);
    ERR_clear_error();
}

std::string Session::version() const {
    return SSL_get_version(ssl_);
}

std::string Session::cipher() const {
    const char* name = SSL_get_cipher_name(ssl_);
    return name != nullptr ? name : "";
}

std::string Session::alpn() const {
    const unsigned char* data = nullptr;
    unsigned int size = 0;
    SSL_get0_alpn_selected(ssl_, &data, &size);
    return std::string(reinterpret_cast<const char*>(data), data == nullptr ? 0 : size);
}

std::string Session::peer_common_name() const {
    X509* peer = SSL_get0_peer_certificate(ssl_);
    if (peer == nullptr) return {};
    char name[256];
    int size =
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name, sizeof name);
    if (size < 0 || size_t(size) != strlen(name)) return {};  // absent, or with a NUL in it
    return std::string(name, size_t(size));
}

bool Session::peer_verified() const {
    return SSL_get0_peer_certificate(ssl_) != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK;
}

std::string Session::server_end_point() const {
    return end_point_of(SSL_get_certificate(ssl_));
}

std::string Session::peer_end_point() const {
    return end_point_of(SSL_get0_peer_certificate(ssl_));
}

}  // namespace pgplex::tls
