// A client's CancelRequest. PostgreSQL cancels whatever the backend runs when the signal
// lands; pgplex keeps that meaning for a client whose statement has not reached a server yet
// (it waits for one, or behind pgplex's own statements on its server): the statement is
// answered 57014 without running, as if the cancel had landed the moment it began. A cancel
// while a statement of the client's runs goes to that server (server::send_cancel).
#pragma once

#include <cstdint>

#include "pgplex/client/client.h"
#include "pgplex/client/client_extended.h"
#include "pgplex/proto/frame.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

// A cancel of the client's is on its way to a server that now runs nothing of it: what the
// client sends next waits until it has landed (server::cancel_done resumes the client).
bool waits_for_cancel(const worker::Worker& worker, const Client& client);

// A request pgplex answers in the server's place before it reaches one: one cancelled while
// the client waited (57014), or the first request of a client whose transaction block was
// lost with its server (08006, client_failure.h); then ReadyForQuery at the request's end,
// after PostgreSQL's rule that an extended-protocol error skips everything up to the Sync.
// Returns the bytes used; 0 when the head of `data` is a request to get a server for.
uint32_t answer_unsent(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size);

// A message about to go to the client's server while a cancel of the client's waits for its
// next request: a request is answered 57014 in its place, in order, and what follows it up
// to its Sync is dropped; true then (the message is dropped). Anything else forgets the
// cancel (false).
bool refuse_cancelled(Outbound& out, uint8_t type);

}  // namespace pgplex::client
