// See base64.h.
#include "pgplex/base/base64.h"

#include <cstdint>

namespace pgplex::base {

namespace {

constexpr char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (size_t i = 0; i < bytes.size(); i += 3) {
        size_t left = bytes.size() - i;
        uint32_t group = uint32_t(uint8_t(bytes[i])) << 16;
        if (left > 1) group |= uint32_t(uint8_t(bytes[i + 1])) << 8;
        if (left > 2) group |= uint32_t(uint8_t(bytes[i + 2]));
        out.push_back(base64_alphabet[(group >> 18) & 63]);
        out.push_back(base64_alphabet[(group >> 12) & 63]);
        out.push_back(left > 1 ? base64_alphabet[(group >> 6) & 63] : '=');
        out.push_back(left > 2 ? base64_alphabet[group & 63] : '=');
    }
    return out;
}

// Strict: length a multiple of 4, padding only at the end, no whitespace, and unused bits
// zero, so every byte string has exactly one accepted encoding.
bool base64_decode(std::string_view text, std::string& out) {
    out.clear();
    if (text.size() % 4 != 0) return false;
    size_t padding = 0;
    if (!text.empty() && text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        bool last = i + 4 == text.size();
        size_t chars = last ? 4 - padding : 4;
        uint32_t group = 0;
        for (size_t j = 0; j < 4; j++) {
            int value = j < chars ? base64_value(text[i + j]) : 0;
            if (value < 0) return false;
            group = group << 6 | uint32_t(value);
        }
        out.push_back(char(group >> 16));
        if (chars > 2) out.push_back(char(group >> 8 & 0xff));
        if (chars > 3) out.push_back(char(group & 0xff));
        if (chars == 2 && (group & 0xffff) != 0) return false;
        if (chars == 3 && (group & 0xff) != 0) return false;
    }
    return true;
}

}  // namespace pgplex::base
