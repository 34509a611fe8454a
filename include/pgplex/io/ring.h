// One io_uring per worker thread: setup with the best flags the kernel has, SQE access that
// never fails (a full submission queue is flushed first), and the loop's one syscall:
// submit everything prepared and wait for at least one completion.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <string>

namespace pgplex::io {

class Ring {
  public:
    // entries: submission queue size; the completion queue is 8x (multishot ops post many).
    // files: size of the registered (fixed) file table; files_for_accept: the first
    // files_for_accept entries are where accept puts new clients.
    Ring(uint32_t entries, uint32_t files, uint32_t files_for_accept);
    ~Ring();
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    io_uring& raw() { return ring_; }
    int fd() const { return ring_.ring_fd; }
    const std::string& features() const { return features_; }

    io_uring_sqe* sqe();
    // Submits prepared SQEs and waits for one completion (or the tick timeout to fire).
    // Submits and waits for a completion; `sends`: sendmsg entries among those submitted
    // (see ring.cc).
    int submit_and_wait(unsigned sends);
    // Registers a plain fd at a fixed-file index (the fd may be closed afterwards).
    int install_file(uint32_t index, int fd);

  private:
    io_uring ring_{};
    std::string features_;
};

}  // namespace pgplex::io
