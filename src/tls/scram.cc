// SCRAM-SHA-256 as PostgreSQL speaks it (see scram.h): the stored secret format, base64, and
// both halves of the exchange. The semantics follow PostgreSQL's auth-scram.c (server) and
// fe-auth-scram.c (client): the user name in client-first is ignored (the startup packet
// names the user), channel binding is tls-server-end-point only, extensions after the
// mandatory attributes are ignored, and a wrong proof is told apart from a malformed message.
//
// Messages are cut into attributes at ',' up front, so each check below reads one
// attribute and nothing walks past the end of a message.
#include "pgplex/tls/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>
#include <utility>
#include <vector>

#include "pgplex/base/assert.h"

namespace pgplex::tls::scram {

namespace {

constexpr std::string_view secret_prefix = "SCRAM-SHA-256$";
// PostgreSQL's SCRAM_RAW_NONCE_LEN: random bytes behind each side's nonce.
constexpr size_t nonce_random_bytes = 18;
constexpr std::string_view gs2_header_without_binding = "n,,";

thread_local std::string test_nonce;
thread_local std::string test_user;

std::string_view as_chars(const Key& key) {
    return {reinterpret_cast<const char*>(key.data()), key.size()};
}

Key hmac(std::string_view key, std::string_view data) {
    Key out{};
    unsigned int out_bytes = 0;
    const unsigned char* done = HMAC(EVP_sha256(), key.data(), int(key.size()),
                                     reinterpret_cast<const unsigned char*>(data.data()),
                                     data.size(), out.data(), &out_bytes);
    PGPLEX_ASSERT(done != nullptr && out_bytes == out.size());
    return out;
}

Key sha256(const Key& data) {
    Key out{};
    unsigned int out_bytes = 0;
    int ok = EVP_Digest(data.data(), data.size(), out.data(), &out_bytes, EVP_sha256(), nullptr);
    PGPLEX_ASSERT(ok == 1 && out_bytes == out.size());
    return out;
}

// RFC 5802's Hi(): PBKDF2 with HMAC-SHA-256, one block.
Key salted_password(std::string_view password, std::string_view salt, int iterations) {
    PGPLEX_ASSERT(iterations > 0);
    Key out{};
    int ok = PKCS5_PBKDF2_HMAC(
        password.data(), int(password.size()), reinterpret_cast<const unsigned char*>(salt.data()),
        int(salt.size()), iterations, EVP_sha256(), int(out.size()), out.data());
    PGPLEX_ASSERT(ok == 1);
    return out;
}

bool keys_equal(const Key& a, const Key& b) {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string make_nonce() {
    if (!test_nonce.empty()) return test_nonce;
    uint8_t raw[nonce_random_bytes];
    PGPLEX_ASSERT(RAND_bytes(raw, sizeof raw) == 1);
    return base64_encode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
}

// RFC 5802's "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','.
bool is_printable(std::string_view text) {
    for (char c : text) {
        if (c < 0x21 || c > 0x7e || c == ',') return false;
    }
    return true;
}

// A strictly decimal, positive int: no sign, no spaces, no overflow.
bool parse_positive_int(std::string_view text, int& out) {
    if (text.empty()) return false;
    long long value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + (c - '0');
        if (value > INT_MAX) return false;
    }
    if (value == 0) return false;
    out = int(value);
    return true;
}

bool decode_key(std::string_view text, Key& out) {
    std::string raw;
    if (!base64_decode(text, raw) || raw.size() != out.size()) return false;
    std::copy(raw.begin(), raw.end(), out.begin());
    return true;
}

// Splits on ','. "a,,b" gives an empty middle attribute, which no rule below accepts.
std::vector<std::string_view> split_attributes(std::string_view text) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (;;) {
        size_t comma = text.find(',', start);
        if (comma == std::string_view::npos) {
            out.push_back(text.substr(start));
            return out;
        }
        out.push_back(text.substr(start, comma - start));
        start = comma + 1;
    }
}

// An attribute is "<letter>=<value>".
bool is_attribute(std::string_view attribute, char name) {
    return attribute.size() >= 2 && attribute[0] == name && attribute[1] == '=';
}

bool is_any_attribute(std::string_view attribute) {
    char name = attribute.empty() ? '\0' : attribute[0];
    bool letter = (name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z');
    return letter && is_attribute(attribute, name);
}

std::string_view value_of(std::string_view attribute) {
    return attribute.substr(2);
}

constexpr std::string_view end_point_header = "p=tls-server-end-point,,";

// Cuts "<cbind-flag>,<authzid>," off a client-first-message and checks it against what was
// negotiated (RFC 5802 6, PostgreSQL's read_client_first_message): "p=tls-server-end-point"
// exactly when the client chose SCRAM-SHA-256-PLUS, "y" only when no -PLUS was offered.
// Authorization identities are not supported.
bool take_gs2_header(std::string_view& message, bool offered_plus, bool chose_plus,
                     std::string& header, std::string& reason) {
    if (message.starts_with("p=")) {
        if (!offered_plus) {
            reason =
                "the client requires channel binding, which pgplex offers only over TLS "
                "(connect with sslmode=require, or without channel_binding=require)";
            return false;
        }
        if (!chose_plus) {
            reason = "the client uses channel binding with SCRAM-SHA-256 (not -PLUS)";
            return false;
        }
        if (!message.starts_with(end_point_header)) {
            reason = "unsupported SCRAM channel-binding type (only tls-server-end-point)";
            return false;
        }
        header = std::string(end_point_header);
        message.remove_prefix(end_point_header.size());
        return true;
    }
    if (chose_plus) {
        reason =
            "the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include "
            "channel binding data";
        return false;
    }
    if (!message.starts_with("n,") && !message.starts_with("y,")) {
        reason = "malformed SCRAM message: unexpected channel-binding flag";
        return false;
    }
    if (message.starts_with("y,") && offered_plus) {
        // The client could bind and believes pgplex cannot: something in between took
        // SCRAM-SHA-256-PLUS out of the list (a downgrade).
        reason =
            "SCRAM channel binding negotiation error: the client supports channel binding "
            "and thinks pgplex does not, but it does";
        return false;
    }
    if (message.size() > 2 && message[2] == 'a') {
        reason = "client uses authorization identity, but it is not supported";
        return false;
    }
    if (message.size() < 3 || message[2] != ',') {
        reason = "malformed SCRAM message: comma expected after the authorization identity";
        return false;
    }
    header = std::string(message.substr(0, 3));
    message.remove_prefix(3);
    return true;
}

// client-first-message-bare: "n=<user>,r=<nonce>[,<extension>...]". The user name is
// ignored, as PostgreSQL does: the startup packet names the user.
bool read_client_first_bare(std::string_view bare, std::string& client_nonce, std::string& reason) {
    std::vector<std::string_view> attributes = split_attributes(bare);
    if (is_attribute(attributes[0], 'm')) {
        reason = "client requires an unsupported SCRAM extension";
        return false;
    }
    if (attributes.size() < 2 || !is_attribute(attributes[0], 'n') ||
        !is_attribute(attributes[1], 'r')) {
        reason = "malformed SCRAM message: expected \"n=\" then \"r=\" in client-first-message";
        return false;
    }
    std::string_view nonce = value_of(attributes[1]);
    if (nonce.empty() || !is_printable(nonce)) {
        reason = "malformed SCRAM message: the client nonce is empty or not printable";
        return false;
    }
    for (size_t i = 2; i < attributes.size(); i++) {
        if (!is_any_attribute(attributes[i])) {
            reason = "malformed SCRAM message: bad attribute in client-first-message";
            return false;
        }
    }
    client_nonce = std::string(nonce);
    return true;
}

// The parts of a client-final-message the server checks.
struct ClientFinal {
    std::string_view channel_binding;  // base64, as sent
    std::string_view nonce;
    std::string_view without_proof;  // everything before ",p="
    Key proof{};
};

// "c=<base64>,r=<nonce>[,<extension>...],p=<base64 proof>", nothing after the proof.
bool read_client_final(std::string_view message, ClientFinal& out, std::string& reason) {
    std::vector<std::string_view> attributes = split_attributes(message);
    if (attributes.size() < 3 || !is_attribute(attributes[0], 'c') ||
        !is_attribute(attributes[1], 'r') || !is_attribute(attributes.back(), 'p')) {
        reason =
            "malformed SCRAM message: expected \"c=\", \"r=\" and a final \"p=\" in "
            "client-final-message";
        return false;
    }
    for (size_t i = 2; i + 1 < attributes.size(); i++) {
        if (!is_any_attribute(attributes[i])) {
            reason = "malformed SCRAM message: bad attribute in client-final-message";
            return false;
        }
    }
    if (!decode_key(value_of(attributes.back()), out.proof)) {
        reason = "malformed SCRAM message: the client proof is not 32 bytes of base64";
        return false;
    }
    out.channel_binding = value_of(attributes[0]);
    out.nonce = value_of(attributes[1]);
    out.without_proof = message.substr(0, message.size() - attributes.back().size() - 1);
    return true;
}

// The parts of a server-first-message the client uses.
struct ServerFirst {
    std::string_view nonce;
    std::string salt;  // raw bytes
    int iterations = 0;
};

// "r=<nonce>,s=<base64 salt>,i=<iterations>", nothing else (as libpq requires).
bool read_server_first(std::string_view message, std::string_view client_nonce, ServerFirst& out,
                       std::string& reason) {
    std::vector<std::string_view> attributes = split_attributes(message);
    if (attributes.size() != 3 || !is_attribute(attributes[0], 'r') ||
        !is_attribute(attributes[1], 's') || !is_attribute(attributes[2], 'i')) {
        reason =
            "malformed SCRAM message: expected exactly \"r=\", \"s=\", \"i=\" in "
            "server-first-message";
        return false;
    }
    out.nonce = value_of(attributes[0]);
    if (out.nonce.size() <= client_nonce.size() || !out.nonce.starts_with(client_nonce) ||
        !is_printable(out.nonce)) {
        reason = "invalid SCRAM response: the server nonce does not extend the client's";
        return false;
    }
    if (!base64_decode(value_of(attributes[1]), out.salt) || out.salt.empty()) {
        reason = "malformed SCRAM message: invalid salt";
        return false;
    }
    if (!parse_positive_int(value_of(attributes[2]), out.iterations)) {
        reason = "malformed SCRAM message: invalid iteration count";
        return false;
    }
    return true;
}

Key xor_keys(const Key& a, const Key& b) {
    Key out{};
    for (size_t i = 0; i < out.size(); i++) out[i] = uint8_t(a[i] ^ b[i]);
    return out;
}

}  // namespace

void set_nonce_for_test(std::string_view nonce, std::string_view user) {
    test_nonce = std::string(nonce);
    test_user = std::string(user);
}

bool is_secret(std::string_view text) {
    return text.starts_with(secret_prefix);
}

// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", as PostgreSQL's
// parse_scram_secret reads it.
bool parse_secret(std::string_view text, Secret& out) {
    if (!is_secret(text)) return false;
    text.remove_prefix(secret_prefix.size());
    size_t dollar = text.find('$');
    if (dollar == std::string_view::npos) return false;
    std::string_view salt_part = text.substr(0, dollar);
    std::string_view key_part = text.substr(dollar + 1);
    size_t salt_colon = salt_part.find(':');
    size_t key_colon = key_part.find(':');
    if (salt_colon == std::string_view::npos || key_colon == std::string_view::npos) return false;

    Secret secret;
    if (!parse_positive_int(salt_part.substr(0, salt_colon), secret.iterations)) return false;
    if (!base64_decode(salt_part.substr(salt_colon + 1), secret.salt) || secret.salt.empty())
        return false;
    if (!decode_key(key_part.substr(0, key_colon), secret.stored_key)) return false;
    if (!decode_key(key_part.substr(key_colon + 1), secret.server_key)) return false;
    out = std::move(secret);
    return true;
}

Secret make_secret(std::string_view password, std::string_view salt, int iterations) {
    PGPLEX_ASSERT(iterations > 0);
    PGPLEX_ASSERT(!salt.empty());
    Key salted = salted_password(password, salt, iterations);
    Secret secret;
    secret.iterations = iterations;
    secret.salt = std::string(salt);
    secret.stored_key = sha256(hmac(as_chars(salted), "Client Key"));
    secret.server_key = hmac(as_chars(salted), "Server Key");
    return secret;
}

Key client_key_of(std::string_view password, const Secret& secret) {
    return hmac(as_chars(salted_password(password, secret.salt, secret.iterations)), "Client Key");
}

std::string format_secret(const Secret& secret) {
    return std::string(secret_prefix) + std::to_string(secret.iterations) + ":" +
           base64_encode(secret.salt) + "$" + base64_encode(as_chars(secret.stored_key)) + ":" +
           base64_encode(as_chars(secret.server_key));
}

ServerExchange::ServerExchange(Secret secret) : secret_(std::move(secret)) {
    PGPLEX_ASSERT(secret_.iterations > 0);
}

void ServerExchange::offer_channel_binding(std::string server_end_point) {
    binding_ = std::move(server_end_point);
}

bool ServerExchange::handle_client_first(std::string_view message, std::string& server_first,
                                         std::string& reason) {
    if (step_ != Step::AwaitingClientFirst) {
        reason = "unexpected SCRAM client-first-message";
        return false;
    }
    step_ = Step::Finished;  // until the message proves well formed
    std::string client_nonce;
    bool offered_plus = !binding_.empty();
    if (!take_gs2_header(message, offered_plus, chose_plus_, gs2_header_, reason)) return false;
    if (!read_client_first_bare(message, client_nonce, reason)) return false;

    client_first_bare_ = std::string(message);
    nonce_ = client_nonce + make_nonce();
    server_first_ = "r=" + nonce_ + ",s=" + base64_encode(secret_.salt) +
                    ",i=" + std::to_string(secret_.iterations);
    server_first = server_first_;
    step_ = Step::AwaitingClientFinal;
    return true;
}

bool ServerExchange::handle_client_final(std::string_view message, std::string& server_final,
                                         std::string& reason) {
    if (step_ != Step::AwaitingClientFinal) {
        reason = "unexpected SCRAM client-final-message";
        return false;
    }
    step_ = Step::Finished;
    ClientFinal final_message;
    if (!read_client_final(message, final_message, reason)) return false;
    std::string expected_binding = gs2_header_;
    if (gs2_header_.starts_with("p=")) expected_binding += binding_;
    if (final_message.channel_binding != base64_encode(expected_binding)) {
        reason = "SCRAM channel binding check failed";
        return false;
    }
    if (final_message.nonce != nonce_) {
        reason = "malformed SCRAM message: nonce does not match";
        return false;
    }

    std::string auth_message =
        client_first_bare_ + "," + server_first_ + "," + std::string(final_message.without_proof);
    Key client_signature = hmac(as_chars(secret_.stored_key), auth_message);
    Key client_key = xor_keys(final_message.proof, client_signature);
    if (!keys_equal(sha256(client_key), secret_.stored_key)) {
        proof_wrong_ = true;
        reason = "password authentication failed";
        return false;
    }
    client_key_ = client_key;
    server_final = "v=" + base64_encode(as_chars(hmac(as_chars(secret_.server_key), auth_message)));
    return true;
}

ClientExchange ClientExchange::with_password(std::string_view password) {
    ClientExchange exchange;
    exchange.password_ = std::string(password);
    return exchange;
}

ClientExchange ClientExchange::with_keys(const Key& client_key, const Key& server_key) {
    ClientExchange exchange;
    exchange.have_keys_ = true;
    exchange.client_key_ = client_key;
    exchange.server_key_ = server_key;
    return exchange;
}

void ClientExchange::bind(Binding binding, std::string server_end_point) {
    PGPLEX_ASSERT(client_first_bare_.empty());
    PGPLEX_ASSERT((binding == Binding::EndPoint) == !server_end_point.empty());
    binding_ = binding;
    end_point_ = std::move(server_end_point);
}

const char* ClientExchange::mechanism() const {
    return binding_ == Binding::EndPoint ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
}

std::string ClientExchange::gs2_header() const {
    switch (binding_) {
        case Binding::None:
            return std::string(gs2_header_without_binding);
        case Binding::Supported:
            return "y,,";
        case Binding::EndPoint:
            return std::string(end_point_header);
    }
    return std::string(gs2_header_without_binding);
}

std::string ClientExchange::client_first() {
    PGPLEX_ASSERT(client_first_bare_.empty());
    client_nonce_ = make_nonce();
    client_first_bare_ = "n=" + test_user + ",r=" + client_nonce_;
    return gs2_header() + client_first_bare_;
}

bool ClientExchange::handle_server_first(std::string_view message, std::string& client_final,
                                         std::string& reason) {
    if (client_first_bare_.empty() || !expected_server_signature_.empty()) {
        reason = "unexpected SCRAM server-first-message";
        return false;
    }
    ServerFirst first;
    if (!read_server_first(message, client_nonce_, first, reason)) return false;

    Key client_key = client_key_;
    Key server_key = server_key_;
    if (!have_keys_) {
        Key salted = salted_password(password_, first.salt, first.iterations);
        client_key = hmac(as_chars(salted), "Client Key");
        server_key = hmac(as_chars(salted), "Server Key");
    }
    // c= carries the gs2 header and, when bound, the channel's data (RFC 5802 7).
    std::string without_proof =
        "c=" + base64_encode(gs2_header() + end_point_) + ",r=" + std::string(first.nonce);
    std::string auth_message =
        client_first_bare_ + "," + std::string(message) + "," + without_proof;
    Key proof = xor_keys(client_key, hmac(as_chars(sha256(client_key)), auth_message));
    client_final = without_proof + ",p=" + base64_encode(as_chars(proof));
    Key server_signature = hmac(as_chars(server_key), auth_message);
    expected_server_signature_ = std::string(as_chars(server_signature));
    return true;
}

bool ClientExchange::handle_server_final(std::string_view message, std::string& reason) {
    if (expected_server_signature_.empty()) {
        reason = "unexpected SCRAM server-final-message";
        return false;
    }
    if (message.starts_with("e=")) {
        reason = "error received from server in SCRAM exchange: " + std::string(message.substr(2));
        return false;
    }
    Key signature{};
    if (!is_attribute(message, 'v') || !decode_key(value_of(message), signature)) {
        reason = "malformed SCRAM message: expected \"v=\" and a 32-byte signature";
        return false;
    }
    if (CRYPTO_memcmp(signature.data(), expected_server_signature_.data(), signature.size())) {
        reason = "incorrect server signature: the server does not know the password";
        return false;
    }
    finished_ = true;
    return true;
}

}  // namespace pgplex::tls::scram
