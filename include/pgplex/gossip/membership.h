// SWIM membership among the configured appliances (Das, Gupta, Motivala 2002): one member
// probed per probe interval in a shuffled round-robin order, indirect probes through k
// others when the direct one times out, suspicion that turns into death unless refuted, and
// incarnation numbers with which a member refutes suspicion of itself. Updates ride on every
// datagram, each retransmitted about lambda * log2(n) times.
//
// The set of appliances is fixed by the configuration, so a dead member is never forgotten:
// it comes back as soon as it speaks with a newer boot or a higher incarnation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pgplex/gossip/engine.h"
#include "pgplex/gossip/outbox.h"
#include "pgplex/gossip/wire.h"

namespace pgplex::gossip {

inline constexpr size_t indirect_probes = 2;      // SWIM's k
inline constexpr uint64_t retransmit_lambda = 3;  // each update sent lambda*log2(n) times

struct Member {
    std::string address;
    MemberState state = MemberState::Alive;
    uint64_t incarnation = 0;
    uint64_t boot = 0;       // the newest boot id heard of; 0 unknown
    int64_t heard_ms = -1;   // last datagram accepted from it; -1 never
    int64_t suspect_ms = 0;  // when it became Suspect (valid in Suspect)
};

// The probe of the current protocol period.
enum class ProbeState : uint8_t {
    Idle,      // no probe outstanding: acked, or no member to probe
    Direct,    // Ping sent to target at started_ms, Ack awaited until probe_timeout
    Indirect,  // PingReq sent through up to k others, Ack awaited until the period ends
};

class Membership {
  public:
    Membership(const Settings& settings, uint64_t boot, int64_t now_ms);

    // The header of every datagram accepted from a member.
    void heard(const Header& header, int64_t now_ms);
    // Ping, Ack, PingReq and Member records.
    void on_record(const std::string& from, const Record& record, int64_t now_ms, Outbox& outbox);
    void tick(int64_t now_ms, Rng& rng, Outbox& outbox);
    // Appends membership updates for a datagram to `to` while they fit in `room` bytes.
    void piggyback(const std::string& to, size_t& room, std::vector<Record>& out);

    uint64_t incarnation() const { return incarnation_; }
    const std::vector<Member>& members() const { return members_; }  // others, config order
    // Members (not self) whose state is not Dead.
    std::vector<std::string> reachable() const;
    bool quorum(int64_t now_ms) const;
    std::vector<MemberRow> rows() const;

  private:
    struct Update {
        Record record;
        uint64_t left = 0;  // transmissions still due
    };
    Member* find(const std::string& address);
    void set_state(Member& member, MemberState state, int64_t now_ms);
    void apply(const Record& update, int64_t now_ms);
    void refute(const Record& update);
    void announce(const Member& member);
    void enqueue(Record record);
    void start_probe(int64_t now_ms, Rng& rng, Outbox& outbox);
    void end_period(int64_t now_ms);
    void go_indirect(Rng& rng, Outbox& outbox);
    void on_ack(const Record& record, Outbox& outbox);
    void set_probe(ProbeState state);

    const Settings& settings_;
    std::string self_;
    uint64_t boot_;
    uint64_t incarnation_ = 0;
    std::vector<Member> members_;
    std::vector<Update> updates_;
    std::vector<size_t> order_;  // the shuffled round-robin of members_ indexes
    size_t order_at_ = 0;
    ProbeState probe_ = ProbeState::Idle;
    std::string target_;
    uint64_t probe_id_ = 0;
    uint64_t next_id_ = 1;
    int64_t period_ms_ = 0;  // start of the current protocol period
    struct Relay {
        uint64_t id;         // our Ping's id
        std::string origin;  // who asked (PingReq)
        uint64_t origin_id;  // its probe id
        std::string target;
        int64_t until_ms;
    };
    std::vector<Relay> relays_;
};

}  // namespace pgplex::gossip
