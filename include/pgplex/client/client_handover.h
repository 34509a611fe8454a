// pgplex --takeover, the clients' side (takeover.h has the processes' side). The old pgplex
// hands each client over once it is idle between transactions: its socket goes to the new
// pgplex with what pgplex keeps of its session (handover_state.h), and the client sees
// nothing but, at most, a short delay before its next transaction. The new pgplex adopts it
// in a free client slot as if it had logged in there.
//
// Which clients move: between transactions (transaction pooling: Idle; session pooling:
// Active on an idle server, with a session pgplex can give another server, as
// client_failure.h's session_movable says), not over TLS (its keys live in this process),
// not the management database, not pinned to a server by session state, holding no LISTEN,
// and with no message half read. The others finish on the old pgplex, which waits for them
// to leave (as after SIGTERM, within shutdown_timeout).
#pragma once

#include <cstdint>
#include <string_view>

#include "pgplex/client/client.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

// Old pgplex.
bool may_hand_over(const worker::Worker& worker, const Client& client);
// Takes its state and starts moving its socket (Loop::request_handover); it is Closing
// (HandedOver) from now on.
void hand_over(worker::Worker& worker, Client& client);
// Bytes it sent that came in while its socket was on the way: they go with it.
void on_handover_input(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size);
// Its socket is in the fd table (res: the fd, or -errno).
void on_handover_installed(worker::Worker& worker, Client& client, int res);
// The close of its fixed file completed: state and socket go to the takeover thread.
void ship_handover(worker::Worker& worker, Client& client);

// New pgplex: the client in fixed-file `slot` (Free until now), from its encoded state.
// False when the state does not decode or its database no longer exists here (the client
// was told, or is closed).
bool adopt_handed(worker::Worker& worker, uint32_t slot, std::string_view payload);
// The client left: its old process id no longer names it.
void forget_handed(worker::Worker& worker, Client& client);
// A CancelRequest for `pid`: the pid the client has in this process if it was handed over
// with that pid and key, else pid itself.
uint32_t handed_cancel_pid(worker::Worker& worker, uint32_t pid, uint32_t key);

}  // namespace pgplex::client
