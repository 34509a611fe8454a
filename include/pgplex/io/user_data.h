// What a completion is about: io_uring user_data packs {op, slot, generation}.
//
// A slot is reused for a new connection only after every operation on it completed, so a
// stale generation never happens in normal operation; it is still checked, counted and
// dropped, as the last line of defence (TigerBeetle io/linux.zig, liburing proxy.c).
#pragma once

#include <cstdint>

namespace pgplex::io {

enum class Op : uint8_t {
    None = 0,
    Accept,  // slot: listener index
    ClientRecv,
    ClientSend,
    ClientClose,
    ClientShutdown,  // the shutdown and the cancel that open a close: counted in flight
    ServerConnect,
    ServerRecv,
    ServerSend,
    ServerClose,
    ServerShutdown,
    ServerYieldSent,  // our MSG_RING that handed a server's file to another worker
    Adopt,            // another worker handed us a server: user_data's low 56 bits point to its
                      // server::Transfer
    Listen,           // another worker's message about LISTEN channels: user_data's low 56
                      // bits point to its pool::ListenMessage, which the receiver frees
    ListenSent,       // our MSG_RING carrying a pool::ListenMessage completed; on failure
                      // the message was not delivered and the sender frees it
    Tick,             // the worker's housekeeping timeout
    Message,          // a message from another ring (IORING_OP_MSG_RING)
    Ignored,          // cancels, shutdowns, messages we sent: nothing to do on completion
    ClientPeer,       // the client's socket put in the fd table for a moment, to read its
                      // addresses (Loop::ask_addresses); counted in flight
    ClientInstalled,  // a client being handed over, its socket put in the fd table to be sent
                      // to the pgplex taking over (Loop::request_handover); counted in flight
    ClientAdopted,    // a handed-over client's socket made a fixed file: user_data's low 56
                      // bits point to its worker::Adoption
};

inline uint64_t pack(Op op, uint32_t slot, uint32_t generation) {
    return uint64_t(op) << 56 | uint64_t(slot & 0xffffffu) << 32 | generation;
}
inline Op op_of(uint64_t user_data) {
    return static_cast<Op>(user_data >> 56);
}
inline uint32_t slot_of(uint64_t user_data) {
    return uint32_t(user_data >> 32) & 0xffffffu;
}
inline uint32_t generation_of(uint64_t user_data) {
    return uint32_t(user_data);
}

// Op::Adopt carries a pointer: user-space addresses fit in 56 bits on Linux.
inline uint64_t pack_pointer(Op op, const void* pointer) {
    return uint64_t(op) << 56 | (reinterpret_cast<uintptr_t>(pointer) & ((uint64_t(1) << 56) - 1));
}
inline void* pointer_of(uint64_t user_data) {
    return reinterpret_cast<void*>(uintptr_t(user_data & ((uint64_t(1) << 56) - 1)));
}

// Messages between rings: MSG_RING carries 64 bits of user_data and 32 bits of res.
// user_data = pack(Op::Message, kind, payload_high); res = payload_low.
enum class MessageKind : uint8_t {
    CancelClient = 1,   // slot field: unused; generation field: cancel key; res: client pid
    PoolWake = 2,       // generation field: pool id; a server of that pool was freed
    Wake = 3,           // look at shared state now (reload, shutdown)
    PoolYield = 4,      // generation field: pool id; res: requester << 24 | its file index.
                        // Hand an idle server of that pool over, if there is one
    HandoffFailed = 5,  // generation field: pool id; res: the file index that stays empty
    ClientsWanted = 6,  // generation field: request serial; res: the asking client's pid.
                        // List this worker's clients (SHOW CLIENTS) and answer
    ClientsListed = 7,  // generation field: request serial; res: the asking client's slot
};

}  // namespace pgplex::io
