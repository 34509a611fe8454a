// The gossip datagram between pgplex appliances: a versioned, big-endian binary header and a
// list of records, sealed by HMAC-SHA256 under the shared key; and the per-sender replay
// guard. Every appliance message (SWIM probes, membership updates, node views, Paxos and
// leases) is a record, so piggybacking is only "append more records while they fit".
//
// Datagram layout (all integers big-endian, every string a u8 length then bytes):
//   magic "PGXG" | version u8 | sender str | receiver str | boot u64 | seq u64 |
//   incarnation u64 | receiver boot u64 | record count u16 | records... | HMAC-SHA256 (32)
// A record is kind u8 | body length u16 | body, so a reader can check each length before
// reading a field. The MAC covers everything before it, receiver included, so a datagram
// sent to one appliance cannot be replayed to another; and the receiver's boot id as the
// sender last heard it, so a datagram captured before the receiver restarted cannot be
// replayed to its new life (whose replay window is empty). Only datagrams sent before the
// sender ever heard the receiver (receiver boot 0) escape that check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pgplex/cluster/topology.h"
#include "pgplex/gossip/engine.h"

namespace pgplex::gossip {

// The largest datagram: under a common MTU-independent UDP payload, and small enough that a
// hostile peer cannot make an appliance buffer much. What does not fit waits for the next
// datagram (piggybacked records rotate round-robin).
inline constexpr size_t datagram_bytes_max = 8192;
inline constexpr size_t mac_bytes = 32;           // HMAC-SHA256
inline constexpr size_t key_bytes_min = 32;       // the shared key's shortest length
inline constexpr uint8_t wire_version = 1;        // bumped on any layout change
inline constexpr size_t replay_window = 64;       // recent sequence numbers remembered
inline constexpr size_t address_bytes_max = 255;  // a str field's u8 length
inline constexpr size_t view_nodes_max = 64;      // nodes of one cluster in a view
inline constexpr size_t header_bytes_max = 4 + 1 + 2 * (1 + address_bytes_max) + 4 * 8 + 2;
static_assert(header_bytes_max + mac_bytes < datagram_bytes_max / 4);

// The record kinds, by what they carry. Numbers are on the wire: never reuse one.
enum class RecordKind : uint8_t {
    Ping = 1,           // SWIM probe. id: probe id; address: the member probed
    Ack = 2,            // answer to a probe. id: probe id; address: the member that answered
    PingReq = 3,        // probe `address` for me and send its Ack back. id: my probe id
    Member = 4,         // SWIM update. address, state, incarnation, boot
    View = 5,           // `address`'s local view of `cluster`: age_ms, nodes
    State = 6,          // `address` learned `node` chosen primary of `cluster` in `epoch`;
                        // id: the highest epoch it saw any Paxos record for
    Prepare = 7,        // Paxos phase 1a for (cluster, epoch): ballot; id: the proposer's
                        // highest chosen epoch, its basis (Accept carries it too)
    Promise = 8,        // phase 1b: ballot promised; accepted ballot (round 0: none) and node
    Accept = 9,         // phase 2a: ballot, node
    Accepted = 10,      // phase 2b: ballot, node
    Reject = 11,        // the acceptor promised a higher ballot (in `accepted`) for the epoch
    LeaseRequest = 12,  // grant me a lease on (cluster, epoch) with primary `node`. id: request
    LeaseGrant = 13,    // granted: (cluster, epoch), id: the request answered
    Cancel = 14,        // a CancelRequest for a client of the receiver. id: pid << 32 | key
    // The sender's demand on `node` (config::NodeOptions::max_db_connections, pool/budget.h):
    // id: servers it holds there; epoch: its clients waiting for one; boot: the limit it
    // keeps itself to there now (gossip/budget_share.h). Sent only to
    // appliances of a site whose config sets a node budget.
    Demand = 15,
};

const char* to_string(RecordKind kind);

// A Paxos ballot within one epoch: higher round wins, the proposer's address breaks ties.
struct Ballot {
    uint64_t round = 0;  // 0: no ballot
    std::string proposer;
    auto operator<=>(const Ballot&) const = default;
};

// What one appliance's monitors see of one node.
struct NodeView {
    std::string name;
    bool healthy = false;
    cluster::Role role = cluster::Role::Unknown;
    uint64_t replay_lsn = 0;
    uint64_t current_lsn = 0;
    bool operator==(const NodeView&) const = default;
};

// One record; each kind uses the fields its comment in RecordKind names.
struct Record {
    RecordKind kind = RecordKind::Ping;
    std::string address;
    std::string cluster;
    std::string node;
    uint64_t id = 0;
    uint64_t epoch = 0;
    Ballot ballot;
    Ballot accepted;
    MemberState state = MemberState::Alive;
    uint64_t incarnation = 0;
    uint64_t boot = 0;
    int64_t age_ms = 0;
    std::vector<NodeView> nodes;
    bool operator==(const Record&) const = default;
};

struct Header {
    std::string sender;
    std::string receiver;
    uint64_t boot = 0;           // the sender's boot id: a restarted appliance has a larger one
    uint64_t seq = 0;            // per (sender boot, receiver), from 1
    uint64_t incarnation = 0;    // the sender's SWIM incarnation
    uint64_t receiver_boot = 0;  // the receiver's boot id as the sender knows it; 0 unknown
    bool operator==(const Header&) const = default;
};

enum class DecodeResult : uint8_t {
    Ok,         // authentic and fully read
    Forged,     // too short, too long, or the MAC does not match
    Malformed,  // authentic, but a length or a field is out of range
};

// The encoded size of a record (kind, length and body).
size_t record_size(const Record& record);
// Header + records + MAC. False (and `out` empty) when a field is too long or the whole
// would exceed datagram_bytes_max.
bool encode(const Header& header, std::span<const Record> records, std::span<const uint8_t> key,
            std::vector<uint8_t>& out);
DecodeResult decode(std::span<const uint8_t> bytes, std::span<const uint8_t> key, Header& header,
                    std::vector<Record>& records);

// Sliding window of the sequence numbers accepted from one sender (RFC 4303 §3.4.3 style),
// reset when the sender's boot id grows; an older boot is refused.
class ReplayGuard {
  public:
    enum class Verdict : uint8_t { Fresh, Replayed, OldBoot };
    Verdict check(uint64_t boot, uint64_t seq) const;
    // Records an accepted (boot, seq); only after check() said Fresh.
    void accept(uint64_t boot, uint64_t seq);
    uint64_t boot() const { return boot_; }

  private:
    uint64_t boot_ = 0;
    uint64_t top_ = 0;     // highest seq accepted in this boot
    uint64_t bitmap_ = 0;  // bit i: top_ - i accepted
};

}  // namespace pgplex::gossip
