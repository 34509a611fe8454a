// PostgreSQL's MD5 password scheme (see md5.h): hashing a password the way pg_authid stores
// it, answering an AuthenticationMD5Password challenge, and checking a client's answer.
// Digests come from OpenSSL's EVP interface; answers are compared in constant time so the
// time a check takes says nothing about how much of a guess was right.
#include "pgplex/tls/md5.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pgplex/base/assert.h"
#include "pgplex/tls/scram.h"

namespace pgplex::tls::md5 {

namespace {

constexpr std::string_view prefix = "md5";
constexpr size_t digest_hex_chars = 32;

// md5hex(first + second), as PostgreSQL's pg_md5_encrypt computes it.
std::string md5_hex(std::string_view first, std::string_view second) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_bytes = 0;
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    PGPLEX_ASSERT(context != nullptr);
    bool ok = EVP_DigestInit_ex(context, EVP_md5(), nullptr) == 1 &&
              EVP_DigestUpdate(context, first.data(), first.size()) == 1 &&
              EVP_DigestUpdate(context, second.data(), second.size()) == 1 &&
              EVP_DigestFinal_ex(context, digest, &digest_bytes) == 1;
    EVP_MD_CTX_free(context);
    PGPLEX_ASSERT(ok && digest_bytes == 16);

    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(digest_hex_chars);
    for (unsigned int i = 0; i < digest_bytes; i++) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0xf]);
    }
    return out;
}

}  // namespace

std::string password_hash(std::string_view user, std::string_view password) {
    return std::string(prefix) + md5_hex(password, user);
}

bool is_hash(std::string_view text) {
    if (text.size() != prefix.size() + digest_hex_chars || !text.starts_with(prefix)) return false;
    for (char c : text.substr(prefix.size())) {
        bool hex_digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (!hex_digit) return false;
    }
    return true;
}

std::string response_from_hash(std::string_view stored_hash, const std::array<uint8_t, 4>& salt) {
    PGPLEX_ASSERT(is_hash(stored_hash));
    std::string_view salt_bytes(reinterpret_cast<const char*>(salt.data()), salt.size());
    return std::string(prefix) + md5_hex(stored_hash.substr(prefix.size()), salt_bytes);
}

// An empty secret or a SCRAM secret never verifies: PostgreSQL refuses empty passwords, and
// a SCRAM secret is not a password (knowing its text must not be enough to log in).
bool verify(std::string_view user, std::string_view secret, const std::array<uint8_t, 4>& salt,
            std::string_view response) {
    if (secret.empty() || scram::is_secret(secret)) return false;
    std::string hash = is_hash(secret) ? std::string(secret) : password_hash(user, secret);
    std::string expected = response_from_hash(hash, salt);
    if (response.size() != expected.size()) return false;
    return CRYPTO_memcmp(expected.data(), response.data(), expected.size()) == 0;
}

}  // namespace pgplex::tls::md5
