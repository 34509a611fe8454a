// See worker.h. The loop: submit and wait, reap every completion, dispatch each to its
// side, return recycled buffers, send what the turn queued, repeat.
#include "pgplex/io/worker.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "pgplex/base/assert.h"
#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_work.h"
#include "pgplex/server/listen.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_work.h"

namespace pgplex::io {

namespace {

constexpr uint32_t ring_entries = 4096;
constexpr uint32_t server_slots = 8192;

uint32_t client_slots_for(const config::Config& config) {
    rlimit files{};
    getrlimit(RLIMIT_NOFILE, &files);
    uint64_t wanted = uint64_t(config.max_client_conn) + 256;  // headroom to refuse politely
    uint64_t room = files.rlim_cur > server_slots + 64 ? files.rlim_cur - server_slots - 64 : 64;
    if (wanted > room) wanted = room;
    if (wanted > limits::client_slots_per_worker_max) wanted = limits::client_slots_per_worker_max;
    return uint32_t(wanted);
}

}  // namespace

Worker::Worker(uint32_t index_, Shared& shared_, std::shared_ptr<const config::Config> config_,
               std::vector<base::UniqueFd> listeners, std::vector<ListenerRole> roles)
    : index(index_),
      shared(shared_),
      config(std::move(config_)),
      ring(ring_entries, client_slots_for(*config) + server_slots, client_slots_for(*config)),
      buffers(ring.raw(), config->buffer_count, config->buffer_size),
      client_capacity(client_slots_for(*config)),
      server_capacity(server_slots),
      listeners_(std::move(listeners)),
      random_state_(0x9e3779b97f4a7c15ull ^ (uint64_t(index_) << 32) ^
                    uint64_t(base::monotonic_ms())) {
    listener_roles = std::move(roles);
    router = std::make_unique<route::Router>(*config);
    clients.resize(client_capacity);
    servers.resize(server_capacity);
    pools.resize(shared.pools.capacity());
    accept_armed_.assign(listeners_.size(), false);
    seen_generation_ = shared.config_generation.load();
    uint64_t seed = 0;
    if (getentropy(&seed, sizeof seed) == 0) random_state_ ^= seed;
    log_info("worker %u: io_uring with %s, %u client slots, %u buffers of %u bytes", index,
             ring.features().c_str(), client_capacity, config->buffer_count, config->buffer_size);
}

Worker::~Worker() = default;

uint32_t Worker::random_u32() {
    // splitmix64: cancel keys and salts need unpredictability, not cryptographic strength;
    // SCRAM nonces come from OpenSSL.
    uint64_t z = (random_state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return uint32_t(z ^ (z >> 31));
}

void Worker::run() {
    now = base::monotonic_ms();
    for (uint32_t i = 0; i < listeners_.size(); ++i) arm_accept(i);
    arm_tick();
    while (!done_) loop_turn();
}

void Worker::loop_turn() {
    int rc = ring.submit_and_wait(sends_queued_);
    sends_queued_ = 0;
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN)
        log_error("worker %u: io_uring_submit_and_wait: %s", index, strerror(-rc));
    now = base::monotonic_ms();
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring.raw(), head, cqe) {
        dispatch(cqe);
        ++seen;
    }
    io_uring_cq_advance(&ring.raw(), seen);
    buffers.flush_recycled();
    if (!starved_.empty()) rearm_starved();
    flush_dirty();
}

