// Fuzzes the startup-packet parser the way a listener uses it: read the length word, then
// parse exactly that many bytes. Also parses the whole input as one packet. Every view in
// the result must lie inside the packet (ASan catches reads past it).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/proto/startup.h"

namespace {

using pgplex::proto::StartupError;
using pgplex::proto::StartupKind;
using pgplex::proto::StartupPacket;

// A failed check aborts, which libFuzzer reports as a crash with the input saved.
#define FUZZ_CHECK(condition)          \
    do {                               \
        if (!(condition)) abort();     \
    } while (0)

void check_inside(std::string_view view, const uint8_t* packet, uint32_t size) {
    if (view.empty()) return;
    const char* begin = reinterpret_cast<const char*>(packet);
    FUZZ_CHECK(view.data() >= begin && view.data() + view.size() <= begin + size);
}

void parse(const uint8_t* bytes, size_t bytes_size) {
    if (bytes_size > pgplex::limits::startup_packet_bytes_max + 16) return;
    // An exactly sized heap copy, so any read past the packet is caught.
    std::vector<uint8_t> packet(bytes, bytes + bytes_size);
    uint32_t size = uint32_t(bytes_size);
    StartupPacket out;
    const char* reason = nullptr;
    StartupError error = pgplex::proto::parse_startup(packet.data(), size, out, reason);
    if (error != StartupError::None) {
        FUZZ_CHECK(reason != nullptr && reason[0] != '\0');
        return;
    }
    FUZZ_CHECK(size >= 8 && size <= pgplex::limits::startup_packet_bytes_max);
    if (out.kind == StartupKind::SSLRequest || out.kind == StartupKind::GSSENCRequest)
        FUZZ_CHECK(size == 8);
    if (out.kind == StartupKind::CancelRequest)
        FUZZ_CHECK(size == pgplex::limits::cancel_request_bytes);
    if (out.kind != StartupKind::Startup) return;
    FUZZ_CHECK(out.protocol_major == 3);
    FUZZ_CHECK(!out.user.empty() && !out.database.empty());
    FUZZ_CHECK(packet[size - 1] == 0);
    check_inside(out.user, packet.data(), size);
    check_inside(out.database, packet.data(), size);
    check_inside(out.options, packet.data(), size);
    check_inside(out.replication, packet.data(), size);
    for (const auto& [name, value] : out.parameters) {
        FUZZ_CHECK(!name.empty());
        check_inside(name, packet.data(), size);
        check_inside(value, packet.data(), size);
    }
    for (std::string_view name : out.protocol_options) {
        FUZZ_CHECK(name.substr(0, 5) == "_pq_.");
        check_inside(name, packet.data(), size);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size >= 4) {
        std::vector<uint8_t> word(data, data + 4);
        uint32_t length = pgplex::proto::startup_length(word.data());
        FUZZ_CHECK(length == 0 ||
                   (length >= 8 && length <= pgplex::limits::startup_packet_bytes_max));
        if (length != 0 && length <= size) parse(data, length);
    }
    parse(data, size);
    return 0;
}
