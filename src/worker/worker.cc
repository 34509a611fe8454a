// See worker.h. The loop: submit and wait, reap every completion, dispatch each to its
// side, return recycled buffers, send what the turn queued, repeat.
#include "pgplex/worker/worker.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>

#include <cerrno>
#include <cstring>

#include "pgplex/base/assert.h"
#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_admin.h"
#include "pgplex/client/client_handover.h"
#include "pgplex/client/client_route.h"
#include "pgplex/client/client_work.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_listen.h"
#include "pgplex/server/server_work.h"

namespace pgplex::worker {

using io::Conn;
using io::generation_of;
using io::MessageKind;
using io::nil;
using io::Op;
using io::op_of;
using io::pack;
using io::pointer_of;
using io::slot_of;

namespace {

constexpr uint32_t ring_entries = 4096;

// A ring's fixed-file table may not exceed RLIMIT_NOFILE, which bounds its clients and servers
// together. Servers get an eighth of it, between 1024 and 8192: a pool's servers may all sit
// on one worker, yet a worker rarely needs thousands of them, while clients may be tens of
// thousands (20000 here leaves 2500 server and 17436 client slots per worker).
uint32_t server_slots_for() {
    rlimit files{};
    getrlimit(RLIMIT_NOFILE, &files);
    return uint32_t(std::clamp<uint64_t>(files.rlim_cur / 8, 1024, 8192));
}

uint32_t client_slots_for(const config::Config& config) {
    rlimit files{};
    getrlimit(RLIMIT_NOFILE, &files);
    uint32_t server_slots = server_slots_for();
    uint64_t wanted = uint64_t(config.max_client_conn) + 256;  // headroom to refuse politely
    uint64_t room = files.rlim_cur > server_slots + 64 ? files.rlim_cur - server_slots - 64 : 64;
    if (wanted > room) wanted = room;
    if (wanted > limits::client_slots_per_worker_max) wanted = limits::client_slots_per_worker_max;
    return uint32_t(wanted);
}

}  // namespace

Worker::Worker(uint32_t index_, Shared& shared_, std::shared_ptr<const config::Config> config_,
               std::vector<base::UniqueFd> listeners, std::vector<ListenerRole> roles)
    : io::Loop(ring_entries, client_slots_for(*config_) + server_slots_for(),
               client_slots_for(*config_), config_->buffer_count, config_->buffer_size),
      index(index_),
      shared(shared_),
      config(std::move(config_)),
      client_capacity(client_slots_for(*config)),
      server_capacity(server_slots_for()),
      listeners_(std::move(listeners)),
      random_state_(0x9e3779b97f4a7c15ull ^ (uint64_t(index_) << 32) ^
                    uint64_t(base::monotonic_ms())) {
    listener_roles = std::move(roles);
    router = std::make_unique<route::Router>(*config);
    clients.resize(client_capacity);
    servers.resize(server_capacity);
    pools.resize(shared.pools.capacity());
    accepts_armed_.assign(listeners_.size(), 0);
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
    arm_accepts();
    arm_tick();
    while (!done_) loop_turn();
}

void Worker::loop_turn() {
    int rc = submit_and_wait();
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
    if (shared.handing_over.load(std::memory_order_relaxed)) hand_over_idle_clients();
    if (shared.handed_in && shared.handed_in[index].size.load(std::memory_order_acquire) > 0)
        adopt_handed_clients();
    end_turn([this](Op op, uint32_t slot) -> Conn& { return conn_at(op, slot); });
}

Conn& Worker::conn_at(Op op, uint32_t slot) {
    bool client_side = op == Op::ClientRecv || op == Op::ClientSend;
    return client_side ? clients[slot].conn : servers[slot].conn;
}

void Worker::dispatch(io_uring_cqe* cqe) {
    uint64_t data = cqe->user_data;
    Op op = op_of(data);
    uint32_t slot = slot_of(data);
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
        case Op::ClientPeer:
            on_client_addresses(cqe);
            return;
        case Op::ClientInstalled:
            on_client_installed(cqe);
            return;
        case Op::ClientAdopted:
            on_adopted(cqe);
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
        case Op::ServerYieldSent:
            on_yield_sent(cqe);
            return;
        case Op::ServerConnect:
            on_server_connected(cqe);
            return;
    }
    ++counters.stale_completions;
}