void Worker::dispatch(io_uring_cqe* cqe) {
    uint64_t data = cqe->user_data;
    Op op = op_of(data);
    uint32_t slot = slot_of(data);
    uint32_t generation = generation_of(data);
    switch (op) {
        case Op::Accept:
            on_accept(cqe, slot);
            return;
        case Op::Tick:
            on_tick();
            return;
        case Op::Message:
            on_message(cqe);
            return;
        case Op::Ignored:
            return;
        case Op::None:
            return;
        case Op::ClientRecv:
        case Op::ServerRecv:
            on_recv(cqe, op);
            return;
        case Op::ClientSend:
        case Op::ServerSend:
            on_send(cqe, op);
            return;
        case Op::ClientClose:
        case Op::ServerClose:
            on_close(cqe, op);
            return;
        case Op::ClientShutdown:
        case Op::ServerShutdown:
            on_shutdown_done(cqe, op);
            return;
        case Op::Adopt:
            server::adopt(*this, static_cast<server::Transfer*>(pointer_of(data)));
            return;
        case Op::Listen:
            server::on_listen_message(*this, static_cast<pool::ListenMessage*>(pointer_of(data)));
            return;
        case Op::ListenSent:
            server::on_listen_sent(*this, static_cast<pool::ListenMessage*>(pointer_of(data)),
                                   cqe->res);
            return;
        case Op::ServerYieldSent: {
            server::Server& s = servers[slot];
            PGPLEX_ASSERT(s.conn.generation == generation &&
                          s.state == server::ServerState::Yielding);
            --s.conn.inflight;
            server::on_yield_sent(*this, s, cqe->res);
            return;
        }
        case Op::ServerConnect: {
            server::Server& s = servers[slot];
            if (s.conn.generation != generation) {
                ++counters.stale_completions;
                return;
            }
            --s.conn.inflight;
            if (s.conn.closing) {
                continue_close(s.conn, Op::ServerClose, slot);
                return;
            }
            server::on_connected(*this, s, cqe->res);
            return;
        }
    }
    ++counters.stale_completions;
}

// --- accept -------------------------------------------------------------------------------

void Worker::arm_accept(uint32_t listener) {
    if (shutting_down_) return;
    io_uring_sqe* sqe = ring.sqe();
    // No SOCK_CLOEXEC: a direct descriptor has no fd-table entry to close on exec, and the
    // kernel refuses the flag with EINVAL.
    io_uring_prep_multishot_accept_direct(sqe, listeners_[listener].get(), nullptr, nullptr, 0);
    io_uring_sqe_set_data64(sqe, pack(Op::Accept, listener, 0));
    accept_armed_[listener] = true;
}

void Worker::on_accept(io_uring_cqe* cqe, uint32_t listener) {
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more) accept_armed_[listener] = false;
    if (cqe->res >= 0) {
        uint32_t slot = uint32_t(cqe->res);
        PGPLEX_ASSERT(slot < client_capacity);
        PGPLEX_ASSERT(clients[slot].state == client::ClientState::Free);
        if (slot >= client_high_) client_high_ = slot + 1;
        ++counters.clients_accepted;
        client::on_accepted(*this, slot, listener);
    } else if (cqe->res != -ECANCELED && now - accept_error_logged_ms_ > 10000) {
        // -ENFILE: every client slot is taken. Logged at most every 10 s.
        accept_error_logged_ms_ = now;
        log_warning("worker %u: accept: %s", index, strerror(-cqe->res));
    }
    // A multishot accept that ended on an error is re-armed by the tick, not here: an error
    // that repeats must not spin the loop.
    if (!more && !shutting_down_ && cqe->res >= 0) arm_accept(listener);
}

// --- recv ---------------------------------------------------------------------------------

