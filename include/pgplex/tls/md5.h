// PostgreSQL's MD5 password authentication (protocol-flow.html, AuthenticationMD5Password):
// the client sends "md5" + md5hex(md5hex(password + user) + salt).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgplex::tls::md5 {

// "md5" + md5hex(password + user): the form pg_authid stores and userlist.txt may hold.
std::string password_hash(std::string_view user, std::string_view password);
bool is_hash(std::string_view text);  // "md5" followed by 32 lowercase hex digits

// The response to an AuthenticationMD5Password challenge, from a stored hash
// ("md5..." as above) and the 4-byte salt.
std::string response_from_hash(std::string_view stored_hash, const std::array<uint8_t, 4>& salt);

// Checks a client's PasswordMessage against a stored secret that is either plain text or an
// md5 hash. Constant-time comparison.
bool verify(std::string_view user, std::string_view secret, const std::array<uint8_t, 4>& salt,
            std::string_view response);

}  // namespace pgplex::tls::md5
