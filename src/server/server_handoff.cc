// Handing a logged-in server from one worker's ring to another's.
//
// Idle servers live on the ring that opened them. When a client waits on worker A, the
// pool is full, and worker B holds an idle server of that pool, A keeps an empty server
// slot (Adopting) and asks B for it. B stops the server's recv (Yielding), then sends the
// socket with IORING_OP_MSG_RING / IORING_MSG_SEND_FD straight into A's fixed-file table
// at that slot, with the server's state in a Transfer whose address rides in the CQE that
// A receives. Once the send completed, B drops its own table entry without shutting the
// socket down. No lock, no copy of a socket through the fd table, and the pool's count of
// servers never changes (DESIGN, "Lock-free pool table").
#include "pgplex/base/log.h"
#include "pgplex/io/worker.h"
#include "pgplex/pool/pool.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_work.h"

namespace pgplex::server {

namespace {

// The first worker other than this one with idle servers of the pool, or nil.
uint32_t worker_with_idle(io::Worker& worker, pool::Pool& pool) {
    for (uint32_t word = 0; word < pool::waiter_mask_words; ++word) {
        uint64_t mask = pool.idle_workers[word].load(std::memory_order_acquire);
        if (word == worker.index / 64) mask &= ~(uint64_t(1) << (worker.index % 64));
        if (mask == 0) continue;
        uint32_t target = word * 64 + uint32_t(__builtin_ctzll(mask));
        return target < worker.shared.ring_fds.size() ? target : io::nil;
    }
    return io::nil;
}

void ask_for_handoff(io::Worker& worker, pool::Pool& pool, uint32_t target) {
    uint32_t slot = worker.server_acquire();
    if (slot == io::nil) return;
    claim(worker, slot, ServerState::Adopting, pool);
    worker.pools[pool.id].connecting++;
    worker.message(target, io::MessageKind::PoolYield, pool.id,
                   worker.index << 24 | worker.server_file(slot));
}

}  // namespace

void want_server(io::Worker& worker, pool::Pool& pool) {
    pool::PoolLocal& local = worker.pools[pool.id];
    if (local.connecting >= local.waiter_count) return;
    // An idle server on another ring costs a message to borrow; a new one costs a TCP
    // handshake, an authentication and a backend fork.
    uint32_t target = worker_with_idle(worker, pool);
    if (target != io::nil) {
        ask_for_handoff(worker, pool, target);
        return;
    }
    if (pool.try_reserve_server() || take_from_reserve(worker, pool)) connect(worker, pool);
}

void yield_idle(io::Worker& worker, pool::Pool& pool, uint32_t request) {
    uint32_t requester = request >> 24;
    uint32_t file = request & 0xffffffu;
    uint32_t slot = pool::idle_pop(worker, pool);
    if (slot == io::nil) {
        worker.message(requester, io::MessageKind::HandoffFailed, pool.id, file);
        return;
    }
    Server& server = worker.server(slot);
    set_state(worker, server, ServerState::Yielding);
    server.yield_worker = requester;
    server.yield_file = file;
    // Its multishot recv must end first, or bytes meant for the new owner could land here.
    worker.pause_recv(server.conn, io::Op::ServerRecv, slot);
    if (!server.conn.recv_armed) continue_yield(worker, server);
}

void continue_yield(io::Worker& worker, Server& server) {
    PGPLEX_ASSERT(server.state == ServerState::Yielding && !server.conn.recv_armed);
    if (!server.conn.held_in.empty() || !server.conn.out.empty() || server.conn.send_busy ||
        !server.conn.frame.between_messages() || server.conn.eof) {
        close(worker, server, CloseReason::PoolWanted);
        return;
    }
    auto* transfer = new Transfer{};
    transfer->file_index = server.yield_file;
    transfer->backend_pid = server.backend_pid;
    transfer->backend_key = server.backend_key;
    transfer->created = server.created;
    transfer->parameters = std::move(server.parameters);
    transfer->applied = std::move(server.applied);
    transfer->prepared = std::move(server.prepared);
    transfer->sql_prepared = std::move(server.sql_prepared);
    transfer->sql_prepared_unknown = server.sql_prepared_unknown;
    server.transfer = transfer;
    io_uring_sqe* sqe = worker.ring.sqe();
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, worker.shared.ring_fds[server.yield_worker],
                     reinterpret_cast<void*>(uintptr_t(IORING_MSG_SEND_FD)), 0,
                     io::pack_pointer(io::Op::Adopt, transfer));
    sqe->addr3 = server.conn.file;
    sqe->file_index = server.yield_file + 1;  // 1-based: 0 would mean "no slot"
    uint32_t slot = worker.server_slot(server);
    io_uring_sqe_set_data64(sqe, io::pack(io::Op::ServerYieldSent, slot, server.conn.generation));
    ++server.conn.inflight;
}

