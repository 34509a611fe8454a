// The server state machine (server.h): its allowed edges, the one place a server changes
// state, and the names of states and close reasons.
#include "pgplex/server/server.h"

#include "pgplex/base/assert.h"
#include "pgplex/worker/worker.h"

namespace pgplex::server {

namespace {

// Where a server may go from `from` (server.h says what each state holds).
bool allowed(ServerState from, ServerState to) {
    switch (to) {
        case ServerState::Free:
            return from == ServerState::Closing || from == ServerState::Cancelling ||
                   from == ServerState::Adopting;
        case ServerState::Connecting:
        case ServerState::Cancelling:
        case ServerState::Adopting:
            return from == ServerState::Free;
        case ServerState::Login:
            return from == ServerState::Connecting;
        case ServerState::Idle:
            return from == ServerState::Login || from == ServerState::Syncing ||
                   from == ServerState::Active || from == ServerState::Resetting ||
                   from == ServerState::Adopting;
        case ServerState::Syncing:
            return from == ServerState::Idle || from == ServerState::Active;
        case ServerState::Active:
            return from == ServerState::Idle || from == ServerState::Syncing;
        case ServerState::Resetting:
            return from == ServerState::Active || from == ServerState::Syncing;
        case ServerState::Yielding:
            return from == ServerState::Idle;
        case ServerState::Listening:
            return from == ServerState::Login;
        case ServerState::Closing:
            return from != ServerState::Free && from != ServerState::Closing;
    }
    return false;
}

}  // namespace

void set_state(worker::Worker& worker, Server& server, ServerState state) {
    PGPLEX_ASSERT(allowed(server.state, state));
    if (server.state != ServerState::Free) --worker.counters.servers_in[size_t(server.state)];
    if (state != ServerState::Free) ++worker.counters.servers_in[size_t(state)];
    server.state = state;
    server.since = worker.now;
}

const char* to_string(ServerState state) {
    switch (state) {
        case ServerState::Free:
            return "free";
        case ServerState::Connecting:
            return "connecting";
        case ServerState::Login:
            return "login";
        case ServerState::Idle:
            return "idle";
        case ServerState::Syncing:
            return "syncing";
        case ServerState::Active:
            return "active";
        case ServerState::Resetting:
            return "resetting";
        case ServerState::Cancelling:
            return "cancelling";
        case ServerState::Adopting:
            return "adopting";
        case ServerState::Yielding:
            return "yielding";
        case ServerState::Listening:
            return "listening";
        case ServerState::Closing:
            return "closing";
    }
    return "unknown";
}

const char* to_string(CloseReason reason) {
    switch (reason) {
        case CloseReason::ServerGone:
            return "server closed the connection";
        case CloseReason::LoginFailed:
            return "login failed";
        case CloseReason::ProtocolViolation:
            return "protocol violation";
        case CloseReason::Unusable:
            return "client left it mid-transaction";
        case CloseReason::IdleTimeout:
            return "server_idle_timeout";
        case CloseReason::Lifetime:
            return "server_lifetime";
        case CloseReason::PoolWanted:
            return "a waiter on another worker needs the slot";
        case CloseReason::ConnectTimeout:
            return "server_connect_timeout";
        case CloseReason::Shutdown:
            return "shutdown";
        case CloseReason::CancelDone:
            return "cancel sent";
        case CloseReason::CancelTimeout:
            return "cancel not confirmed in time";
        case CloseReason::HandedOver:
            return "handed over to another worker";
        case CloseReason::Direct:
            return "its client left (dest = \"direct\")";
        case CloseReason::Killed:
            return "KILL";
        case CloseReason::Reconnect:
            return "RECONNECT";
    }
    return "unknown";
}

const std::string* parameter(const Server& server, const std::string& name) {
    for (const auto& [key, value] : server.parameters)
        if (key == name) return &value;
    return nullptr;
}

void set_parameter(Server& server, const std::string& name, const std::string& value) {
    for (auto& [key, current] : server.parameters)
        if (key == name) {
            current = value;
            return;
        }
    server.parameters.emplace_back(name, value);
}

base::LogText log_context(const Server& server) {
    base::LogText context;
    if (server.pool == nullptr) return context;
    const pool::Target& target = server.pool->target;
    context.add("server", target.endpoint.to_string());
    context.add("pool", target.dbname + "/" + target.user);
    if (server.backend_pid != 0) context.add("backend_pid", std::to_string(server.backend_pid));
    return context;
}

}  // namespace pgplex::server
