// Cutting a byte stream into PostgreSQL v3 messages, in place.
//
// The framer walks the headers (type byte + int32 length) of the messages in one received
// buffer and asks the handler what to do with each: forward its bytes to the peer straight
// from the buffer, drop them, or assemble the whole message to read it. Only assembled
// messages that straddle two buffers are copied; everything else is passed on as ranges of
// the buffer it arrived in (pgbouncer's sbuf_prepare_send/skip/fetch, DESIGN "zero-copy
// buffer rings"). Lengths are checked per type as soon as the header is complete, before
// any of the body is awaited, so an oversized message is refused before it is buffered.
//
// Handler (a template parameter, so calls inline on the data path):
//   Fate on_header(uint8_t type, uint32_t length);
//       length counts itself, as on the wire; already checked against the type's limits.
//   void forward(const uint8_t* data, uint32_t size, bool from_stash);
//       bytes to pass on. from_stash: data points into FrameState (a header that straddled
//       two buffers) and must be copied before feed() returns.
//   uint8_t* assembly(uint32_t body_size);
//       storage for a body being assembled across buffers; null refuses (a violation).
//   Verdict on_message(uint8_t type, const uint8_t* body, uint32_t body_size);
//       a complete Inspect or ForwardInspect message. Pause stops feed() after it.
//   Fate on_head(uint8_t type, const uint8_t* head, uint32_t head_size, uint32_t body_size);
//       a Head message's first head_size bytes (head_bytes_max, or the whole body when
//       shorter). The handler passes on its own bytes for the header and the head (nothing
//       of them was forwarded); the rest of the body is then forwarded (Forward) or
//       dropped (Drop). Renaming a statement in a Bind of any size costs only this copy.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstring>

#include "pgplex/base/assert.h"
#include "pgplex/proto/message.h"

namespace pgplex::proto {

enum class Fate : uint8_t {
    Forward,         // pass the message on as its bytes arrive
    Drop,            // swallow the message
    Inspect,         // assemble it and give it to on_message; nothing is passed on
    ForwardInspect,  // pass it on, and give a copy to on_message when complete
    Hold,            // do not consume it now: feed() stops before it (see FeedResult)
    Head,            // assemble the start of its body, give it to on_head (see above)
};

// The most of a Head message's body assembled for on_head: room for a Bind's portal and
// statement names, or a Parse's statement name, of any sensible length.
inline constexpr uint32_t head_bytes_max = 1024;

enum class Verdict : uint8_t { Continue, Pause };

enum class FeedStatus : uint8_t {
    Done,       // every byte was consumed
    Paused,     // on_message asked to pause, or on_header said Hold: see consumed
    Violation,  // framing is lost: reason says why; the connection must be closed
};

struct FeedResult {
    FeedStatus status;
    uint32_t consumed;   // bytes of this buffer used; the rest is to be fed again
    const char* reason;  // for Violation: a sentence for the ErrorResponse / log
};

// Per direction, per connection. Zero-initialised is "between messages".
struct FrameState {
    uint32_t body_left = 0;  // body bytes of the current message still to come
    uint32_t body_size = 0;  // of the current message
    uint32_t head_size = 0;  // Head: body bytes to assemble for on_head
    uint8_t* assembly = nullptr;
    uint8_t header[5] = {};
    uint8_t header_have = 0;  // 5 with in_body false: a held header awaiting a decision
    bool in_body = false;
    Fate fate = Fate::Forward;

