// The client side's entry points, called by the worker's completion dispatch and by the
// server side when a server becomes available or fails.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pgplex/client/client.h"
#include "pgplex/proto/error.h"

namespace pgplex::worker {
class Worker;
}

namespace pgplex::client {

void on_accepted(worker::Worker& worker, uint32_t slot, uint32_t listener);
void on_recv(worker::Worker& worker, Client& client, uint32_t buffer, uint32_t size);
void on_recv_end(worker::Worker& worker, Client& client, int result);  // EOF (0) or -errno
// The client's addresses are read (peer and local null: they could not be).
void on_addresses(worker::Worker& worker, Client& client, const sockaddr_storage* peer,
                  const sockaddr_storage* local);
// The client's TLS handshake or a record failed: logged, and the client closed.
void on_tls_failed(worker::Worker& worker, Client& client, const std::string& reason);
void on_sent(worker::Worker& worker, Client& client);
void on_closed(worker::Worker& worker, Client& client);
void on_tick(worker::Worker& worker, Client& client);
void on_shutdown(worker::Worker& worker, Client& client, bool immediate);

// A server is linked to this waiting client (server side calls it).
void on_server_ready(worker::Worker& worker, Client& client);
// The server the client waited for or used failed; `error` is an ErrorResponse body to pass
// on when the server sent one (empty: pgplex writes its own).
void on_server_failed(worker::Worker& worker, Client& client, const uint8_t* error,
                      uint32_t error_size);
// Transaction pooling: the server was given back at the end of a transaction.
void on_released(worker::Worker& worker, Client& client);
// Something the client's held bytes waited for happened (its LISTEN was confirmed): go on.
void resume(worker::Worker& worker, Client& client);
// Bytes from the linked server were queued to the client.
void on_server_output(worker::Worker& worker, Client& client);

// Session pooling: a named Parse (`text`: its body) or the Close of a named statement
// (`text`: the name) was answered (`ok`) or failed: the session's record of its statements
// follows (Session::parses).
void follow_statement(Client& client, bool parse, std::string& text, bool ok);
// A Parse of the client's failed or was skipped: it does not own `name` after all.
void forget_statement(worker::Worker& worker, Client& client, std::string_view name,
                      const pool::Statement* statement);

// Sends an error and closes.
void fail(worker::Worker& worker, Client& client, CloseReason reason, proto::Severity severity,
          const char* sqlstate, std::string_view message, std::string_view detail = {},
          std::string_view hint = {});
void close(worker::Worker& worker, Client& client, CloseReason reason);
// Takes the client out of its pool's waiters and gives back the server it holds (reset
// before reuse when the client's session state may be on it).
void release(worker::Worker& worker, Client& client);

// A CancelRequest for a client of this worker (maybe forwarded from another worker).
void cancel(worker::Worker& worker, uint32_t pid, uint32_t key);
// A CancelRequest for a client of another appliance: handed to the control plane, which
// sends it to that appliance by gossip (client_cancel.cc).
void forward_cancel(worker::Worker& worker, uint32_t pid, uint32_t key);
// The BackendKeyData pid of a client slot of this worker (base/limits.h).
uint32_t cancel_pid(const worker::Worker& worker, uint32_t slot);

}  // namespace pgplex::client
