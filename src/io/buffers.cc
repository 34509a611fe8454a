// See buffers.h. The ring memory and the buffers it lends are mapped once at start.
#include "pgplex/io/buffers.h"

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>

#include "pgplex/base/log.h"

namespace pgplex::io {

Buffers::Buffers(io_uring& ring, uint32_t ring_count, uint32_t buffer_size)
    : ring_(ring), ring_count_(ring_count), buffer_size_(buffer_size) {
    PGPLEX_ASSERT(ring_count > 0 && (ring_count & (ring_count - 1)) == 0);
    buf_ring_bytes_ = sizeof(io_uring_buf) * ring_count;
    void* ring_memory =
        mmap(nullptr, buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring_memory == MAP_FAILED) throw std::runtime_error("mmap of the buffer ring failed");
    buf_ring_ = static_cast<io_uring_buf_ring*>(ring_memory);
    size_t data_bytes = size_t(ring_count) * buffer_size;
    void* data =
        mmap(nullptr, data_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (data == MAP_FAILED) throw std::runtime_error("mmap of the receive buffers failed");
    ring_data_ = static_cast<uint8_t*>(data);

    io_uring_buf_reg registration{};
    registration.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
    registration.ring_entries = ring_count;
    registration.bgid = buffer_group;
    int rc = io_uring_register_buf_ring(&ring_, &registration, 0);
    if (rc < 0)
        throw std::runtime_error(std::string("io_uring_register_buf_ring: ") + strerror(-rc));
    io_uring_buf_ring_init(buf_ring_);
    uint32_t mask = io_uring_buf_ring_mask(ring_count);
    for (uint32_t i = 0; i < ring_count; ++i)
        io_uring_buf_ring_add(buf_ring_, ring_data_ + size_t(i) * buffer_size, buffer_size,
                              uint16_t(i), mask, i);
    io_uring_buf_ring_advance(buf_ring_, ring_count);
    ring_free_ = ring_count;
    refs_.assign(ring_count, 0);
    chunks_.reserve(ring_count * 2);
}

Buffers::~Buffers() {
    io_uring_unregister_buf_ring(&ring_, buffer_group);
    munmap(buf_ring_, buf_ring_bytes_);
    munmap(ring_data_, size_t(ring_count_) * buffer_size_);
}

void Buffers::unref(uint32_t buffer) {
    PGPLEX_ASSERT(refs_[buffer] > 0);
    if (--refs_[buffer] > 0) return;
    if (buffer < ring_count_) {
        io_uring_buf_ring_add(buf_ring_, data(buffer), buffer_size_, uint16_t(buffer),
                              io_uring_buf_ring_mask(ring_count_), pending_advance_);
        ++pending_advance_;
    } else {
        out_free_.push_back(buffer);
    }
}

void Buffers::flush_recycled() {
    if (pending_advance_ == 0) return;
    io_uring_buf_ring_advance(buf_ring_, pending_advance_);
    ring_free_ += pending_advance_;
    pending_advance_ = 0;
}

uint32_t Buffers::out_acquire() {
    if (out_free_.empty()) {
        out_blocks_.push_back(std::make_unique<uint8_t[]>(buffer_size_));
        refs_.push_back(0);
        out_free_.push_back(ring_count_ + uint32_t(out_blocks_.size()) - 1);
    }
    uint32_t buffer = out_free_.back();
    out_free_.pop_back();
    refs_[buffer] = 1;
    return buffer;
}

uint32_t Buffers::chunk_acquire() {
    ++chunks_used_;
    if (chunk_free_ == nil) {
        chunks_.push_back(Chunk{});
        return uint32_t(chunks_.size() - 1);
    }
    uint32_t index = chunk_free_;
    chunk_free_ = chunks_[index].next;
    chunks_[index] = Chunk{};
    return index;
}

void Buffers::chunk_release(uint32_t index) {
    --chunks_used_;
    chunks_[index].next = chunk_free_;
    chunks_[index].buffer = nil;
    chunk_free_ = index;
}

void Buffers::append(ChunkQueue& queue, uint32_t buffer, uint32_t offset, uint32_t size) {
    if (size == 0) return;
    queue.bytes += size;
    if (queue.tail != nil) {
        Chunk& tail = chunks_[queue.tail];
        if (tail.buffer == buffer && tail.offset + tail.size == offset) {
            tail.size += size;
            return;
        }
    }
    uint32_t index = chunk_acquire();
    chunks_[index] = Chunk{nil, buffer, offset, size};
    ref(buffer);
    if (queue.tail == nil)
        queue.head = index;
    else
        chunks_[queue.tail].next = index;
    queue.tail = index;
}

void Buffers::append_copy(ChunkQueue& queue, const uint8_t* bytes, uint32_t size) {
    while (size > 0) {
        // Fill the tail out buffer when it has room, else take a new one.
        uint32_t buffer = nil;
        uint32_t offset = 0;
        if (queue.tail != nil) {
            const Chunk& tail = chunks_[queue.tail];
            if (!is_ring(tail.buffer) && refs_[tail.buffer] == 1 &&
                tail.offset + tail.size < buffer_size_) {
                buffer = tail.buffer;
                offset = tail.offset + tail.size;
            }
        }
        bool fresh = buffer == nil;
        if (fresh) buffer = out_acquire();
        uint32_t take = buffer_size_ - offset < size ? buffer_size_ - offset : size;
        memcpy(data(buffer) + offset, bytes, take);
        append(queue, buffer, offset, take);
        if (fresh) unref(buffer);
        bytes += take;
        size -= take;
    }
}

void Buffers::consume(ChunkQueue& queue, uint32_t bytes) {
    PGPLEX_ASSERT(bytes <= queue.bytes);
    queue.bytes -= bytes;
    while (bytes > 0 || (queue.head != nil && chunks_[queue.head].size == 0)) {
        PGPLEX_ASSERT(queue.head != nil);
        Chunk& head = chunks_[queue.head];
        uint32_t take = head.size < bytes ? head.size : bytes;
        head.offset += take;
        head.size -= take;
        bytes -= take;
        if (head.size > 0) break;
        uint32_t next = head.next;
        unref(head.buffer);
        chunk_release(queue.head);
        queue.head = next;
        if (next == nil) queue.tail = nil;
    }
}

}  // namespace pgplex::io
