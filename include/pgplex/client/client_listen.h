// The client side of LISTEN/NOTIFY in transaction and statement pooling (pool/notify.h):
// answering a client's LISTEN and UNLISTEN, keeping its channels, and delivering
// notifications to it between its messages (client_listen.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "pgplex/client/client.h"
#include "pgplex/client/client_extended.h"
#include "pgplex/proto/writer.h"
#include "pgplex/server/server.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

// Between transactions (Idle): a Query at the head of data holding only LISTEN and
// UNLISTEN is answered without a server, once the pool's listener LISTENs on every channel
// it adds (until then listen_holds()); one pgplex refuses is answered with an error.
// Returns the bytes taken, 0 when the head of data is not such a Query.
uint32_t answer_listen(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size);
// The client's LISTEN waits for the listener: its next messages wait too.
bool listen_holds(const Client& client);

// With a server (inside a transaction): a Query holding LISTEN or UNLISTEN is answered by
// pgplex in order with the server's replies, and takes effect when the transaction
// commits. False: not one, the server gets it.
bool takes_listen_query(Outbound& out, std::string_view query);
// An unnamed Parse of one LISTEN or UNLISTEN becomes pgplex's own unnamed statement:
// Local (text: what its Execute answers), Refuse (text: the error message), or Pass.
enum class ListenParse : uint8_t { Pass, Local, Refuse };
ListenParse on_listen_parse(Outbound& out, std::string_view query, std::string& text);
// A named Parse of a LISTEN or UNLISTEN: refused (text: the message), as pgplex cannot run
// them on a server.
bool refuses_prepared_listen(std::string_view query, std::string& text);

// server_expect.cc, when the reply to a LISTEN pgplex answers is due: writes it (with the
// server's transaction status) and records the changes.
void write_listen_reply(worker::Worker& worker, Client& client, const server::Pending& head,
                        proto::TransactionStatus status, proto::Writer& writer);
// Whether a LISTEN/UNLISTEN of the transaction under way waits for its end.
bool has_pending_listens(const Client& client);
// The transaction ended (ReadyForQuery idle): its LISTEN/UNLISTEN take effect, unless it
// failed or rolled back. Before the session's flags are reset.
void settle_listens(worker::Worker& worker, Client& client);
// The client is between transactions again: the notifications kept for it go out.
void flush_notifications(worker::Worker& worker, Client& client);
// The client is gone: its channels are given up.
void forget_listens(worker::Worker& worker, Client& client);

// From the pool's listener (server_listen.cc), for this worker's clients.
void on_listen_confirmed(worker::Worker& worker, pool::Pool& pool, std::string_view channel,
                         uint64_t seq);
void on_listen_failed(worker::Worker& worker, pool::Pool& pool, std::string_view channel,
                      uint64_t seq, std::string_view error_body);
void on_notification(worker::Worker& worker, pool::Pool& pool, std::string_view channel,
                     std::string_view message);

}  // namespace pgplex::client
