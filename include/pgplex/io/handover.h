// The channel between a running pgplex and the one taking over from it (pgplex --takeover):
// a Unix stream socket carrying frames of {kind, payload} with file descriptors attached
// (SCM_RIGHTS). The header, with the descriptors, goes in one sendmsg; the payload follows.
// Blocking I/O: each side drives it from a thread of its own, never from a worker's ring.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/base/unique_fd.h"

namespace pgplex::io {

enum class HandoverKind : uint8_t {
    Hello = 1,         // new → old: the version it speaks; payload: handover_version (u32)
    Listener = 2,      // old → new: one listening socket (1 fd); payload: listener_encode's
    Ready = 3,         // new → old: its workers run on those sockets; old stops accepting
    ListenersEnd = 7,  // old → new: every listening socket was sent
    Client = 4,        // old → new: one client (1 fd); payload: client/client_handover.h's
    Done = 5,          // old → new: nothing more will come
    Refused = 6,       // either way: payload is the reason, in words
};

inline constexpr uint32_t handover_version = 1;
inline constexpr uint32_t handover_payload_max = 64u << 20;
inline constexpr uint32_t handover_fds_max = 8;

struct HandoverFrame {
    HandoverKind kind = HandoverKind::Refused;
    std::string payload;
    std::vector<base::UniqueFd> fds;
};

// False with `error` set when the peer is gone or the write failed.
bool send_frame(int socket, HandoverKind kind, std::string_view payload,
                const std::vector<int>& fds, std::string& error);
// False with `error` set on EOF (error "closed"), a read error or a malformed header.
bool receive_frame(int socket, HandoverFrame& frame, std::string& error);

// Listening socket at `path` (an old socket file there is replaced), mode 0600; or invalid
// with `error` set.
base::UniqueFd listen_handover(const std::string& path, std::string& error);
base::UniqueFd connect_handover(const std::string& path, std::string& error);

// A listening socket's role, as the Listener frame carries it.
struct ListenerInfo {
    uint32_t worker = 0;
    std::string cluster;  // empty: the main listener
    std::string service;
    std::string endpoint;  // as config::Endpoint::to_string()
};
std::string listener_encode(const ListenerInfo& info);
bool listener_decode(std::string_view payload, ListenerInfo& info);

}  // namespace pgplex::io
