// libFuzzer target for SCRAM message handling. The input is split at the first newline into
// two messages, fed to both sides of an exchange whose nonces are fixed ("fuzz"), so the
// fuzzer can reach the checks behind a matching nonce. The same bytes also go to
// parse_secret and base64_decode. Nothing here may crash, whatever the bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pgplex/tls/scram.h"

namespace scram = pgplex::tls::scram;

namespace {

// One iteration: PBKDF2 cost is not what is being fuzzed.
const scram::Secret& server_secret() {
    static const scram::Secret secret = scram::make_secret("pencil", "saltsalt", 1);
    return secret;
}

// binding: as over TLS (SCRAM-SHA-256-PLUS offered; `plus`: the client chose it).
void fuzz_server(std::string_view first, std::string_view final_message, bool binding, bool plus) {
    scram::ServerExchange server(server_secret());
    if (binding) server.offer_channel_binding(std::string(32, '\x5a'));
    server.choose_plus(plus);
    std::string server_first, server_final, reason;
    if (!server.handle_client_first(first, server_first, reason)) {
        if (reason.empty()) std::abort();
        return;
    }
    if (!server.handle_client_final(final_message, server_final, reason) && reason.empty())
        std::abort();
}

// binding: the client's gs2 header, as toward a node over TLS.
void fuzz_client(std::string_view first, std::string_view final_message, scram::Binding binding) {
    const scram::Secret& secret = server_secret();
    scram::ClientExchange client =
        scram::ClientExchange::with_keys(secret.stored_key, secret.server_key);
    client.bind(binding, binding == scram::Binding::EndPoint ? std::string(32, '\x5a') : "");
    client.client_first();
    std::string client_final, reason;
    if (!client.handle_server_first(first, client_final, reason)) {
        if (reason.empty()) std::abort();
        return;
    }
    if (!client.handle_server_final(final_message, reason) && reason.empty()) std::abort();
}

void fuzz_codecs(std::string_view text) {
    std::string decoded;
    if (scram::base64_decode(text, decoded) && scram::base64_encode(decoded) != text)
        std::abort();  // decoding is strict, so it must round-trip exactly
    // A secret that parses formats to one that parses back to the same values. (Not the
    // same text: an iteration count may be written with leading zeros, as PostgreSQL's
    // strtol accepts.)
    scram::Secret secret;
    if (!scram::parse_secret(text, secret)) return;
    scram::Secret again;
    if (!scram::parse_secret(scram::format_secret(secret), again)) std::abort();
    if (again.iterations != secret.iterations || again.salt != secret.salt ||
        again.stored_key != secret.stored_key || again.server_key != secret.server_key)
        std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    size_t newline = input.find('\n');
    std::string_view first = input.substr(0, newline);
    std::string_view final_message =
        newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
    scram::set_nonce_for_test("fuzz");
    fuzz_server(first, final_message, false, false);
    fuzz_server(first, final_message, true, false);
    fuzz_server(first, final_message, true, true);
    fuzz_client(first, final_message, scram::Binding::None);
    fuzz_client(first, final_message, scram::Binding::Supported);
    fuzz_client(first, final_message, scram::Binding::EndPoint);
    scram::set_nonce_for_test("");
    fuzz_codecs(input);
    return 0;
}