void Worker::on_recv(io_uring_cqe* cqe, Op op) {
    uint32_t slot = slot_of(cqe->user_data);
    uint32_t generation = generation_of(cqe->user_data);
    bool client_side = op == Op::ClientRecv;
    bool has_buffer = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
    uint32_t buffer = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    Conn& conn = client_side ? clients[slot].conn : servers[slot].conn;
    bool free = client_side ? clients[slot].state == client::ClientState::Free
                            : servers[slot].state == server::ServerState::Free;
    if (conn.generation != generation || free) {
        ++counters.stale_completions;
        if (has_buffer) buffers.received(buffer), buffers.unref(buffer);
        return;
    }
    if ((cqe->flags & IORING_CQE_F_MORE) == 0) {
        conn.recv_armed = false;
        --conn.inflight;
    }
    if (cqe->res > 0 && has_buffer) {
        buffers.received(buffer);
        if (!conn.closing && client_side)
            client::on_recv(*this, clients[slot], buffer, uint32_t(cqe->res));
        else if (!conn.closing)
            server::on_recv(*this, servers[slot], buffer, uint32_t(cqe->res));
        buffers.unref(buffer);
    } else if (cqe->res == -ENOBUFS) {
        conn.recv_starved = true;
        starved_.push_back(pack(op, slot, generation));
    } else if (cqe->res <= 0 && cqe->res != -ECANCELED && !conn.closing) {
        if (client_side)
            client::on_recv_end(*this, clients[slot], cqe->res);
        else
            server::on_recv_end(*this, servers[slot], cqe->res);
    }
    if (!client_side && !conn.closing && !conn.recv_armed &&
        servers[slot].state == server::ServerState::Yielding)
        server::continue_yield(*this, servers[slot]);
    if (conn.closing)
        continue_close(conn, client_side ? Op::ClientClose : Op::ServerClose, slot);
    else if (!conn.recv_armed && !conn.recv_paused && !conn.recv_starved && !conn.eof)
        arm_recv(conn, op, slot);
}

void Worker::arm_recv(Conn& conn, Op recv_op, uint32_t slot) {
    PGPLEX_ASSERT(!conn.recv_armed && !conn.closing);
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_recv_multishot(sqe, int(conn.file), nullptr, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffer_group;
    io_uring_sqe_set_data64(sqe, pack(recv_op, slot, conn.generation));
    conn.recv_armed = true;
    ++conn.inflight;
}

void Worker::pause_recv(Conn& conn, Op recv_op, uint32_t slot) {
    if (conn.recv_paused) return;
    conn.recv_paused = true;
    if (!conn.recv_armed) return;
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_cancel64(sqe, pack(recv_op, slot, conn.generation), 0);
    io_uring_sqe_set_data64(sqe, pack(Op::Ignored, 0, 0));
}

void Worker::resume_recv(Conn& conn, Op recv_op, uint32_t slot) {
    if (!conn.recv_paused) return;
    conn.recv_paused = false;
    if (!conn.recv_armed && !conn.closing && !conn.eof && !conn.recv_starved)
        arm_recv(conn, recv_op, slot);
}

void Worker::rearm_starved() {
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
        Conn& conn = op == Op::ClientRecv ? clients[slot].conn : servers[slot].conn;
        if (conn.generation != generation_of(data) || !conn.recv_starved) continue;
        conn.recv_starved = false;
        if (!conn.recv_armed && !conn.recv_paused && !conn.closing && !conn.eof)
            arm_recv(conn, op, slot);
    }
    starved_.resize(kept);
}

// --- send ---------------------------------------------------------------------------------

void Worker::mark_dirty(Conn& conn, Op send_op, uint32_t slot) {
    if (conn.dirty || conn.closing) return;
    conn.dirty = true;
    dirty_.push_back(pack(send_op, slot, conn.generation));
}

void Worker::flush_dirty() {
    // submit_send may mark nothing new, so a plain index loop over a stable vector is safe.
    for (size_t i = 0; i < dirty_.size(); ++i) {
        uint64_t data = dirty_[i];
        Op op = op_of(data);
        uint32_t slot = slot_of(data);
        Conn& conn = op == Op::ClientSend ? clients[slot].conn : servers[slot].conn;
        if (conn.generation != generation_of(data)) continue;
        conn.dirty = false;
        if (!conn.send_busy && !conn.out.empty() && !conn.close_submitted)
            submit_send(conn, op, slot);
    }
    dirty_.clear();
}

