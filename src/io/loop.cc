// See loop.h.
#include "pgplex/io/loop.h"

#include "pgplex/base/assert.h"

#include <sys/socket.h>
#include <unistd.h>

namespace pgplex::io {

Loop::Loop(uint32_t ring_entries, uint32_t files, uint32_t files_for_accept, uint32_t buffer_count,
           uint32_t buffer_size)
    : ring(ring_entries, files, files_for_accept), buffers(ring.raw(), buffer_count, buffer_size) {}

int Loop::submit_and_wait() {
    int rc = ring.submit_and_wait(sends_queued_);
    sends_queued_ = 0;
    return rc;
}

// --- recv ---------------------------------------------------------------------------------

void Loop::arm_recv(Conn& conn, Op recv_op, uint32_t slot) {
    PGPLEX_ASSERT(!conn.recv_armed && !conn.closing);
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_recv_multishot(sqe, int(conn.file), nullptr, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffer_group;
    io_uring_sqe_set_data64(sqe, pack(recv_op, slot, conn.generation));
    conn.recv_armed = true;
    ++conn.inflight;
}

void Loop::pause_recv(Conn& conn, Op recv_op, uint32_t slot) {
    if (conn.recv_paused) return;
    conn.recv_paused = true;
    if (!conn.recv_armed) return;
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_cancel64(sqe, pack(recv_op, slot, conn.generation), 0);
    io_uring_sqe_set_data64(sqe, pack(Op::Ignored, 0, 0));
}

void Loop::resume_recv(Conn& conn, Op recv_op, uint32_t slot) {
    if (!conn.recv_paused) return;
    conn.recv_paused = false;
    if (!conn.recv_armed && !conn.closing && !conn.eof && !conn.recv_starved)
        arm_recv(conn, recv_op, slot);
}

void Loop::recv_starved(Conn& conn, Op recv_op, uint32_t slot) {
    conn.recv_starved = true;
    starved_.push_back(pack(recv_op, slot, conn.generation));
}

// --- send ---------------------------------------------------------------------------------

void Loop::mark_dirty(Conn& conn, Op send_op, uint32_t slot) {
    if (conn.dirty || conn.closing) return;
    conn.dirty = true;
    dirty_.push_back(pack(send_op, slot, conn.generation));
}

void Loop::seal(Conn& conn) {
    tls::Session& session = *conn.tls;
    uint32_t room = limits::sealed_bytes_max;
    while (!conn.out.empty() && conn.sealed.bytes < room) {
        const Chunk& chunk = buffers.chunk(conn.out.head);
        uint32_t size = chunk.size;
        // Before the handshake is done there is no key to encrypt with: what is queued
        // waits for it (a StartupMessage to a server); a session that failed sends nothing.
        if (!session.established() && session.status() == tls::Status::Ok) break;
        if (session.established()) session.write(buffers.data(chunk.buffer) + chunk.offset, size);
        buffers.consume(conn.out, size);
    }
    while (session.pending() > 0) {
        uint32_t buffer = buffers.out_acquire();
        uint32_t got = session.take(buffers.data(buffer), buffers.buffer_size());
        if (got > 0) buffers.append(conn.sealed, buffer, 0, got);
        buffers.unref(buffer);
        if (got == 0) break;
    }
}

void Loop::start_tls(Conn& conn, const tls::Context& context, Op send_op, uint32_t slot,
                     const uint8_t* raw, uint32_t raw_size) {
    PGPLEX_ASSERT(!conn.tls);
    // What was queued in clear goes first, in clear.
    while (!conn.out.empty()) {
        const Chunk& chunk = buffers.chunk(conn.out.head);
        buffers.append(conn.sealed, chunk.buffer, chunk.offset, chunk.size);
        buffers.consume(conn.out, chunk.size);
    }
    if (raw_size > 0) buffers.append_copy(conn.sealed, raw, raw_size);
    conn.tls = std::make_unique<tls::Session>(context);
    if (!conn.sealed.empty()) mark_dirty(conn, send_op, slot);
}

void Loop::start_tls_client(Conn& conn, const tls::Context& context, const std::string& host,
                            Op send_op, uint32_t slot) {
    PGPLEX_ASSERT(!conn.tls);
    conn.tls = std::make_unique<tls::Session>(context, host);
    conn.tls->start();
    seal(conn);
    if (!conn.sealed.empty()) mark_dirty(conn, send_op, slot);
}

void Loop::submit_send(Conn& conn, Op op, uint32_t slot) {
    if (conn.tls) seal(conn);
    ChunkQueue& wire = conn.wire();
    if (wire.empty()) return;
    if (send_free_ == nil) {
        send_ops_.push_back(std::make_unique<SendOp>());
        send_free_ = uint32_t(send_ops_.size() - 1);
    }
    uint32_t index_op = send_free_;
    SendOp& send = *send_ops_[index_op];
    send_free_ = send.next_free;
    uint32_t count = 0;
    for (uint32_t c = wire.head; c != nil && count < limits::send_iovecs_max;
         c = buffers.chunk(c).next) {
        const Chunk& chunk = buffers.chunk(c);
        send.vectors[count].iov_base = buffers.data(chunk.buffer) + chunk.offset;
        send.vectors[count].iov_len = chunk.size;
        ++count;
    }
    send.header = msghdr{};
    send.header.msg_iov = send.vectors;
    send.header.msg_iovlen = count;
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_sendmsg(sqe, int(conn.file), &send.header, MSG_NOSIGNAL | MSG_WAITALL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, pack(op, slot, conn.generation));
    conn.send_busy = true;
    conn.send_op = index_op;
    ++sends_queued_;
    ++conn.inflight;
}

void Loop::send_done(Conn& conn) {
    conn.send_busy = false;
    send_ops_[conn.send_op]->next_free = send_free_;
    send_free_ = conn.send_op;
    conn.send_op = nil;
}

// --- addresses ----------------------------------------------------------------------------

// IORING_OP_FIXED_FD_INSTALL, which liburing 2.3's headers predate.
constexpr uint8_t op_fixed_fd_install = 54;

void Loop::ask_addresses(Conn& conn, Op op, uint32_t slot) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_rw(op_fixed_fd_install, sqe, int(conn.file), nullptr, 0, 0);
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->rw_flags = 0;  // install_fd_flags: O_CLOEXEC
    io_uring_sqe_set_data64(sqe, pack(op, slot, conn.generation));
    ++conn.inflight;
}

bool Loop::read_addresses(int fd, sockaddr_storage& peer, sockaddr_storage& local,
                          uint32_t& peer_uid) {
    socklen_t peer_size = sizeof peer;
    socklen_t local_size = sizeof local;
    bool ok = getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_size) == 0 &&
              getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) == 0;
    peer_uid = uid_unknown;
    ucred credentials{};
    socklen_t credentials_size = sizeof credentials;
    if (ok && peer.ss_family == AF_UNIX &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &credentials_size) == 0)
        peer_uid = credentials.uid;
    ::close(fd);
    return ok;
}

