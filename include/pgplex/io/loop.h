// io::Loop: the socket operations on the connections of one ring, and the seam TLS plugs
// into. A connection's bytes come in by a multishot recv into the provided buffer ring and
// go out by sendmsg of the chunks queued on it; recv is paused and resumed for flow
// control and re-armed when the ring had no buffer; a close waits for every op in flight.
// It knows connections only by (op, slot, generation): the worker that owns the slot
// tables finds a Conn for it (conn_at).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/io/buffers.h"
#include "pgplex/io/conn.h"
#include "pgplex/io/ring.h"
#include "pgplex/io/user_data.h"

namespace pgplex::io {

// One sendmsg in flight. The kernel reads its msghdr and iovecs while the send runs, so
// each lives at a fixed address.
struct SendOp {
    msghdr header{};
    iovec vectors[limits::send_iovecs_max];
    uint32_t next_free = nil;
};

class Loop {
  public:
    Loop(uint32_t ring_entries, uint32_t files, uint32_t files_for_accept, uint32_t buffer_count,
         uint32_t buffer_size);

    Ring ring;
    Buffers buffers;

    // `recv_op` / `send_op` / `close_op` name the side, `slot` the slot.
    void arm_recv(Conn& conn, Op recv_op, uint32_t slot);
    void pause_recv(Conn& conn, Op recv_op, uint32_t slot);
    void resume_recv(Conn& conn, Op recv_op, uint32_t slot);
    void mark_dirty(Conn& conn, Op send_op, uint32_t slot);
    void request_close(Conn& conn, Op close_op, uint32_t slot);
    // pgplex --takeover: the connection goes to another process, not away. No shutdown
    // (that would end it for the other process too): its recv is cancelled and its socket is
    // installed in the fd table (completion `install_op`, its res the fd); the fixed file
    // is closed once nothing is in flight (continue_close).
    void request_handover(Conn& conn, Op install_op, Op cancel_op, uint32_t slot);
    // After an op completed on a closing conn: submits the close when nothing is in flight.
    void continue_close(Conn& conn, Op close_op, uint32_t slot);

    // A direct descriptor has no address to ask: this installs it in the process's fd
    // table (IORING_OP_FIXED_FD_INSTALL, Linux 6.8), and the completion's fd is given to
    // read_addresses() and closed.
    void ask_addresses(Conn& conn, Op op, uint32_t slot);
    // The peer's and our own address of a socket `fd`, and on a Unix socket the peer's user
    // id (SO_PEERCRED; else uid_unknown); closes it. False if unreadable.
    static constexpr uint32_t uid_unknown = 0xffffffffu;
    static bool read_addresses(int fd, sockaddr_storage& peer, sockaddr_storage& local,
                               uint32_t& peer_uid);

    // TLS from now on (the server side of the handshake): bytes already received and not
    // processed must have been taken out by the caller. `raw`, if any, goes out before it in
    // clear (the 'S' answering an SSLRequest).
    void start_tls(Conn& conn, const tls::Context& context, Op send_op, uint32_t slot,
                   const uint8_t* raw, uint32_t raw_size);
    // TLS from now on, as the client (toward a server named `host`): the ClientHello goes
    // out now; what is queued meanwhile waits for the handshake.
    void start_tls_client(Conn& conn, const tls::Context& context, const std::string& host,
                          Op send_op, uint32_t slot);
    // Ciphertext received on a TLS conn: decrypts it, and hands each piece of plaintext to
    // deliver(buffer, size) as if it had been received (the caller holds one reference on
    // the buffer meanwhile). Returns the session's status afterwards (Failed: close it).
    template <typename Deliver>
    tls::Status open_tls(Conn& conn, Op send_op, uint32_t slot, const uint8_t* data, uint32_t size,
                         Deliver deliver);

  protected:
    // Submits what the turn prepared and waits for a completion.
    int submit_and_wait();
    // A recv found the buffer ring empty: re-armed once buffers come back (end_turn).
    void recv_starved(Conn& conn, Op recv_op, uint32_t slot);
    // A send completed: its SendOp is free again.
    void send_done(Conn& conn);
    void submit_send(Conn& conn, Op send_op, uint32_t slot);
    // TLS: encrypts `out` into `sealed`, as far as `sealed` has room (flow control sees the
    // plaintext left in `out`), and takes the session's ciphertext (handshake, alerts).
    void seal(Conn& conn);
    // After the turn's completions: buffers back to the ring, starved recvs re-armed, and a
    // send for every conn that queued output. conn_at(op, slot) finds the conn.
    template <typename ConnAt>
    void end_turn(ConnAt conn_at);

  private:
    template <typename ConnAt>
    void rearm_starved(ConnAt conn_at);

    std::vector<std::unique_ptr<SendOp>> send_ops_;  // owners: the ops never move
    uint32_t send_free_ = nil;
    unsigned sends_queued_ = 0;      // sendmsg entries prepared since the last submit
    std::vector<uint64_t> dirty_;    // packed {op, slot, generation} of conns to send
    std::vector<uint64_t> starved_;  // packed {op, slot, generation} awaiting buffers
};

template <typename ConnAt>
void Loop::end_turn(ConnAt conn_at) {
    buffers.flush_recycled();
    if (!starved_.empty()) rearm_starved(conn_at);
    // submit_send marks nothing new, so a plain index loop over a stable vector is safe.
    for (size_t i = 0; i < dirty_.size(); ++i) {
        uint64_t data = dirty_[i];
        Op op = op_of(data);
        uint32_t slot = slot_of(data);
        Conn& conn = conn_at(op, slot);
        if (conn.generation != generation_of(data)) continue;
        conn.dirty = false;
        if (!conn.send_busy && (!conn.out.empty() || !conn.sealed.empty()) && !conn.close_submitted)
            submit_send(conn, op, slot);
    }
    dirty_.clear();
}

template <typename Deliver>
tls::Status Loop::open_tls(Conn& conn, Op send_op, uint32_t slot, const uint8_t* data,
                           uint32_t size, Deliver deliver) {
    tls::Session& session = *conn.tls;
    session.feed(data, size);
    while (!conn.closing) {
        uint32_t buffer = buffers.out_acquire();
        uint32_t got = session.read(buffers.data(buffer), buffers.buffer_size());
        if (got > 0) deliver(buffer, got);
        buffers.unref(buffer);
        if (got == 0 || !conn.tls) break;
    }
    // The handshake's answer or an alert; or, the handshake just done, what waited for it.
    if (conn.tls && (conn.tls->pending() > 0 || (conn.tls->established() && !conn.out.empty()))) {
        seal(conn);
        mark_dirty(conn, send_op, slot);
    }
    return conn.tls ? conn.tls->status() : tls::Status::Failed;
}

template <typename ConnAt>
void Loop::rearm_starved(ConnAt conn_at) {
    // Re-arm in arrival order while a reasonable share of the ring is free again.
    size_t kept = 0;
    for (size_t i = 0; i < starved_.size(); ++i) {
        uint64_t data = starved_[i];
        if (buffers.ring_free() < buffers.ring_count() / 8) {
            starved_[kept++] = data;
            continue;
        }
        Op op = op_of(data);
        uint32_t slot = slot_of(data);
        Conn& conn = conn_at(op, slot);
        if (conn.generation != generation_of(data) || !conn.recv_starved) continue;
        conn.recv_starved = false;
        if (!conn.recv_armed && !conn.recv_paused && !conn.closing && !conn.eof)
            arm_recv(conn, op, slot);
    }
    starved_.resize(kept);
}

}  // namespace pgplex::io
