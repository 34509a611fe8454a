// SWIM membership (gossip/membership.h). The protocol period is probe_interval: at its start
// the next member of a shuffled round-robin is pinged; without an Ack by probe_timeout, k
// others are asked to ping it (PingReq); without any Ack by the end of the period it becomes
// Suspect, and Dead after suspect_timeout unless it refutes by raising its incarnation.
// Precedence of updates follows the SWIM paper section 4.2: a higher incarnation wins, and
// at equal incarnation Dead > Suspect > Alive. A newer boot id wins over everything.
#include "pgplex/gossip/membership.h"

#include <algorithm>
#include <cmath>

#include "pgplex/base/assert.h"

namespace pgplex::gossip {

namespace {

Record member_record(const std::string& address, MemberState state, uint64_t incarnation,
                     uint64_t boot) {
    Record record;
    record.kind = RecordKind::Member;
    record.address = address;
    record.state = state;
    record.incarnation = incarnation;
    record.boot = boot;
    return record;
}

Record probe_record(RecordKind kind, uint64_t id, const std::string& address) {
    Record record;
    record.kind = kind;
    record.id = id;
    record.address = address;
    return record;
}

// Whether an update about a member at (state, incarnation) overrides what is known.
bool overrides(const Member& known, MemberState state, uint64_t incarnation) {
    if (incarnation != known.incarnation) return incarnation > known.incarnation;
    return uint8_t(state) > uint8_t(known.state);  // Alive < Suspect < Dead
}

}  // namespace

Membership::Membership(const Settings& settings, uint64_t boot, int64_t now_ms)
    : settings_(settings), self_(settings.self), boot_(boot), period_ms_(now_ms) {
    for (const std::string& peer : settings.peers) {
        if (peer == self_) continue;
        Member& member = members_.emplace_back();
        member.address = peer;
    }
}

Member* Membership::find(const std::string& address) {
    for (Member& member : members_)
        if (member.address == address) return &member;
    return nullptr;
}

void Membership::set_state(Member& member, MemberState state, int64_t now_ms) {
    if (member.state == state) return;
    // Every edge between the three states is allowed: SWIM moves Alive -> Suspect -> Dead,
    // refutation or a new boot moves back to Alive, and a Dead update may skip suspicion.
    PGPLEX_ASSERT(&member >= members_.data() && &member < members_.data() + members_.size());
    if (state == MemberState::Suspect) member.suspect_ms = now_ms;
    member.state = state;
}

void Membership::enqueue(Record record) {
    size_t n = members_.size() + 1;
    uint64_t times = retransmit_lambda * uint64_t(std::ceil(std::log2(double(n) + 1)));
    for (Update& update : updates_) {
        if (update.record.address == record.address) {
            update = Update{std::move(record), times};
            return;
        }
    }
    updates_.push_back(Update{std::move(record), times});
}

void Membership::announce(const Member& member) {
    enqueue(member_record(member.address, member.state, member.incarnation, member.boot));
}

void Membership::heard(const Header& header, int64_t now_ms) {
    Member* member = find(header.sender);
    if (member == nullptr) return;
    member->heard_ms = now_ms;
    bool newer_boot = header.boot > member->boot;
    bool newer_incarnation = header.incarnation > member->incarnation;
    if (!newer_boot && !newer_incarnation) return;
    // A restarted appliance or one that refuted its suspicion: alive at what it says.
    member->boot = header.boot;
    member->incarnation = header.incarnation;
    set_state(*member, MemberState::Alive, now_ms);
    announce(*member);
}

void Membership::refute(const Record& update) {
    if (update.state == MemberState::Alive) return;
    if (update.boot != 0 && update.boot < boot_) return;  // about our previous life
    if (update.incarnation < incarnation_) return;
    incarnation_ = update.incarnation + 1;
    enqueue(member_record(self_, MemberState::Alive, incarnation_, boot_));
}

void Membership::apply(const Record& update, int64_t now_ms) {
    if (update.address == self_) {
        refute(update);
        return;
    }
    Member* member = find(update.address);
    if (member == nullptr || update.boot < member->boot) return;
    bool newer_boot = update.boot > member->boot;
    if (!newer_boot && !overrides(*member, update.state, update.incarnation)) return;
    member->boot = update.boot;
    member->incarnation = update.incarnation;
    set_state(*member, update.state, now_ms);
    announce(*member);
}

void Membership::on_record(const std::string& from, const Record& record, int64_t now_ms,
                           Outbox& outbox) {
    switch (record.kind) {
        case RecordKind::Ping:
            if (record.address == self_)
                outbox.send(from, probe_record(RecordKind::Ack, record.id, self_));
            return;
        case RecordKind::Ack:
            on_ack(record, outbox);
            return;
        case RecordKind::PingReq: {
            if (find(record.address) == nullptr) return;
            uint64_t id = next_id_++;
            relays_.push_back(
                Relay{id, from, record.id, record.address, now_ms + settings_.probe_interval_ms});
            outbox.send(record.address, probe_record(RecordKind::Ping, id, record.address));
            return;
        }
        case RecordKind::Member:
            apply(record, now_ms);
            return;
        case RecordKind::View:
        case RecordKind::State:
        case RecordKind::Prepare:
        case RecordKind::Promise:
        case RecordKind::Accept:
        case RecordKind::Accepted:
        case RecordKind::Reject:
        case RecordKind::LeaseRequest:
        case RecordKind::LeaseGrant:
        case RecordKind::Cancel:
        case RecordKind::Demand:
            return;  // the decider's or the engine's
    }
}

void Membership::on_ack(const Record& record, Outbox& outbox) {
    if (probe_ != ProbeState::Idle && record.id == probe_id_ && record.address == target_) {
        set_probe(ProbeState::Idle);
        return;
    }
    for (size_t i = 0; i < relays_.size(); ++i) {
        if (relays_[i].id != record.id || relays_[i].target != record.address) continue;
        outbox.send(relays_[i].origin,
                    probe_record(RecordKind::Ack, relays_[i].origin_id, record.address));
        relays_.erase(relays_.begin() + long(i));
        return;
    }
}

void Membership::set_probe(ProbeState state) {
    switch (state) {
        case ProbeState::Idle:
            break;  // from any: acked, or the period ended
        case ProbeState::Direct:
            PGPLEX_ASSERT(probe_ == ProbeState::Idle);
            break;
        case ProbeState::Indirect:
            PGPLEX_ASSERT(probe_ == ProbeState::Direct);
            break;
    }
    probe_ = state;
}

void Membership::start_probe(int64_t now_ms, Rng& rng, Outbox& outbox) {
    period_ms_ = now_ms;
    if (members_.empty()) return;
    if (order_at_ >= order_.size()) {
        order_.resize(members_.size());
        for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
        for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng.below(i)]);
        order_at_ = 0;
    }
    target_ = members_[order_[order_at_++]].address;
    probe_id_ = next_id_++;
    set_probe(ProbeState::Direct);
    outbox.send(target_, probe_record(RecordKind::Ping, probe_id_, target_));
}

