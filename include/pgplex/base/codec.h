// A plain binary encoding for pgplex's own messages between processes: fixed-width integers
// in little-endian order and strings as a 32-bit length and their bytes. ByteReader checks
// every length against what is left: a short or forged input makes it fail, never read past
// the end (its users' fuzz targets feed it garbage).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace pgplex::base {

class ByteWriter {
  public:
    void u8(uint8_t value) { out_.push_back(char(value)); }
    void u32(uint32_t value) { fixed(value, 4); }
    void u64(uint64_t value) { fixed(value, 8); }
    void i64(int64_t value) { fixed(uint64_t(value), 8); }
    void boolean(bool value) { u8(value ? 1 : 0); }
    void bytes(std::string_view value) {
        u32(uint32_t(value.size()));
        out_.append(value);
    }
    void raw(const void* data, size_t size) { out_.append(static_cast<const char*>(data), size); }
    const std::string& data() const { return out_; }
    std::string take() { return std::move(out_); }

  private:
    void fixed(uint64_t value, int width) {
        for (int i = 0; i < width; ++i) out_.push_back(char(value >> (8 * i)));
    }
    std::string out_;
};

class ByteReader {
  public:
    explicit ByteReader(std::string_view in) : in_(in) {}

    uint8_t u8() { return uint8_t(fixed(1)); }
    uint32_t u32() { return uint32_t(fixed(4)); }
    uint64_t u64() { return fixed(8); }
    int64_t i64() { return int64_t(fixed(8)); }
    bool boolean() {
        uint8_t value = u8();
        if (value > 1) failed_ = true;
        return value == 1;
    }
    // A string of at most `max` bytes.
    std::string bytes(size_t max) {
        uint32_t size = u32();
        if (failed_ || size > max || size > in_.size() - at_) {
            failed_ = true;
            return {};
        }
        std::string out(in_.substr(at_, size));
        at_ += size;
        return out;
    }
    bool raw(void* out, size_t size) {
        if (failed_ || size > in_.size() - at_) {
            failed_ = true;
            return false;
        }
        memcpy(out, in_.data() + at_, size);
        at_ += size;
        return true;
    }
    // A count of items that each take at least `min_bytes`: more than what is left could
    // hold fails (a forged count never makes the reader allocate for it).
    uint32_t count(uint32_t max, size_t min_bytes = 1) {
        uint32_t value = u32();
        if (value > max || (min_bytes > 0 && value > (in_.size() - at_) / min_bytes))
            failed_ = true;
        return failed_ ? 0 : value;
    }
    bool ok() const { return !failed_; }
    bool at_end() const { return !failed_ && at_ == in_.size(); }
    std::string_view rest() const { return failed_ ? std::string_view() : in_.substr(at_); }

  private:
    uint64_t fixed(int width) {
        if (failed_ || size_t(width) > in_.size() - at_) {
            failed_ = true;
            return 0;
        }
        uint64_t value = 0;
        for (int i = 0; i < width; ++i) value |= uint64_t(uint8_t(in_[at_ + i])) << (8 * i);
        at_ += width;
        return value;
    }
    std::string_view in_;
    size_t at_ = 0;
    bool failed_ = false;
};

}  // namespace pgplex::base
