// libFuzzer target for what a pgplex taking over reads from the one it takes over from
// (pgplex --takeover): a client's state (client/handover_state.h) and a listener's frame
// payload (io/handover.h). Any bytes decode or are refused, never a crash; what decodes
// encodes to bytes that decode to the same again.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pgplex/client/handover_state.h"
#include "pgplex/io/handover.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    pgplex::io::ListenerInfo info;
    if (pgplex::io::listener_decode(bytes, info)) {
        pgplex::io::ListenerInfo again;
        if (!pgplex::io::listener_decode(pgplex::io::listener_encode(info), again) ||
            again.worker != info.worker || again.cluster != info.cluster ||
            again.service != info.service || again.endpoint != info.endpoint)
            std::abort();
    }
    pgplex::client::HandedClient client;
    if (!pgplex::client::decode(bytes, client)) return 0;
    std::string encoded = pgplex::client::encode(client);
    pgplex::client::HandedClient again;
    if (!pgplex::client::decode(encoded, again) || pgplex::client::encode(again) != encoded)
        std::abort();
    return 0;
}