void Worker::submit_send(Conn& conn, Op op, uint32_t slot) {
    if (send_free_ == nil) {
        send_ops_.push_back(std::make_unique<SendOp>());
        send_free_ = uint32_t(send_ops_.size() - 1);
    }
    uint32_t index_op = send_free_;
    SendOp& send = *send_ops_[index_op];
    send_free_ = send.next_free;
    uint32_t count = 0;
    for (uint32_t c = conn.out.head; c != nil && count < limits::send_iovecs_max;
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

void Worker::on_send(io_uring_cqe* cqe, Op op) {
    uint32_t slot = slot_of(cqe->user_data);
    bool client_side = op == Op::ClientSend;
    Conn& conn = client_side ? clients[slot].conn : servers[slot].conn;
    if (conn.generation != generation_of(cqe->user_data)) {
        ++counters.stale_completions;
        return;
    }
    --conn.inflight;
    conn.send_busy = false;
    send_ops_[conn.send_op]->next_free = send_free_;
    send_free_ = conn.send_op;
    conn.send_op = nil;
    Op close_op = client_side ? Op::ClientClose : Op::ServerClose;
    if (cqe->res < 0) {
        // The peer is gone (-EPIPE, -ECONNRESET): what was queued cannot be delivered.
        buffers.clear(conn.out);
        conn.eof = true;
        if (client_side)
            client::on_recv_end(*this, clients[slot], cqe->res);
        else
            server::on_recv_end(*this, servers[slot], cqe->res);
        if (conn.closing) continue_close(conn, close_op, slot);
        return;
    }
    buffers.consume(conn.out, uint32_t(cqe->res));
    if (conn.closing) {
        continue_close(conn, close_op, slot);
        return;
    }
    if (!conn.out.empty()) {
        submit_send(conn, op, slot);
    } else if (conn.close_when_sent) {
        request_close(conn, close_op, slot);
        return;
    }
    if (client_side)
        client::on_sent(*this, clients[slot]);
    else
        server::on_sent(*this, servers[slot]);
}

// --- close --------------------------------------------------------------------------------

void Worker::request_close(Conn& conn, Op close_op, uint32_t slot) {
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

void Worker::on_shutdown_done(io_uring_cqe* cqe, Op op) {
    uint32_t slot = slot_of(cqe->user_data);
    bool client_side = op == Op::ClientShutdown;
    Conn& conn = client_side ? clients[slot].conn : servers[slot].conn;
    PGPLEX_ASSERT(conn.generation == generation_of(cqe->user_data) && conn.closing);
    --conn.inflight;
    continue_close(conn, client_side ? Op::ClientClose : Op::ServerClose, slot);
}

void Worker::continue_close(Conn& conn, Op close_op, uint32_t slot) {
    PGPLEX_ASSERT(conn.closing);
    if (conn.inflight > 0 || conn.close_submitted) return;
    buffers.clear(conn.out);
    buffers.clear(conn.held_in);
    conn.close_submitted = true;
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_close_direct(sqe, conn.file);
    io_uring_sqe_set_data64(sqe, pack(close_op, slot, conn.generation));
    ++conn.inflight;
}

void Worker::on_close(io_uring_cqe* cqe, Op op) {
    uint32_t slot = slot_of(cqe->user_data);
    if (op == Op::ClientClose) {
        client::Client& c = clients[slot];
        PGPLEX_ASSERT(c.conn.generation == generation_of(cqe->user_data));
        --c.conn.inflight;
        PGPLEX_ASSERT(c.conn.inflight == 0);
        client::on_closed(*this, c);
    } else {
        server::Server& s = servers[slot];
        PGPLEX_ASSERT(s.conn.generation == generation_of(cqe->user_data));
        --s.conn.inflight;
        PGPLEX_ASSERT(s.conn.inflight == 0);
        server::on_closed(*this, s);
    }
}

// --- server slots -------------------------------------------------------------------------

uint32_t Worker::server_acquire() {
    if (server_free_ != nil) {
        uint32_t slot = server_free_;
        server_free_ = servers[slot].idle_next;
        servers[slot].idle_next = nil;
        return slot;
    }
    if (server_high_ < server_capacity) return server_high_++;
    return nil;
}

void Worker::server_release_slot(uint32_t slot) {
    servers[slot].idle_next = server_free_;
    server_free_ = slot;
}

// --- messages between rings ---------------------------------------------------------------

void Worker::message(uint32_t worker, MessageKind kind, uint32_t payload_high,
                     uint32_t payload_low) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_msg_ring(sqe, shared.ring_fds[worker], payload_low,
                           pack(Op::Message, uint32_t(kind), payload_high), 0);
    io_uring_sqe_set_data64(sqe, pack(Op::Ignored, 0, 0));
}

void Worker::on_message(io_uring_cqe* cqe) {
    auto kind = static_cast<MessageKind>(slot_of(cqe->user_data));
    uint32_t high = generation_of(cqe->user_data);
    uint32_t low = uint32_t(cqe->res);
    switch (kind) {
        case MessageKind::CancelClient:
            client::cancel(*this, low, high);
            return;
        case MessageKind::PoolWake:
        case MessageKind::PoolYield: {
            pool::Pool* target = shared.pools.by_id(high);
            if (target == nullptr) return;
            if (kind == MessageKind::PoolWake)
                server::want_server(*this, *target);
            else
                server::yield_idle(*this, *target, low);
            return;
        }
        case MessageKind::HandoffFailed:
            server::handoff_failed(*this, low);
            return;
        case MessageKind::Wake:
            return;
    }
}

// --- housekeeping -------------------------------------------------------------------------

void Worker::arm_tick() {
    tick_.tv_sec = 0;
    tick_.tv_nsec = limits::tick_ms * 1000000;
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_timeout(sqe, &tick_, 0, 0);
    io_uring_sqe_set_data64(sqe, pack(Op::Tick, 0, 0));
}

void Worker::on_tick() {
    arm_tick();
    uint64_t generation = shared.config_generation.load(std::memory_order_acquire);
    if (generation != seen_generation_) {
        seen_generation_ = generation;
        config = shared.config_snapshot();
        scram_cache.clear();
        router = std::make_unique<route::Router>(*config);
    }
    uint64_t topology_generation = shared.topology_generation.load(std::memory_order_acquire);
    if (topology_generation != seen_topology_) {
        seen_topology_ = topology_generation;
        topology = shared.topology_snapshot();
    }
    bool immediate = shared.immediate.load(std::memory_order_acquire);
    if ((shared.shutdown.load(std::memory_order_acquire) || immediate) && !shutting_down_)
        begin_shutdown();
    if (shutting_down_ && now >= shared.shutdown_deadline_ms.load()) immediate = true;
    for (uint32_t i = 0; i < client_high_; ++i) {
        client::Client& c = clients[i];
        if (c.state == client::ClientState::Free) continue;
        if (shutting_down_)
            client::on_shutdown(*this, c, immediate);
        else
            client::on_tick(*this, c);
    }
    for (uint32_t i = 0; i < server_high_; ++i) {
        server::Server& s = servers[i];
        if (s.state == server::ServerState::Free) continue;
        if (shutting_down_)
            server::on_shutdown(*this, s, immediate);
        else
            server::on_tick(*this, s);
    }
    if (!shutting_down_) {
        server::keep_pools_warm(*this);
        for (uint32_t i = 0; i < listeners_.size(); ++i)
            if (!accept_armed_[i]) arm_accept(i);
    }
    if (shutting_down_ && drained()) done_ = true;
}

void Worker::begin_shutdown() {
    shutting_down_ = true;
    for (uint32_t i = 0; i < listeners_.size(); ++i) {
        if (!accept_armed_[i]) continue;
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_cancel64(sqe, pack(Op::Accept, i, 0), 0);
        io_uring_sqe_set_data64(sqe, pack(Op::Ignored, 0, 0));
    }
    // New connections must be refused at once, not left in an accept queue nobody reads.
    for (base::UniqueFd& listener : listeners_) listener.reset();
    log_info("worker %u: shutting down: no new clients", index);
}

bool Worker::drained() const {
    for (uint32_t i = 0; i < client_high_; ++i)
        if (clients[i].state != client::ClientState::Free) return false;
    for (uint32_t i = 0; i < server_high_; ++i)
        if (servers[i].state != server::ServerState::Free) return false;
    return true;
}

}  // namespace pgplex::io
