// One acceptor (gossip/decider.h) fed hand-built Paxos and lease records: two proposers
// meet in one epoch and the later one is forced to the value already accepted; a promise for
// a newer epoch waits out the last lease grant (lease_ms + 10%) and stops further grants; a
// restarted appliance votes and grants nothing for one lease; a proposal from an appliance
// that has not learned the latest chosen epoch is ignored.
#include <criterion/criterion.h>

#include "pgplex/gossip/decider.h"

using namespace pgplex::gossip;

namespace {

Settings settings_of(const char* self) {
    Settings settings;
    settings.self = self;
    settings.peers = {"a:1", "b:1", "c:1"};
    settings.key.assign(32, 1);
    settings.clusters.push_back({"main", false, -1});
    return settings;
}

Record paxos(RecordKind kind, uint64_t epoch, Ballot ballot, const char* node = "") {
    Record record;
    record.kind = kind;
    record.cluster = "main";
    record.epoch = epoch;
    record.ballot = std::move(ballot);
    record.node = node;
    return record;
}

// The one reply the acceptor sent, or a record of kind Ping when it sent nothing.
Record reply(Outbox& outbox, const char* to) {
    Record none;
    for (auto& [address, record] : outbox.items)
        if (address == to && record.kind != RecordKind::LeaseRequest) none = record;
    outbox.items.clear();
    return none;
}

struct Acceptor {
    Settings settings = settings_of("b:1");
    Decider decider{settings, 10, 0};
    Rng rng{1};
    Outbox outbox;
    // Past the quiet period after boot, having heard both peers: it takes part.
    Acceptor() { tick(2000); }
    void tick(int64_t now) { decider.tick(now, 2, {"a:1", "c:1"}, rng, outbox); }
    Record send(const char* from, const Record& record, int64_t now) {
        decider.on_record(from, record, now, outbox);
        return reply(outbox, from);
    }
};

}  // namespace

Test(gossip_paxos, later_proposer_is_forced_to_the_accepted_value) {
    Acceptor b;
    Ballot a1{1, "a:1"}, c1{1, "c:1"}, a2{2, "a:1"};
    cr_assert_eq(b.send("a:1", paxos(RecordKind::Prepare, 1, a1), 2100).kind, RecordKind::Promise);
    cr_assert_eq(b.send("c:1", paxos(RecordKind::Prepare, 1, c1), 2110).kind, RecordKind::Promise);
    // a's Accept comes after b promised c's higher ballot: refused.
    Record refused = b.send("a:1", paxos(RecordKind::Accept, 1, a1, "db1:5432"), 2120);
    cr_assert_eq(refused.kind, RecordKind::Reject);
    cr_assert(refused.accepted == c1);
    Record accepted = b.send("c:1", paxos(RecordKind::Accept, 1, c1, "db2:5432"), 2130);
    cr_assert_eq(accepted.kind, RecordKind::Accepted);
    cr_assert_str_eq(accepted.node.c_str(), "db2:5432");
    // a tries again with a higher round: the promise carries db2, which a must propose.
    Record promise = b.send("a:1", paxos(RecordKind::Prepare, 1, a2), 2140);
    cr_assert_eq(promise.kind, RecordKind::Promise);
    cr_assert(promise.accepted == c1);
    cr_assert_str_eq(promise.node.c_str(), "db2:5432");
}

Test(gossip_paxos, promise_waits_out_the_last_lease_grant) {
    Acceptor b;
    Record state;
    state.kind = RecordKind::State;
    state.cluster = "main";
    state.epoch = 5;
    state.node = "db0:5432";
    b.decider.on_record("a:1", state, 2100, b.outbox);
    Record request = paxos(RecordKind::LeaseRequest, 5, {}, "db0:5432");
    request.id = 77;
    Record grant = b.send("a:1", request, 3000);
    cr_assert_eq(grant.kind, RecordKind::LeaseGrant);
    cr_assert_eq(grant.id, 77u);
    Record prepare = paxos(RecordKind::Prepare, 6, Ballot{1, "c:1"});
    prepare.id = 5;
    cr_assert_eq(b.send("c:1", prepare, 3100).kind, RecordKind::Ping, "answered at once");
    // Fenced: no more grants on epoch 5.
    cr_assert_eq(b.send("a:1", request, 3200).kind, RecordKind::Ping, "granted after a Prepare");
    b.tick(3000 + 1099);
    cr_assert_eq(reply(b.outbox, "c:1").kind, RecordKind::Ping, "answered before lease + 10%");
    b.tick(3000 + 1100);
    cr_assert_eq(reply(b.outbox, "c:1").kind, RecordKind::Promise);
}

Test(gossip_paxos, restarted_appliance_votes_nothing_for_a_lease) {
    Settings settings = settings_of("b:1");
    Decider b(settings, 10, 0);
    Rng rng(1);
    Outbox outbox;
    Record prepare = paxos(RecordKind::Prepare, 3, Ballot{1, "a:1"});
    b.tick(500, 2, {"a:1", "c:1"}, rng, outbox);
    b.on_record("a:1", prepare, 500, outbox);
    cr_assert_eq(reply(outbox, "a:1").kind, RecordKind::Ping, "voted during the quiet period");
    // After the quiet period it has seen epoch 3 named: it may have voted there before.
    b.tick(1200, 2, {"a:1", "c:1"}, rng, outbox);
    prepare.ballot.round = 2;
    b.on_record("a:1", prepare, 1200, outbox);
    cr_assert_eq(reply(outbox, "a:1").kind, RecordKind::Ping, "voted again in epoch 3");
    Record next = paxos(RecordKind::Prepare, 4, Ballot{1, "a:1"});
    b.on_record("a:1", next, 1210, outbox);
    cr_assert_eq(reply(outbox, "a:1").kind, RecordKind::Promise);
}

Test(gossip_paxos, proposal_without_the_latest_epoch_is_ignored) {
    Acceptor b;
    Record state;
    state.kind = RecordKind::State;
    state.cluster = "main";
    state.epoch = 5;
    state.node = "db0:5432";
    b.decider.on_record("a:1", state, 2100, b.outbox);
    Record stale = paxos(RecordKind::Prepare, 6, Ballot{1, "c:1"});
    stale.id = 4;  // c has not learned epoch 5
    cr_assert_eq(b.send("c:1", stale, 2200).kind, RecordKind::Ping);
    cr_assert_eq(b.decider.find("main")->fence, 0u, "a stale proposal raised the fence");
}
