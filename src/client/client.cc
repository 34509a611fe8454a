// The client state machine (client.h): its allowed edges, the one place a client changes
// state, and the names of states and close reasons.
#include "pgplex/client/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>

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
            // Free: a client handed over by an earlier pgplex (client_handover.cc).
            return from == ClientState::Free || from == ClientState::Startup ||
                   from == ClientState::Auth || from == ClientState::Syncing ||
                   from == ClientState::Active || from == ClientState::Asking ||
                   from == ClientState::Waiting;
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

void CompactAddress::set(const sockaddr_storage& from) {
    address = sockaddr_in6{};
    if (from.ss_family == AF_INET)
        memcpy(&address, &from, sizeof(sockaddr_in));
    else if (from.ss_family == AF_INET6)
        memcpy(&address, &from, sizeof(sockaddr_in6));
    else
        address.sin6_family = from.ss_family;
}

sockaddr_storage CompactAddress::full() const {
    sockaddr_storage out{};
    memcpy(&out, &address, sizeof address);
    return out;
}

std::string address_text(const Client& client) {
    char text[INET6_ADDRSTRLEN] = "unknown";
    const sockaddr_storage peer = client.peer.full();
    if (!client.addresses_known) return text;
    if (peer.ss_family == AF_UNIX) return "unix";
    if (peer.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, text,
                  sizeof text);
    else if (peer.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr, text,
                  sizeof text);
    return text;
}

namespace {

int port_of(const sockaddr_storage& address) {
    if (address.ss_family == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
    if (address.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
    return -1;
}

}  // namespace

base::LogText log_context(const worker::Worker& worker, const Client& client) {
    base::LogText context;
    context.add("client",
                std::to_string(worker.index) + "." + std::to_string(worker.client_slot(client)));
    if (client.addresses_known) {
        std::string address = address_text(client);
        int port = port_of(client.peer.full());
        if (port >= 0) address += ":" + std::to_string(port);
        context.add("addr", address);
    }
    if (client.session) {
        context.add("user", client.session->user);
        context.add("db", client.session->database);
    }
    return context;
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
        case CloseReason::HandedOver:
            return "handed over to the pgplex taking over";
    }
    return "unknown";
}

}  // namespace pgplex::client
