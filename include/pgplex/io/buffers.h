// Buffers of one worker: the provided buffer ring the kernel receives into, a pool of
// "out" buffers pgplex writes its own messages into, and the chunks that make up each
// connection's send queue.
//
// Every buffer has a reference count. A received buffer starts with one reference, held
// while its bytes are being framed; each queued chunk of it holds one more. When the
// count reaches zero a ring buffer goes back to the kernel (recycled, advanced once per
// loop turn) and an out buffer goes back to its free list. So forwarding never copies:
// the bytes that arrived from one socket leave on the other from the same memory.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "pgplex/base/assert.h"

namespace pgplex::io {

inline constexpr uint32_t nil = 0xffffffffu;
inline constexpr uint16_t buffer_group = 0;

// One range of one buffer waiting to be sent.
struct Chunk {
    uint32_t next = nil;
    uint32_t buffer = nil;
    uint32_t offset = 0;
    uint32_t size = 0;
};

// A FIFO of chunks (a connection's send queue, or bytes received but not yet processed).
struct ChunkQueue {
    uint32_t head = nil;
    uint32_t tail = nil;
    uint32_t bytes = 0;
    bool empty() const { return head == nil; }
};

class Buffers {
  public:
    // ring_count: power of two; buffer_size: bytes per buffer (ring and out alike).
    Buffers(io_uring& ring, uint32_t ring_count, uint32_t buffer_size);
    ~Buffers();
    Buffers(const Buffers&) = delete;
    Buffers& operator=(const Buffers&) = delete;

    uint32_t buffer_size() const { return buffer_size_; }
    uint8_t* data(uint32_t buffer) {
        return buffer < ring_count_ ? ring_data_ + size_t(buffer) * buffer_size_
                                    : out_blocks_[buffer - ring_count_].get();
    }
    bool is_ring(uint32_t buffer) const { return buffer < ring_count_; }

    // A buffer the kernel filled: the caller holds one reference.
    void received(uint32_t buffer) {
        PGPLEX_ASSERT(buffer < ring_count_ && refs_[buffer] == 0 && ring_free_ > 0);
        refs_[buffer] = 1;
        --ring_free_;
    }
    void ref(uint32_t buffer) { ++refs_[buffer]; }
    void unref(uint32_t buffer);
    // An out buffer with one reference, for pgplex's own messages.
    uint32_t out_acquire();

    // Appends a range to a queue, merging it with the tail when contiguous. Takes a ref.
    void append(ChunkQueue& queue, uint32_t buffer, uint32_t offset, uint32_t size);
    // Copies bytes into out buffers and appends them (for small pgplex-made messages).
    void append_copy(ChunkQueue& queue, const uint8_t* bytes, uint32_t size);
    // Removes `bytes` from the head of the queue, dropping refs of finished chunks.
    void consume(ChunkQueue& queue, uint32_t bytes);
    void clear(ChunkQueue& queue) { consume(queue, queue.bytes); }
    Chunk& chunk(uint32_t index) { return chunks_[index]; }

    // Gives recycled ring buffers back to the kernel; once per loop turn.
    void flush_recycled();
    uint32_t ring_free() const { return ring_free_; }
    uint32_t ring_count() const { return ring_count_; }
    // For SHOW WORKERS / SHOW MEM: ring buffers pgplex holds (received, not yet given back),
    // out buffers made and in use, chunks made and in use.
    uint32_t ring_in_use() const { return ring_count_ - ring_free_ - pending_advance_; }
    uint32_t out_count() const { return uint32_t(out_blocks_.size()); }
    uint32_t out_in_use() const { return uint32_t(out_blocks_.size() - out_free_.size()); }
    uint32_t chunk_count() const { return uint32_t(chunks_.size()); }
    uint32_t chunks_in_use() const { return chunks_used_; }

  private:
    uint32_t chunk_acquire();
    void chunk_release(uint32_t index);

    io_uring& ring_;
    io_uring_buf_ring* buf_ring_ = nullptr;
    size_t buf_ring_bytes_ = 0;
    uint8_t* ring_data_ = nullptr;
    uint32_t ring_count_;
    uint32_t buffer_size_;
    uint32_t pending_advance_ = 0;
    uint32_t ring_free_ = 0;
    std::vector<uint16_t> refs_;
    std::vector<std::unique_ptr<uint8_t[]>> out_blocks_;
    std::vector<uint32_t> out_free_;
    std::vector<Chunk> chunks_;
    uint32_t chunk_free_ = nil;
    uint32_t chunks_used_ = 0;
};

}  // namespace pgplex::io
