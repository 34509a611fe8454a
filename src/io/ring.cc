// See ring.h. SINGLE_ISSUER | DEFER_TASKRUN (kernel 6.1+) keep completions on the worker
// thread and run task work only when the loop asks; older kernels get COOP_TASKRUN, then
// nothing, each fallback logged.
#include "pgplex/io/ring.h"

#include "pgplex/base/limits.h"

#include <cstring>
#include <stdexcept>

#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"

namespace pgplex::io {

namespace {

int try_setup(io_uring& ring, uint32_t entries, uint32_t flags) {
    io_uring_params params{};
    params.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    params.cq_entries = entries * 8;
    return io_uring_queue_init_params(entries, &ring, &params);
}

}  // namespace

Ring::Ring(uint32_t entries, uint32_t files, uint32_t files_for_accept) {
    const uint32_t best = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = try_setup(ring_, entries, best);
    features_ = "SINGLE_ISSUER|DEFER_TASKRUN";
    if (rc < 0) {
        log_warning(
            "io_uring: SINGLE_ISSUER|DEFER_TASKRUN not available (%s); "
            "falling back to COOP_TASKRUN",
            strerror(-rc));
        rc = try_setup(ring_, entries, IORING_SETUP_COOP_TASKRUN);
        features_ = "COOP_TASKRUN";
    }
    if (rc < 0) {
        log_warning("io_uring: COOP_TASKRUN not available (%s); using no setup flags",
                    strerror(-rc));
        rc = try_setup(ring_, entries, 0);
        features_ = "none";
    }
    if (rc < 0) throw std::runtime_error(std::string("io_uring_queue_init: ") + strerror(-rc));
    rc = io_uring_register_files_sparse(&ring_, files);
    if (rc < 0) {
        io_uring_queue_exit(&ring_);
        throw std::runtime_error(std::string("io_uring_register_files_sparse: ") + strerror(-rc));
    }
    rc = io_uring_register_file_alloc_range(&ring_, 0, files_for_accept);
    if (rc < 0) {
        io_uring_queue_exit(&ring_);
        throw std::runtime_error(std::string("io_uring_register_file_alloc_range: ") +
                                 strerror(-rc));
    }
    // The ring fd itself registered: saves an fget/fput on every io_uring_enter.
    if (io_uring_register_ring_fd(&ring_) < 0)
        log_debug("io_uring: could not register the ring fd; continuing");
}

Ring::~Ring() {
    io_uring_queue_exit(&ring_);
}

io_uring_sqe* Ring::sqe() {
    io_uring_sqe* entry = io_uring_get_sqe(&ring_);
    if (entry != nullptr) return entry;
    io_uring_submit(&ring_);
    entry = io_uring_get_sqe(&ring_);
    PGPLEX_ASSERT(entry != nullptr);
    return entry;
}

int Ring::submit_and_wait(unsigned sends) {
    if (sends == 0) return io_uring_submit_and_wait(&ring_, 1);
    // A send to a socket with room completes while it is submitted and posts its completion
    // at once: waiting for one completion would return at once, only to enter again to
    // sleep. Waiting for one more than the sends makes that one enter; a send that could
    // not complete inline (a full socket) is waited for at most send_wait_us.
    __kernel_timespec timeout{0, limits::send_wait_us * 1000};
    io_uring_cqe* cqe = nullptr;
    return io_uring_submit_and_wait_timeout(&ring_, &cqe, sends + 1, &timeout, nullptr);
}

int Ring::install_file(uint32_t index, int fd) {
    return io_uring_register_files_update(&ring_, index, &fd, 1);
}

}  // namespace pgplex::io