void Worker::on_server_connected(io_uring_cqe* cqe) {
    uint32_t slot = slot_of(cqe->user_data);
    server::Server& s = servers[slot];
    if (s.conn.generation != generation_of(cqe->user_data)) {
        ++counters.stale_completions;
        return;
    }
    --s.conn.inflight;
    if (s.conn.closing) {
        continue_close(s.conn, Op::ServerClose, slot);
        return;
    }
    server::on_connected(*this, s, cqe->res);
}

// --- accept -------------------------------------------------------------------------------

uint32_t Worker::free_client_slots() const {
    uint32_t in_use = 0;
    for (uint32_t count : counters.clients_in) in_use += count;
    return in_use < client_capacity ? client_capacity - in_use : 0;
}

// Single-shot accepts, a few per listener so a burst of connections is taken a few per loop
// turn: a multishot accept takes every connection queued at once, more than the free slots
// when they run short, and a connection accepted without a slot is lost.
void Worker::arm_accepts() {
    if (shutting_down_ || suspended_) return;
    constexpr uint32_t per_listener = 4;
    uint32_t room = free_client_slots();
    room = room > adopts_in_flight_ ? room - adopts_in_flight_ : 0;
    for (uint32_t listener = 0; listener < listeners_.size(); ++listener) {
        while (accepts_armed_[listener] < per_listener && accepts_in_flight_ < room) {
            io_uring_sqe* sqe = ring.sqe();
            // No SOCK_CLOEXEC: a direct descriptor has no fd-table entry to close on exec,
            // and the kernel refuses the flag with EINVAL.
            io_uring_prep_accept(sqe, listeners_[listener].get(), nullptr, nullptr, 0);
            // A fixed-file slot of the kernel's choosing (in the client range registered by
            // io::Loop). Set directly: liburing versions differ in how they encode it.
            sqe->file_index = IORING_FILE_INDEX_ALLOC;
            io_uring_sqe_set_data64(sqe, pack(Op::Accept, listener, 0));
            ++accepts_armed_[listener];
            ++accepts_in_flight_;
        }
    }
    if (accepts_in_flight_ == 0 && !listeners_.empty() && now - slots_full_logged_ms_ > 10000) {
        slots_full_logged_ms_ = now;
        log_warning(
            "worker %u: every client slot (%u) is taken; new connections wait in the listen "
            "queue until a client leaves",
            index, client_capacity);
    }
}

void Worker::on_accept(io_uring_cqe* cqe, uint32_t listener) {
    --accepts_armed_[listener];
    --accepts_in_flight_;
    if (cqe->res >= 0) {
        uint32_t slot = uint32_t(cqe->res);
        PGPLEX_ASSERT(slot < client_capacity);
        PGPLEX_ASSERT(clients[slot].state == client::ClientState::Free);
        if (slot >= client_high_) client_high_ = slot + 1;
        ++counters.clients_accepted;
        client::on_accepted(*this, slot, listener);
    } else if (cqe->res != -ECANCELED && now - accept_error_logged_ms_ > 10000) {
        // -EMFILE and the like, logged at most every 10 s.
        accept_error_logged_ms_ = now;
        log_warning("worker %u: accept: %s", index, strerror(-cqe->res));
    }
    // An accept that ended on an error is armed again by the tick, not here: an error that
    // repeats must not spin the loop.
    if (cqe->res >= 0) arm_accepts();
}