    bool between_messages() const { return !in_body && header_have == 0; }
    uint8_t type() const { return header[0]; }
};

enum class Direction : uint8_t { Frontend, Backend };

inline uint32_t read_be32(const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}
inline uint16_t read_be16(const uint8_t* p) {
    return uint16_t((p[0] << 8) | p[1]);
}

namespace detail {

inline const char* check_length(Direction direction, uint8_t type, uint32_t length) {
    uint32_t max =
        direction == Direction::Frontend ? frontend_length_max(type) : backend_length_max(type);
    uint32_t min =
        direction == Direction::Frontend ? frontend_length_min(type) : backend_length_min(type);
    if (max == 0)
        return direction == Direction::Frontend ? "invalid frontend message type"
                                                : "invalid backend message type";
    if (length < min) return "invalid message length";
    if (length > max) return "message too long for its type";
    return nullptr;
}

template <typename Handler>
concept HandlesHead = requires(Handler& handler, const uint8_t* head) {
    { handler.on_head(uint8_t{}, head, uint32_t{}, uint32_t{}) } -> std::same_as<Fate>;
};

// Head fate: gathers the head from data[at..size); once whole, on_head decides the fate of
// the rest. False when the handler refused storage for a head split across buffers.
template <typename Handler>
bool feed_head(FrameState& state, const uint8_t* data, uint32_t size, uint32_t& at,
               Handler& handler) {
    uint32_t have = state.body_size - state.body_left;
    uint32_t want = state.head_size - have;
    uint32_t take = want < size - at ? want : size - at;
    const uint8_t* head = nullptr;
    if (have == 0 && take == state.head_size) {
        head = data + at;
    } else if (take > 0) {
        if (state.assembly == nullptr) {
            state.assembly = handler.assembly(state.head_size);
            if (state.assembly == nullptr) return false;
        }
        memcpy(state.assembly + have, data + at, take);
    }
    state.body_left -= take;
    at += take;
    if (have + take < state.head_size) return true;
    if (head == nullptr) head = state.assembly;
    state.assembly = nullptr;
    Fate rest = handler.on_head(state.header[0], head, state.head_size, state.body_size);
    PGPLEX_ASSERT(rest == Fate::Forward || rest == Fate::Drop);
    state.fate = rest;
    return true;
}

}  // namespace detail

// Feeds one buffer. See the file comment for the handler's contract.
template <typename Handler>
FeedResult feed(FrameState& state, Direction direction, const uint8_t* data, uint32_t size,
                Handler& handler) {
    uint32_t at = 0;
    while (true) {
        if constexpr (detail::HandlesHead<Handler>) {
            if (state.in_body && state.fate == Fate::Head) {
                if (!detail::feed_head(state, data, size, at, handler))
                    return {FeedStatus::Violation, at, "message too large"};
                if (state.fate == Fate::Head) return {FeedStatus::Done, at, nullptr};
                if (state.body_left == 0) {
                    state.in_body = false;
                    state.header_have = 0;
                }
                continue;
            }
        }
        if (state.in_body) {
            uint32_t take = state.body_left < size - at ? state.body_left : size - at;
            bool assembles = state.fate == Fate::Inspect || state.fate == Fate::ForwardInspect;
            const uint8_t* body = nullptr;
            if (take > 0) {
                if (assembles) {
                    uint32_t offset = state.body_size - state.body_left;
                    bool whole_here = offset == 0 && take == state.body_size;
                    if (whole_here) {
                        body = data + at;
                    } else {
                        if (state.assembly == nullptr) {
                            state.assembly = handler.assembly(state.body_size);
                            if (state.assembly == nullptr)
                                return {FeedStatus::Violation, at, "message too large"};
                        }
                        memcpy(state.assembly + offset, data + at, take);
                    }
                }
                // After the assembly is granted, so a refused one forwards nothing past
                // `consumed`.
                if (state.fate == Fate::Forward || state.fate == Fate::ForwardInspect)
                    handler.forward(data + at, take, false);
                state.body_left -= take;
                at += take;
            }
            if (state.body_left > 0) return {FeedStatus::Done, at, nullptr};
            state.in_body = false;
            state.header_have = 0;
            if (assembles) {
                if (body == nullptr) body = state.body_size == 0 ? data + at : state.assembly;
                uint8_t* assembly = state.assembly;
                state.assembly = nullptr;
                (void)assembly;
                if (handler.on_message(state.header[0], body, state.body_size) == Verdict::Pause)
                    return {FeedStatus::Paused, at, nullptr};
            }
            continue;
        }
        // A held header (header_have 5) is decided again even when no new byte came.
        if (at == size && state.header_have < 5) return {FeedStatus::Done, at, nullptr};
        // Collect the 5-byte header, possibly across buffers.
        uint32_t header_start = at;
        bool straddled = state.header_have > 0;
        while (state.header_have < 5 && at < size) state.header[state.header_have++] = data[at++];
        if (state.header_have < 5) return {FeedStatus::Done, at, nullptr};
        uint8_t type = state.header[0];
        uint32_t length = read_be32(state.header + 1);
        if (const char* reason = detail::check_length(direction, type, length))
            return {FeedStatus::Violation, at, reason};
        Fate fate = handler.on_header(type, length);
        if (fate == Fate::Hold) {
            if (!straddled) {
                state.header_have = 0;
                return {FeedStatus::Paused, header_start, nullptr};
            }
            return {FeedStatus::Paused, at, nullptr};  // the header stays in the stash
        }
        if (fate == Fate::Forward || fate == Fate::ForwardInspect) {
            if (straddled)
                handler.forward(state.header, 5, true);
            else
                handler.forward(data + header_start, 5, false);
        }
        state.fate = fate;
        state.body_size = length - 4;
        state.body_left = state.body_size;
        state.head_size = state.body_size < head_bytes_max ? state.body_size : head_bytes_max;
        state.assembly = nullptr;
        state.in_body = true;
    }
}

}  // namespace pgplex::proto