// --- close --------------------------------------------------------------------------------

void Loop::request_close(Conn& conn, Op close_op, uint32_t slot) {
    if (conn.closing) return;
    conn.closing = true;
    conn.close_when_sent = false;
    // Shut the socket down so a live multishot recv and any send complete now, and cancel
    // whatever is left (a connect to an unreachable host, a send to a peer that stopped
    // reading). Both address the fixed-file index, so both are counted in flight: the file
    // is closed only after they completed (continue_close), or a late one could hit the
    // next connection given the same index.
    Op shutdown_op = close_op == Op::ClientClose ? Op::ClientShutdown : Op::ServerShutdown;
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_shutdown(sqe, int(conn.file), SHUT_RDWR);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, pack(shutdown_op, slot, conn.generation));
    ++conn.inflight;
    if (conn.inflight > 1) {
        sqe = ring.sqe();
        io_uring_prep_cancel_fd(sqe, int(conn.file),
                                IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
        io_uring_sqe_set_data64(sqe, pack(shutdown_op, slot, conn.generation));
        ++conn.inflight;
    }
}

void Loop::request_handover(Conn& conn, Op install_op, Op cancel_op, uint32_t slot) {
    PGPLEX_ASSERT(!conn.closing);
    conn.closing = true;
    conn.close_when_sent = false;
    io_uring_sqe* sqe;
    if (conn.inflight > 0) {
        sqe = ring.sqe();
        io_uring_prep_cancel_fd(sqe, int(conn.file),
                                IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
        io_uring_sqe_set_data64(sqe, pack(cancel_op, slot, conn.generation));
        ++conn.inflight;
    }
    sqe = ring.sqe();
    io_uring_prep_rw(op_fixed_fd_install, sqe, int(conn.file), nullptr, 0, 0);
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->rw_flags = 0;  // O_CLOEXEC
    io_uring_sqe_set_data64(sqe, pack(install_op, slot, conn.generation));
    ++conn.inflight;
}

void Loop::continue_close(Conn& conn, Op close_op, uint32_t slot) {
    PGPLEX_ASSERT(conn.closing);
    if (conn.inflight > 0 || conn.close_submitted) return;
    buffers.clear(conn.out);
    buffers.clear(conn.sealed);
    buffers.clear(conn.held_in);
    conn.tls.reset();
    conn.close_submitted = true;
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_close_direct(sqe, conn.file);
    io_uring_sqe_set_data64(sqe, pack(close_op, slot, conn.generation));
    ++conn.inflight;
}

}  // namespace pgplex::io
