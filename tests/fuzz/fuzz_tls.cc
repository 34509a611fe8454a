// libFuzzer target for the TLS record handoff: whatever bytes a client sends where pgplex
// expects TLS (after its 'S', or a direct ClientHello) go to the server side of a session,
// split into receives at the sizes the input's first bytes choose, as io::Loop::open_tls
// feeds them. Nothing may crash or grow without bound; a session that fails must say why,
// and nothing readable may come out of a handshake that never finished.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "../support/tls_identity.h"
#include "pgplex/tls/session.h"

namespace tls = pgplex::tls;

namespace {

const tls::Context& context() {
    static std::shared_ptr<const tls::Context> made = [] {
        tls_test::Identity identity = tls_test::make_identity();
        tls::Settings settings;
        settings.mode = tls::SslMode::Require;
        settings.cert_file = identity.cert_file;
        settings.key_file = identity.key_file;
        std::string error;
        std::shared_ptr<const tls::Context> built = tls::Context::make_server(settings, error);
        std::filesystem::remove_all(identity.dir);  // read into the context already
        if (!built) std::abort();
        return built;
    }();
    return *made;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    uint32_t step = 1 + data[0] % 64 * 37;  // receive sizes from 1 byte to a few KB
    ++data;
    --size;
    tls::Session session(context());
    uint8_t plain[16384];
    uint8_t cipher[16384];
    for (size_t at = 0; at < size && session.status() == tls::Status::Ok; at += step) {
        size_t take = size - at < step ? size - at : step;
        session.feed(data + at, uint32_t(take));
        uint32_t got = session.read(plain, sizeof plain);
        if (got > 0 && !session.established()) std::abort();
        while (session.take(cipher, sizeof cipher) > 0) {
        }
    }
    if (session.status() == tls::Status::Failed && session.reason().empty()) std::abort();
    return 0;
}
