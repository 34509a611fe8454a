// SWIM membership (gossip/membership.h): a silent member is suspected, then declared dead;
// a member refutes suspicion of itself by raising its incarnation; a dead member that comes
// back (newer boot or higher incarnation) is alive again.
#include <criterion/criterion.h>

#include "harness.h"
#include "pgplex/gossip/membership.h"

using namespace pgplex::gossip;
using gossip_test::Net;

namespace {

Settings settings_of(const char* self) {
    Settings settings;
    settings.self = self;
    settings.peers = {"a:1", "b:1", "c:1"};
    settings.key.assign(32, 1);
    return settings;
}

const MemberRow& row(const std::vector<MemberRow>& rows, const std::string& address) {
    for (const MemberRow& r : rows)
        if (r.address == address) return r;
    cr_assert_fail("no row for %s", address.c_str());
    return rows.front();
}

Record update(const char* address, MemberState state, uint64_t incarnation, uint64_t boot) {
    Record record;
    record.kind = RecordKind::Member;
    record.address = address;
    record.state = state;
    record.incarnation = incarnation;
    record.boot = boot;
    return record;
}

}  // namespace

Test(gossip_membership, silent_member_is_suspected_then_dead) {
    Net net(3, false);
    net.run(3000);
    for (const MemberRow& r : net.engines[0]->members()) cr_assert_eq(r.state, MemberState::Alive);
    net.isolate(2);
    bool suspected = false;
    for (int i = 0; i < 600 && !suspected; ++i) {
        net.run(10);
        suspected = row(net.engines[0]->members(), net.addresses[2]).state != MemberState::Alive;
    }
    cr_assert(suspected, "never suspected");
    cr_assert_eq(row(net.engines[0]->members(), net.addresses[2]).state, MemberState::Suspect);
    net.run(2500);  // suspect_timeout_ms = 2000
    cr_assert_eq(row(net.engines[0]->members(), net.addresses[2]).state, MemberState::Dead);
    cr_assert_eq(row(net.engines[1]->members(), net.addresses[2]).state, MemberState::Dead);
    cr_assert(net.engines[0]->quorum(net.now));
    cr_assert_not(net.engines[2]->quorum(net.now));
}

Test(gossip_membership, dead_member_that_comes_back_is_alive) {
    Net net(3, false);
    net.run(2000);
    net.isolate(2);
    net.run(8000);
    cr_assert_eq(row(net.engines[0]->members(), net.addresses[2]).state, MemberState::Dead);
    net.cut.clear();
    net.run(3000);
    MemberRow back = row(net.engines[0]->members(), net.addresses[2]);
    cr_assert_eq(back.state, MemberState::Alive);
    cr_assert_gt(back.incarnation, 0u, "it refuted by raising its incarnation");
}

Test(gossip_membership, suspicion_of_self_is_refuted_with_a_higher_incarnation) {
    Settings settings = settings_of("b:1");
    Membership membership(settings, 50, 0);
    Outbox outbox;
    membership.on_record("a:1", update("b:1", MemberState::Suspect, 0, 50), 10, outbox);
    cr_assert_eq(membership.incarnation(), 1u);
    std::vector<Record> out;
    size_t room = 1000;
    membership.piggyback("a:1", room, out);
    bool announced = false;
    for (const Record& r : out)
        announced |= r.address == "b:1" && r.state == MemberState::Alive && r.incarnation == 1;
    cr_assert(announced);
    // A suspicion of an older incarnation, or of our previous boot, changes nothing.
    membership.on_record("a:1", update("b:1", MemberState::Dead, 0, 50), 20, outbox);
    membership.on_record("a:1", update("b:1", MemberState::Dead, 5, 49), 20, outbox);
    cr_assert_eq(membership.incarnation(), 1u);
}

Test(gossip_membership, newer_boot_brings_a_dead_member_back) {
    Settings settings = settings_of("a:1");
    Membership membership(settings, 50, 0);
    Outbox outbox;
    membership.on_record("c:1", update("b:1", MemberState::Dead, 3, 40), 10, outbox);
    cr_assert_eq(row(membership.rows(), "b:1").state, MemberState::Dead);
    // An Alive at the same incarnation does not override Dead...
    membership.on_record("c:1", update("b:1", MemberState::Alive, 3, 40), 20, outbox);
    cr_assert_eq(row(membership.rows(), "b:1").state, MemberState::Dead);
    // ...but the restarted appliance's own datagram (newer boot) does.
    membership.heard(Header{"b:1", "a:1", 41, 1, 0}, 30);
    cr_assert_eq(row(membership.rows(), "b:1").state, MemberState::Alive);
    cr_assert_eq(row(membership.rows(), "b:1").heard_ms, 30);
}

Test(gossip_membership, datagram_to_an_earlier_life_is_refused_after_a_restart) {
    Net net(3, false);
    net.run(2000);
    // Capture what appliance 0 sends to appliance 1, then appliance 1 restarts.
    std::vector<std::vector<uint8_t>> captured;
    for (int i = 0; i < 100 && captured.empty(); ++i) {
        net.run(10);
        for (const auto& flight : net.flying)
            if (flight.from == 0 && flight.to == 1) captured.push_back(flight.bytes);
    }
    cr_assert_not(captured.empty());
    net.restart(1, 5000);
    net.engines[1]->receive(net.addresses[0], captured[0], net.now);
    Counters counters = net.engines[1]->counters();
    cr_assert_eq(counters.replayed, 1u);
    cr_assert_eq(counters.received, 0u);
    // Once appliance 0 hears the new life, its datagrams name it and are accepted.
    net.run(2000);
    cr_assert_gt(net.engines[1]->counters().received, 0u);
    for (const MemberRow& r : net.engines[0]->members()) cr_assert_eq(r.state, MemberState::Alive);
}
