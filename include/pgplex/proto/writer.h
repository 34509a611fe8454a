// Building protocol messages into a caller's buffer (cf. PostgreSQL's pq_beginmessage /
// pq_sendint32 / pq_endmessage). Never allocates; a write past the capacity marks the
// writer overflowed and is ignored, so callers check ok() once at the end.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "pgplex/base/assert.h"
#include "pgplex/proto/message.h"

namespace pgplex::proto {

class Writer {
public:
    Writer(uint8_t* buffer, uint32_t capacity) : buffer_(buffer), capacity_(capacity) {}

    void begin(BackendMessage type) { begin_typed(static_cast<uint8_t>(type)); }
    void begin(FrontendMessage type) { begin_typed(static_cast<uint8_t>(type)); }
    // A startup-phase packet: a length word and no type byte.
    void begin_untyped() {
        PGPLEX_ASSERT(message_start_ < 0);
        message_start_ = int64_t(size_);
        int32(0);
    }
    void end() {
        PGPLEX_ASSERT(message_start_ >= 0);
        if (!overflowed_) {
            uint32_t length = size_ - uint32_t(message_start_);
            put_be32(buffer_ + message_start_, length);
        }
        message_start_ = -1;
    }

    void int8(uint8_t value) { bytes(&value, 1); }
    void int16(uint16_t value) {
        uint8_t b[2] = {uint8_t(value >> 8), uint8_t(value)};
        bytes(b, 2);
    }
    void int32(uint32_t value) {
        uint8_t b[4];
        put_be32(b, value);
        bytes(b, 4);
    }
    void cstring(std::string_view text) {
        bytes(text.data(), uint32_t(text.size()));
        int8(0);
    }
    void bytes(const void* data, uint32_t size) {
        if (overflowed_ || size > capacity_ - size_) {
            overflowed_ = true;
            return;
        }
        if (size == 0) return;  // data may be null then (an empty string_view's)
        memcpy(buffer_ + size_, data, size);
        size_ += size;
    }

    bool ok() const { return !overflowed_ && message_start_ < 0; }
    uint32_t size() const { return size_; }
    const uint8_t* data() const { return buffer_; }

private:
    void begin_typed(uint8_t type) {
        PGPLEX_ASSERT(message_start_ < 0);
        int8(type);
        message_start_ = int64_t(size_);
        int32(0);
    }
    static void put_be32(uint8_t* p, uint32_t v) {
        p[0] = uint8_t(v >> 24);
        p[1] = uint8_t(v >> 16);
        p[2] = uint8_t(v >> 8);
        p[3] = uint8_t(v);
    }

    uint8_t* buffer_;
    uint32_t capacity_;
    uint32_t size_ = 0;
    int64_t message_start_ = -1;
    bool overflowed_ = false;
};

}  // namespace pgplex::proto
