// Fuzzes the gossip datagram decoder (gossip/wire.h) and the engine behind it. The input is
// sealed with the fuzzer's key before decoding, so the fuzzer reaches the record parser
// rather than stopping at the MAC; the raw input is also decoded unsealed (it must be
// refused as forged unless it happens to carry a valid MAC). Nothing may crash or read
// outside the input (an exactly sized heap copy, so ASan sees any overrun); a datagram that
// decodes encodes back to one that decodes to the same records; and the Engine fed the
// datagram counts it exactly once as received, forged, replayed or malformed.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "pgplex/gossip/engine.h"
#include "pgplex/gossip/wire.h"

#define FUZZ_CHECK(condition)      \
    do {                           \
        if (!(condition)) abort(); \
    } while (0)

namespace {

using namespace pgplex::gossip;

const std::vector<uint8_t> key(32, 0x42);

// The input with a valid MAC appended.
std::vector<uint8_t> sealed(const uint8_t* data, size_t size) {
    std::vector<uint8_t> bytes(data, data + size);
    bytes.resize(size + mac_bytes);
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), int(key.size()), data, size, bytes.data() + size, &length);
    return bytes;
}

void check_round_trip(const Header& header, const std::vector<Record>& records) {
    std::vector<uint8_t> again;
    if (!encode(header, records, key, again)) return;  // e.g. re-encoding grew past the cap
    Header header2;
    std::vector<Record> records2;
    FUZZ_CHECK(decode(again, key, header2, records2) == DecodeResult::Ok);
    FUZZ_CHECK(header2 == header && records2 == records);
}

void check_engine(const std::vector<uint8_t>& bytes, const Header& header) {
    Settings settings;
    settings.self = "10.0.0.1:7946";
    settings.peers = {"10.0.0.2:7946", "10.0.0.3:7946"};
    settings.key = key;
    settings.clusters.push_back({"main", true, -1});
    Engine engine(settings, 1, 0);
    engine.receive(header.sender, bytes, 10);
    engine.tick(20);
    Counters c = engine.counters();
    FUZZ_CHECK(c.received + c.forged + c.replayed + c.malformed == 1);
    (void)engine.decision("main", 30);
    (void)engine.take_outgoing();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > datagram_bytes_max) return 0;
    Header header;
    std::vector<Record> records;
    std::vector<uint8_t> raw(data, data + size);
    DecodeResult unsealed = decode(raw, key, header, records);
    FUZZ_CHECK(unsealed != DecodeResult::Ok || records.size() <= datagram_bytes_max);

    std::vector<uint8_t> bytes = sealed(data, size);
    DecodeResult result = decode(bytes, key, header, records);
    if (bytes.size() > datagram_bytes_max || size < 5) {  // 5: magic and version
        FUZZ_CHECK(result == DecodeResult::Forged);
        return 0;
    }
    FUZZ_CHECK(result != DecodeResult::Forged);
    if (result == DecodeResult::Ok) check_round_trip(header, records);
    check_engine(bytes, result == DecodeResult::Ok ? header : Header{"10.0.0.2:7946"});
    return 0;
}