void Worker::on_yield_sent(io_uring_cqe* cqe) {
    server::Server& s = servers[slot_of(cqe->user_data)];
    PGPLEX_ASSERT(s.conn.generation == generation_of(cqe->user_data) &&
                  s.state == server::ServerState::Yielding);
    --s.conn.inflight;
    server::on_yield_sent(*this, s, cqe->res);
}

// The client's socket, installed in the fd table for a moment: its addresses, then closed.
void Worker::on_client_addresses(io_uring_cqe* cqe) {
    uint32_t slot = slot_of(cqe->user_data);
    client::Client& client = clients[slot];
    sockaddr_storage peer{};
    sockaddr_storage local{};
    uint32_t peer_uid = uid_unknown;
    bool known = cqe->res >= 0 && read_addresses(cqe->res, peer, local, peer_uid);
    if (cqe->res < 0 && now - address_error_logged_ms_ > 60000) {
        address_error_logged_ms_ = now;  // a kernel older than 6.8: logged now and then
        log_warning("worker %u: reading a client's address: %s", index, strerror(-cqe->res));
    }
    PGPLEX_ASSERT(client.conn.generation == generation_of(cqe->user_data));
    --client.conn.inflight;
    if (client.conn.closing) {
        continue_close(client.conn, Op::ClientClose, slot);
        return;
    }
    client.peer_uid = peer_uid;
    client::on_addresses(*this, client, known ? &peer : nullptr, known ? &local : nullptr);
}

// --- takeover (client/client_handover.h) -------------------------------------------------

// Old pgplex: a client being handed over has its socket in the fd table.
void Worker::on_client_installed(io_uring_cqe* cqe) {
    uint32_t slot = slot_of(cqe->user_data);
    client::Client& client = clients[slot];
    PGPLEX_ASSERT(client.conn.generation == generation_of(cqe->user_data) && client.conn.closing);
    --client.conn.inflight;
    client::on_handover_installed(*this, client, cqe->res);
    continue_close(client.conn, Op::ClientClose, slot);
}

// Old pgplex: every client between transactions goes (Idle in transaction pooling, Active on
// its idle server in session pooling), a scan per loop turn at most every few milliseconds
// while the takeover lasts.
void Worker::hand_over_idle_clients() {
    if (now - handover_scanned_ < 2) return;
    handover_scanned_ = now;
    for (uint32_t i = 0; i < client_high_; ++i) {
        client::ClientState state = clients[i].state;
        if ((state == client::ClientState::Idle || state == client::ClientState::Active) &&
            client::may_hand_over(*this, clients[i]))
            client::hand_over(*this, clients[i]);
    }
}

// New pgplex: a handed-over client's socket waiting to be a fixed file of this ring.
struct Adoption {
    int files[1] = {-1};  // the kernel reads the fd and writes back the slot it chose
    base::UniqueFd fd;
    std::string payload;
};

void Worker::adopt_handed_clients() {
    if (shutting_down_) return;
    std::vector<HandoverItem> items = shared.handed_in[index].take();
    for (size_t i = 0; i < items.size(); ++i) {
        uint32_t room = free_client_slots();
        if (room <= accepts_in_flight_ + adopts_in_flight_) {
            // No slot now: the rest wait for one (a client that leaves frees it).
            for (size_t j = i; j < items.size(); ++j)
                shared.handed_in[index].push(std::move(items[j]));
            if (now - slots_full_logged_ms_ > 10000) {
                slots_full_logged_ms_ = now;
                log_warning("worker %u: takeover: no free client slot for a handed-over client",
                            index);
            }
            return;
        }
        auto adoption = std::make_unique<Adoption>();
        adoption->fd = std::move(items[i].fd);
        adoption->payload = std::move(items[i].payload);
        adoption->files[0] = adoption->fd.get();
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_files_update(sqe, adoption->files, 1, IORING_FILE_INDEX_ALLOC);
        io_uring_sqe_set_data64(sqe, io::pack_pointer(Op::ClientAdopted, adoption.release()));
        ++adopts_in_flight_;
    }
}

