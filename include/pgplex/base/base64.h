// Base64 with the standard alphabet (RFC 4648 section 4), as SCRAM and etcd's JSON gateway
// use it. Decoding is strict: length a multiple of 4, padding only at the end, no whitespace,
// and unused bits zero, so every byte string has exactly one accepted encoding.
#pragma once

#include <string>
#include <string_view>

namespace pgplex::base {

std::string base64_encode(std::string_view bytes);
// False on anything but the one canonical encoding of some bytes.
bool base64_decode(std::string_view text, std::string& out);

}  // namespace pgplex::base
