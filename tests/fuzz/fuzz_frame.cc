// Fuzzes the framer: any byte stream, cut into any buffers, in either direction, with a
// handler whose fates depend only on the type byte, must never read out of bounds (ASan)
// and must account for every byte it consumes.
//
// Input: byte 0 says how many of the next bytes (0..7) are chunk sizes; the rest is the
// stream. Chunk sizes cycle; a size byte b cuts b + 1 bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pgplex/proto/frame.h"

namespace {

using pgplex::proto::Direction;
using pgplex::proto::Fate;
using pgplex::proto::FeedResult;
using pgplex::proto::FeedStatus;
using pgplex::proto::FrameState;
using pgplex::proto::Verdict;

// Bodies larger than this are refused by assembly(), exercising that Violation too.
constexpr uint32_t assembly_bytes_max = 1 << 20;

// A failed check aborts, which libFuzzer reports as a crash with the input saved.
#define FUZZ_CHECK(condition)          \
    do {                               \
        if (!(condition)) abort();     \
    } while (0)

// Decides fates from the type byte and checks every call against the stream it came from.
struct CheckingHandler {
    const uint8_t* stream;
    size_t stream_size;

    uint64_t accepted_bytes = 0;    // sum of 1 + length over every decided header
    uint64_t forwarded_bytes = 0;   // what forward() was given
    uint64_t forwardable_bytes = 0; // 1 + length over Forward / ForwardInspect headers
    uint64_t message_start = 0;     // stream offset of the current message
    uint64_t forward_cursor = 0;    // next stream offset forward() must be given
    uint32_t length = 0;
    uint8_t type = 0;
    Fate fate = Fate::Forward;
    bool held = false;              // the last on_header call returned Hold
    uint8_t held_type = 0;
    uint32_t held_length = 0;
    bool message_delivered = true;
    std::vector<uint8_t> storage;
    const uint8_t* chunk = nullptr;
    uint32_t chunk_size = 0;

    static Fate fate_for(uint8_t message_type) {
        switch (message_type % 4) {
            case 0: return Fate::Forward;
            case 1: return Fate::Drop;
            case 2: return Fate::Inspect;
            default: return Fate::ForwardInspect;
        }
    }

    Fate on_header(uint8_t header_type, uint32_t header_length) {
        FUZZ_CHECK(header_length >= 4);
        if (held) {
            // A held header is presented again, unchanged.
            FUZZ_CHECK(header_type == held_type && header_length == held_length);
            held = false;
        } else if ((header_type & 0x18) == 0x18) {
            held = true;
            held_type = header_type;
            held_length = header_length;
            return Fate::Hold;
        }
        // The previous message is complete before the next header is decided.
        FUZZ_CHECK(message_delivered);
        message_start = accepted_bytes;
        accepted_bytes += 1 + uint64_t(header_length);
        type = header_type;
        length = header_length;
        fate = fate_for(header_type);
        forward_cursor = message_start;
        if (fate == Fate::Forward || fate == Fate::ForwardInspect)
            forwardable_bytes += 1 + uint64_t(header_length);
        message_delivered = fate == Fate::Forward || fate == Fate::Drop;
        return fate;
    }

    void forward(const uint8_t* data, uint32_t size, bool from_stash) {
        FUZZ_CHECK(fate == Fate::Forward || fate == Fate::ForwardInspect);
        FUZZ_CHECK(forward_cursor + size <= message_start + 1 + length);
        if (!from_stash) FUZZ_CHECK(data >= chunk && data + size <= chunk + chunk_size);
        else FUZZ_CHECK(size == 5 && forward_cursor == message_start);
        FUZZ_CHECK(memcmp(data, stream + forward_cursor, size) == 0);
        forward_cursor += size;
        forwarded_bytes += size;
    }

    uint8_t* assembly(uint32_t body_size) {
        FUZZ_CHECK(body_size == length - 4);
        if (body_size > assembly_bytes_max) return nullptr;
        storage.assign(body_size, 0);
        return storage.data();
    }

    Verdict on_message(uint8_t message_type, const uint8_t* body, uint32_t body_size) {
        FUZZ_CHECK(fate == Fate::Inspect || fate == Fate::ForwardInspect);
        FUZZ_CHECK(!message_delivered);
        FUZZ_CHECK(message_type == type && body_size == length - 4);
        bool in_chunk = body >= chunk && body + body_size <= chunk + chunk_size;
        bool in_storage = body == storage.data() && body_size == storage.size();
        FUZZ_CHECK(body_size == 0 || in_chunk || in_storage);
        if (body_size > 0) FUZZ_CHECK(memcmp(body, stream + message_start + 5, body_size) == 0);
        message_delivered = true;
        return message_type & 1 ? Verdict::Pause : Verdict::Continue;
    }
};

// Every consumed byte belongs to a decided message, a held header or a partial header.
void check_accounting(const FrameState& state, const CheckingHandler& handler,
                      uint64_t consumed_total) {
    uint64_t expected = handler.accepted_bytes;
    if (state.in_body) expected -= state.body_left;
    else expected += state.header_have;
    FUZZ_CHECK(consumed_total == expected);
    uint64_t forwarded = handler.forwardable_bytes;
    bool forwarding = handler.fate == Fate::Forward || handler.fate == Fate::ForwardInspect;
    if (state.in_body && forwarding) forwarded -= state.body_left;
    FUZZ_CHECK(handler.forwarded_bytes == forwarded);
}

void run(Direction direction, const uint8_t* sizes, size_t sizes_count, const uint8_t* stream,
         size_t stream_size) {
    FrameState state;
    CheckingHandler handler{stream, stream_size};
    uint64_t consumed_total = 0;
    size_t offset = 0;
    size_t chunk_index = 0;
    std::vector<uint8_t> piece;
    while (offset <= stream_size) {
        size_t cut = sizes_count == 0 ? stream_size - offset
                                      : size_t(sizes[chunk_index++ % sizes_count]) + 1;
        if (cut > stream_size - offset) cut = stream_size - offset;
        // An exactly sized heap copy, so any read past the chunk is caught.
        piece.assign(stream + offset, stream + offset + cut);
        piece.shrink_to_fit();
        uint8_t empty = 0;
        const uint8_t* data = cut == 0 ? &empty : piece.data();
        handler.chunk = data;
        handler.chunk_size = uint32_t(cut);
        uint32_t at = 0;
        for (int round = 0;; ++round) {
            FUZZ_CHECK(round < 1 << 20);
            FeedResult result = pgplex::proto::feed(state, direction, data + at,
                                                    uint32_t(cut) - at, handler);
            FUZZ_CHECK(result.consumed <= cut - at);
            at += result.consumed;
            consumed_total += result.consumed;
            check_accounting(state, handler, consumed_total);
            if (result.status == FeedStatus::Violation) {
                FUZZ_CHECK(result.reason != nullptr);
                return;
            }
            if (result.status == FeedStatus::Done) break;
        }
        FUZZ_CHECK(at == cut);
        offset += cut;
        if (cut == 0) break;  // the final empty feed has been made
    }
    FUZZ_CHECK(consumed_total == stream_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    size_t sizes_count = data[0] % 8;
    if (size < 1 + sizes_count) return 0;
    const uint8_t* sizes = data + 1;
    const uint8_t* stream = data + 1 + sizes_count;
    size_t stream_size = size - 1 - sizes_count;
    run(Direction::Frontend, sizes, sizes_count, stream, stream_size);
    run(Direction::Backend, sizes, sizes_count, stream, stream_size);
    return 0;
}
