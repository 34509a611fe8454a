// The client state machine (client.h): its allowed edges, the one place a client changes
// state, and the names of states and close reasons.
#include "pgplex/client/client.h"

#include "pgplex/base/assert.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

// Where a client may go from `from` (client.h says what each state holds). Waiting and
// Active may be entered again: a routed client re-queued for a node, a server handed on
// after pgplex's own check.
bool allowed(ClientState from, ClientState to) {
    switch (to) {
        case ClientState::Free:
            return from == ClientState::Closing;
        case ClientState::Startup:
            return from == ClientState::Free;
        case ClientState::Auth:
            return from == ClientState::Startup;
        case ClientState::Idle:
            return from == ClientState::Startup || from == ClientState::Auth ||
                   from == ClientState::Syncing || from == ClientState::Active ||
                   from == ClientState::Asking || from == ClientState::Waiting;
        case ClientState::Waiting:
        case ClientState::Syncing:
        case ClientState::Active:
            return from != ClientState::Free && from != ClientState::Closing &&
                   from != ClientState::Asking && (from != to || to != ClientState::Syncing);
        case ClientState::Asking:
            return from == ClientState::Idle;
        case ClientState::Closing:
            return from != ClientState::Free && from != ClientState::Closing;
    }
    return false;
}

}  // namespace

void set_state(worker::Worker& worker, Client& client, ClientState state) {
    PGPLEX_ASSERT(allowed(client.state, state));
    if (client.state != ClientState::Free) --worker.counters.clients_in[size_t(client.state)];
    if (state != ClientState::Free) ++worker.counters.clients_in[size_t(state)];
    if (state != client.state) client.wait_logged = false;
    client.state = state;
    client.since = worker.now;
}

const char* to_string(ClientState state) {
    switch (state) {
        case ClientState::Free:
            return "free";
        case ClientState::Startup:
            return "startup";
        case ClientState::Auth:
            return "auth";
        case ClientState::Idle:
            return "idle";
        case ClientState::Waiting:
            return "waiting";
        case ClientState::Syncing:
            return "syncing";
        case ClientState::Active:
            return "active";
        case ClientState::Asking:
            return "asking";
        case ClientState::Closing:
            return "closing";
    }
    return "unknown";
}

const char* to_string(CloseReason reason) {
    switch (reason) {
        case CloseReason::ClientTerminated:
            return "client sent Terminate";
        case CloseReason::ClientGone:
            return "client closed the connection";
        case CloseReason::ProtocolViolation:
            return "protocol violation";
        case CloseReason::LoginFailed:
            return "login failed";
        case CloseReason::LoginTimeout:
            return "client_login_timeout";
        case CloseReason::WaitTimeout:
            return "query_wait_timeout";
        case CloseReason::ServerFailed:
            return "server connection failed";
        case CloseReason::TooManyClients:
            return "max_client_conn";
        case CloseReason::Shutdown:
            return "shutdown";
        case CloseReason::CancelRequest:
            return "cancel request";
        case CloseReason::TransactionBlock:
            return "transaction block in statement pooling mode";
        case CloseReason::Stalled:
            return "client read none of its output for client_stall_timeout";
        case CloseReason::TlsFailed:
            return "TLS failed";
        case CloseReason::Killed:
            return "KILL_CLIENT";
    }
    return "unknown";
}

}  // namespace pgplex::client