void on_yield_sent(io::Worker& worker, Server& server, int result) {
    Transfer* transfer = server.transfer;
    server.transfer = nullptr;
    if (result < 0) {
        log_warning("handing a server to worker %u failed: %s", server.yield_worker,
                    strerror(-result));
        server.parameters = std::move(transfer->parameters);
        delete transfer;
        close(worker, server, CloseReason::PoolWanted);
        return;
    }
    // The other worker owns the socket now: drop our table entry, without a shutdown.
    uint32_t slot = worker.server_slot(server);
    set_state(worker, server, ServerState::Closing);
    server.close_reason = CloseReason::HandedOver;
    server.conn.closing = true;
    worker.continue_close(server.conn, io::Op::ServerClose, slot);
}

void adopt(io::Worker& worker, Transfer* transfer) {
    uint32_t slot = transfer->file_index - worker.client_capacity;
    PGPLEX_ASSERT(slot < worker.server_capacity);
    Server& server = worker.server(slot);
    if (server.state != ServerState::Adopting) {
        // We stopped waiting for it (timeout or shutdown): its place goes back to the pool.
        io_uring_sqe* sqe = worker.ring.sqe();
        io_uring_prep_close_direct(sqe, transfer->file_index);
        io_uring_sqe_set_data64(sqe, io::pack(io::Op::Ignored, 0, 0));
        log_warning("a server handed over too late was closed");
        delete transfer;
        return;
    }
    pool::Pool& pool = *server.pool;
    worker.pools[pool.id].connecting--;
    server.conn.file = transfer->file_index;
    server.backend_pid = transfer->backend_pid;
    server.backend_key = transfer->backend_key;
    server.created = transfer->created;
    server.parameters = std::move(transfer->parameters);
    server.applied = std::move(transfer->applied);
    server.prepared = std::move(transfer->prepared);
    server.sql_prepared = std::move(transfer->sql_prepared);
    server.sql_prepared_unknown = transfer->sql_prepared_unknown;
    server.status = proto::TransactionStatus::Idle;
    server.pending_syncs = 0;
    server.unsynced = false;
    delete transfer;
    worker.arm_recv(server.conn, io::Op::ServerRecv, slot);
    make_available(worker, server);
}

void handoff_failed(io::Worker& worker, uint32_t file_index) {
    uint32_t slot = file_index - worker.client_capacity;
    if (slot >= worker.server_capacity) return;
    Server& server = worker.server(slot);
    if (server.state != ServerState::Adopting) return;
    pool::Pool& pool = *server.pool;
    worker.pools[pool.id].connecting--;
    set_state(worker, server, ServerState::Free);
    server.pool = nullptr;
    worker.server_release_slot(slot);
    // The idle server it hoped for went to someone else: try again now (the other worker's
    // idle mark is gone, so this opens a server or waits for a release).
    if (pool::waiter_front(worker, pool) != io::nil) want_server(worker, pool);
}

}  // namespace pgplex::server