void Membership::go_indirect(Rng& rng, Outbox& outbox) {
    set_probe(ProbeState::Indirect);
    std::vector<std::string> helpers;
    for (const std::string& address : reachable())
        if (address != target_) helpers.push_back(address);
    for (size_t sent = 0; sent < indirect_probes && !helpers.empty(); ++sent) {
        size_t pick = rng.below(helpers.size());
        outbox.send(helpers[pick], probe_record(RecordKind::PingReq, probe_id_, target_));
        helpers.erase(helpers.begin() + long(pick));
    }
}

// The period ends: a target that never answered becomes Suspect (a Dead one stays Dead).
void Membership::end_period(int64_t now_ms) {
    if (probe_ == ProbeState::Idle) return;
    set_probe(ProbeState::Idle);
    Member* member = find(target_);
    if (member == nullptr || member->state != MemberState::Alive) return;
    set_state(*member, MemberState::Suspect, now_ms);
    announce(*member);
}

void Membership::tick(int64_t now_ms, Rng& rng, Outbox& outbox) {
    std::erase_if(relays_, [&](const Relay& relay) { return relay.until_ms <= now_ms; });
    for (Member& member : members_) {
        if (member.state != MemberState::Suspect) continue;
        if (now_ms - member.suspect_ms < settings_.suspect_timeout_ms) continue;
        set_state(member, MemberState::Dead, now_ms);
        announce(member);
    }
    if (probe_ == ProbeState::Direct && now_ms - period_ms_ >= settings_.probe_timeout_ms)
        go_indirect(rng, outbox);
    if (now_ms - period_ms_ < settings_.probe_interval_ms) return;
    end_period(now_ms);
    start_probe(now_ms, rng, outbox);
}

void Membership::piggyback(const std::string& to, size_t& room, std::vector<Record>& out) {
    // The receiver first learns what we believe of it, so a Suspect or Dead verdict reaches
    // it (and it refutes) as soon as it can hear us.
    Member* target = find(to);
    if (target != nullptr && target->state != MemberState::Alive) {
        Record record = member_record(to, target->state, target->incarnation, target->boot);
        size_t size = record_size(record);
        if (size <= room) {
            room -= size;
            out.push_back(std::move(record));
        }
    }
    std::stable_sort(updates_.begin(), updates_.end(),
                     [](const Update& a, const Update& b) { return a.left > b.left; });
    for (Update& update : updates_) {
        size_t size = record_size(update.record);
        if (size > room) continue;
        room -= size;
        out.push_back(update.record);
        --update.left;
    }
    std::erase_if(updates_, [](const Update& update) { return update.left == 0; });
}

std::vector<std::string> Membership::reachable() const {
    std::vector<std::string> out;
    for (const Member& member : members_)
        if (member.state != MemberState::Dead) out.push_back(member.address);
    return out;
}

bool Membership::quorum(int64_t now_ms) const {
    size_t count = 1;  // self
    for (const Member& member : members_) {
        bool recent =
            member.heard_ms >= 0 && now_ms - member.heard_ms <= settings_.suspect_timeout_ms;
        if (member.state != MemberState::Dead && recent) ++count;
    }
    return count >= majority_of(members_.size() + 1);
}

std::vector<MemberRow> Membership::rows() const {
    std::vector<MemberRow> rows;
    rows.push_back(MemberRow{self_, true, MemberState::Alive, incarnation_, -1});
    for (const Member& member : members_)
        rows.push_back(
            MemberRow{member.address, false, member.state, member.incarnation, member.heard_ms});
    return rows;
}

}  // namespace pgplex::gossip