void Worker::on_adopted(io_uring_cqe* cqe) {
    std::unique_ptr<Adoption> adoption(static_cast<Adoption*>(pointer_of(cqe->user_data)));
    --adopts_in_flight_;
    if (cqe->res < 1) {
        log_warning(
            "worker %u: takeover: a handed-over client got no fixed file (%s); its "
            "connection ends here",
            index, strerror(cqe->res < 0 ? -cqe->res : ENFILE));
        return;
    }
    adoption->fd.reset();  // the fixed file holds the socket now
    uint32_t slot = uint32_t(adoption->files[0]);
    PGPLEX_ASSERT(slot < client_capacity && clients[slot].state == client::ClientState::Free);
    if (slot >= client_high_) client_high_ = slot + 1;
    if (!client::adopt_handed(*this, slot, adoption->payload)) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_close_direct(sqe, slot);
        io_uring_sqe_set_data64(sqe, pack(Op::Ignored, 0, 0));
    }
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
        if (conn.closing && client_side &&
            clients[slot].close_reason == client::CloseReason::HandedOver)
            client::on_handover_input(*this, clients[slot], buffers.data(buffer),
                                      uint32_t(cqe->res));
        else if (!conn.closing && client_side && conn.tls)
            on_tls_recv(clients[slot], slot, buffer, uint32_t(cqe->res));
        else if (!conn.closing && client_side)
            client::on_recv(*this, clients[slot], buffer, uint32_t(cqe->res));
        else if (!conn.closing && conn.tls)
            on_tls_recv(servers[slot], slot, buffer, uint32_t(cqe->res));
        else if (!conn.closing)
            server::on_recv(*this, servers[slot], buffer, uint32_t(cqe->res));
        buffers.unref(buffer);
    } else if (cqe->res == -ENOBUFS) {
        recv_starved(conn, op, slot);
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

// A TLS client's ciphertext: its plaintext goes to the client as any received bytes do.
void Worker::on_tls_recv(client::Client& client, uint32_t slot, uint32_t buffer, uint32_t size) {
    tls::Status status = open_tls(client.conn, Op::ClientSend, slot, buffers.data(buffer), size,
                                  [this, &client](uint32_t plain, uint32_t got) {
                                      if (client.state != client::ClientState::Closing)
                                          client::on_recv(*this, client, plain, got);
                                  });
    if (client.state == client::ClientState::Closing) return;
    if (status == tls::Status::Closed) {
        client::on_recv_end(*this, client, 0);
    } else if (status == tls::Status::Failed) {
        client::on_tls_failed(*this, client, client.conn.tls->reason());
    }
}

// A TLS server's ciphertext: its plaintext goes to the server side as any received bytes.
void Worker::on_tls_recv(server::Server& server, uint32_t slot, uint32_t buffer, uint32_t size) {
    tls::Status status = open_tls(server.conn, Op::ServerSend, slot, buffers.data(buffer), size,
                                  [this, &server](uint32_t plain, uint32_t got) {
                                      if (server.state != server::ServerState::Closing)
                                          server::on_recv(*this, server, plain, got);
                                  });
    if (server.state == server::ServerState::Closing) return;
    if (status == tls::Status::Closed)
        server::on_recv_end(*this, server, 0);
    else if (status == tls::Status::Failed)
        server::on_tls_failed(*this, server, "TLS: " + server.conn.tls->reason());
}

// --- send ---------------------------------------------------------------------------------

void Worker::on_send(io_uring_cqe* cqe, Op op) {
    uint32_t slot = slot_of(cqe->user_data);
    bool client_side = op == Op::ClientSend;
    Conn& conn = client_side ? clients[slot].conn : servers[slot].conn;
    if (conn.generation != generation_of(cqe->user_data)) {
        ++counters.stale_completions;
        return;
    }
    --conn.inflight;
    send_done(conn);
    Op close_op = client_side ? Op::ClientClose : Op::ServerClose;
    if (cqe->res < 0) {
        // The peer is gone (-EPIPE, -ECONNRESET): what was queued cannot be delivered.
        buffers.clear(conn.out);
        buffers.clear(conn.sealed);
        conn.eof = true;
        if (client_side)
            client::on_recv_end(*this, clients[slot], cqe->res);
        else
            server::on_recv_end(*this, servers[slot], cqe->res);
        if (conn.closing) continue_close(conn, close_op, slot);
        return;
    }
    buffers.consume(conn.wire(), uint32_t(cqe->res));
    if (conn.closing) {
        continue_close(conn, close_op, slot);
        return;
    }
    if (!conn.out.empty() || !conn.sealed.empty()) submit_send(conn, op, slot);
    if (!conn.send_busy && conn.close_when_sent) {
        request_close(conn, close_op, slot);
        return;
    }
    if (client_side)
        client::on_sent(*this, clients[slot]);
    else
        server::on_sent(*this, servers[slot]);
}

// --- close --------------------------------------------------------------------------------

void Worker::on_shutdown_done(io_uring_cqe* cqe, Op op) {
    uint32_t slot = slot_of(cqe->user_data);
    bool client_side = op == Op::ClientShutdown;
    Conn& conn = client_side ? clients[slot].conn : servers[slot].conn;
    PGPLEX_ASSERT(conn.generation == generation_of(cqe->user_data) && conn.closing);
    --conn.inflight;
    continue_close(conn, client_side ? Op::ClientClose : Op::ServerClose, slot);
}

void Worker::on_close(io_uring_cqe* cqe, Op op) {
    uint32_t slot = slot_of(cqe->user_data);
    if (op == Op::ClientClose) {
        client::Client& c = clients[slot];
        PGPLEX_ASSERT(c.conn.generation == generation_of(cqe->user_data));
        --c.conn.inflight;
        PGPLEX_ASSERT(c.conn.inflight == 0);
        client::on_closed(*this, c);
        arm_accepts();  // a slot is free: a connection waiting in the listen queue may have it
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
        case MessageKind::ClientsWanted:
            client::list_clients(*this, high, low);
            return;
        case MessageKind::ClientsListed:
            client::clients_listed(*this, high, low);
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

void Worker::refresh_topology() {
    uint64_t generation = shared.topology_generation.load(std::memory_order_acquire);
    if (generation == seen_topology_) return;
    seen_topology_ = generation;
    topology = shared.topology_snapshot();
}

// SHOW STATS' averages: worker 0 rolls every pool's snapshots once per stats_period.
void Worker::roll_stats() {
    if (index != 0) return;
    int64_t newer = shared.pools.newer_stamp_ms.load(std::memory_order_relaxed);
    if (newer == 0) {  // the first tick: the first period begins now
        shared.pools.newer_stamp_ms.store(now, std::memory_order_relaxed);
        shared.pools.older_stamp_ms.store(now, std::memory_order_relaxed);
        return;
    }
    if (now - newer >= int64_t(admin::stats_period_seconds) * 1000) shared.pools.roll_stats(now);
}

// RESUME: the clients this worker kept waiting get servers; KILL and KILL_CLIENT: its
// clients go.
void Worker::console_tick() {
    admin::Console& console = shared.console;
    uint64_t resumed = console.resumed.load(std::memory_order_acquire);
    if (resumed != seen_resumed_) {
        seen_resumed_ = resumed;
        for (uint32_t id = 0; id < pools.size(); ++id) {
            pool::Pool* pool = pools[id].waiter_count > 0 ? shared.pools.by_id(id) : nullptr;
            if (pool != nullptr) server::serve_waiters(*this, *pool);
        }
    }
    uint64_t killed = console.killed.load(std::memory_order_acquire);
    if (killed != seen_killed_) {
        for (const admin::Console::Killed& kill : console.killed_since(seen_killed_))
            client::kill_database(*this, kill.database, kill.at_ms);
        seen_killed_ = killed;
    }
    if (console.kills_pending.load(std::memory_order_acquire) == 0) return;
    for (uint32_t id : console.take_kills(index)) client::kill(*this, id);
}

namespace {

// A client SUSPEND stops reading: logged in, not of the management database, not closing.
// Logins under way finish (no new one is accepted while suspended).
bool suspendable(const client::Client& client) {
    switch (client.state) {
        case client::ClientState::Idle:
        case client::ClientState::Waiting:
        case client::ClientState::Syncing:
        case client::ClientState::Active:
            return client.session && !client.session->admin;
        case client::ClientState::Free:
        case client::ClientState::Startup:
        case client::ClientState::Auth:
        case client::ClientState::Asking:
        case client::ClientState::Closing:
            return false;
    }
    return false;
}

}  // namespace

// SUSPEND: no accept stays armed (new connections wait in the kernel's listen queue) and no
// client of a database is read; pausing is repeated every tick, since flow control resumes
// a client's reads when its server's queue drains. RESUME undoes both; a client whose
// input is still over the flow-control mark is left to flow control.
void Worker::suspend_tick() {
    bool suspended = shared.console.suspended.load(std::memory_order_acquire);
    if (suspended && !suspended_) {
        suspended_ = true;
        cancel_accepts();
        log_info("worker %u: suspended: not accepting, not reading clients", index);
    }
    if (!suspended && suspended_) {
        suspended_ = false;
        uint32_t held_max = limits::queued_buffers_max * buffers.buffer_size() / 2;
        for (uint32_t i = 0; i < client_high_; ++i)
            if (suspendable(clients[i]) && clients[i].conn.held_in.bytes < held_max)
                resume_recv(clients[i].conn, Op::ClientRecv, i);
        arm_accepts();
        log_info("worker %u: resumed from SUSPEND", index);
    }
    if (suspended_)
        for (uint32_t i = 0; i < client_high_; ++i)
            if (suspendable(clients[i])) pause_recv(clients[i].conn, Op::ClientRecv, i);
    if (shared.stats) shared.stats[index].suspended.store(suspended_, std::memory_order_release);
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
    refresh_topology();
    roll_stats();
    console_tick();
    suspend_tick();
    bool immediate = shared.immediate.load(std::memory_order_acquire);
    if ((shared.shutdown.load(std::memory_order_acquire) || immediate) && !shutting_down_)
        begin_shutdown();
    if (shutting_down_ && now >= shared.shutdown_deadline_ms.load()) immediate = true;
    waiting_for_clients_ = shutting_down_ && !immediate &&
                           shared.wait_for_clients.load(std::memory_order_acquire) && has_clients();
    bool draining = shutting_down_ && !waiting_for_clients_;
    uint32_t pinned = 0;
    uint32_t primary_waiting = 0;
    uint64_t bytes_queued = 0, bytes_unsent = 0;
    for (uint32_t i = 0; i < client_high_; ++i) {
        client::Client& c = clients[i];
        if (c.state == client::ClientState::Free) continue;
        pinned += c.session && c.session->pinned ? 1 : 0;
        primary_waiting += client::awaits_primary(c) ? 1 : 0;
        bytes_queued += c.conn.out.bytes + c.conn.held_in.bytes;
        bytes_unsent += c.conn.out.bytes + c.conn.sealed.bytes;
        if (draining)
            client::on_shutdown(*this, c, immediate);
        else
            client::on_tick(*this, c);
    }
    uint32_t close_needed = 0;
    for (uint32_t i = 0; i < server_high_; ++i) {
        server::Server& s = servers[i];
        if (s.state == server::ServerState::Free) continue;
        bytes_queued += s.conn.out.bytes + s.conn.held_in.bytes;
        bytes_unsent += s.conn.out.bytes + s.conn.sealed.bytes;
        if (draining)
            server::on_shutdown(*this, s, immediate);
        else
            server::on_tick(*this, s);
        if (s.state != server::ServerState::Free && s.pool != nullptr &&
            s.created < s.pool->reconnect_before_ms.load(std::memory_order_relaxed))
            ++close_needed;
    }
    if (shared.stats) {
        shared.stats[index].close_needed.store(close_needed, std::memory_order_relaxed);
        shared.stats[index].bytes_unsent.store(bytes_unsent, std::memory_order_relaxed);
    }
    if (!shutting_down_) {
        server::keep_pools_warm(*this);
        arm_accepts();
    }
    publish_stats(pinned, primary_waiting, bytes_queued);
    if (shutting_down_ && drained()) done_ = true;
}

void Worker::publish_stats(uint32_t pinned, uint32_t primary_waiting, uint64_t bytes_queued) {
    if (!shared.stats) return;
    WorkerStats& stats = shared.stats[index];
    constexpr auto relaxed = std::memory_order_relaxed;
    for (size_t i = 0; i < stats.clients_in.size(); ++i)
        stats.clients_in[i].store(counters.clients_in[i], relaxed);
    for (size_t i = 0; i < stats.servers_in.size(); ++i)
        stats.servers_in[i].store(counters.servers_in[i], relaxed);
    stats.pinned.store(pinned, relaxed);
    stats.ring_in_use.store(buffers.ring_in_use(), relaxed);
    stats.ring_count.store(buffers.ring_count(), relaxed);
    stats.buffer_size.store(buffers.buffer_size(), relaxed);
    stats.out_in_use.store(buffers.out_in_use(), relaxed);
    stats.out_count.store(buffers.out_count(), relaxed);
    stats.chunks_in_use.store(buffers.chunks_in_use(), relaxed);
    stats.chunk_count.store(buffers.chunk_count(), relaxed);
    stats.bytes_queued.store(bytes_queued, relaxed);
    stats.tls_failures.store(counters.tls_failures, relaxed);
    stats.auth_failures.store(counters.auth_failures, relaxed);
    stats.logins_refused.store(counters.logins_refused, relaxed);
    stats.protocol_violations.store(counters.protocol_violations, relaxed);
    stats.auth_queries.store(counters.auth_queries, relaxed);
    stats.auth_query_failures.store(counters.auth_query_failures, relaxed);
    stats.clients_stalled.store(counters.clients_stalled, relaxed);
    stats.clients_kept.store(counters.clients_kept, relaxed);
    stats.primary_waiting.store(primary_waiting, relaxed);
    stats.primary_wait_timeouts.store(counters.primary_wait_timeouts, relaxed);
    stats.requests_rerun.store(counters.requests_rerun, relaxed);
    stats.transactions.store(counters.transactions, relaxed);
    stats.ticks.fetch_add(1, relaxed);
    stats.published.store(true, std::memory_order_release);
}

void Worker::cancel_accepts() {
    for (uint32_t i = 0; i < listeners_.size(); ++i) {
        if (accepts_armed_[i] == 0) continue;
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_cancel64(sqe, pack(Op::Accept, i, 0), IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, pack(Op::Ignored, 0, 0));
    }
}

void Worker::begin_shutdown() {
    shutting_down_ = true;
    cancel_accepts();
    // New connections must be refused at once, not left in an accept queue nobody reads.
    for (base::UniqueFd& listener : listeners_) listener.reset();
    log_info("worker %u: shutting down: no new clients", index);
}

bool Worker::has_clients() const {
    for (uint32_t i = 0; i < client_high_; ++i)
        if (clients[i].state != client::ClientState::Free) return true;
    return false;
}

bool Worker::drained() const {
    for (uint32_t i = 0; i < client_high_; ++i)
        if (clients[i].state != client::ClientState::Free) return false;
    for (uint32_t i = 0; i < server_high_; ++i)
        if (servers[i].state != server::ServerState::Free) return false;
    return true;
}

}  // namespace pgplex::worker
