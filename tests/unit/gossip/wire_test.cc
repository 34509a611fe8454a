// The gossip datagram (gossip/wire.h): what is sent comes back identical, and anything
// tampered with, cut short, replayed or from an older boot is refused.
#include <criterion/criterion.h>

#include <cstdint>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pgplex/gossip/wire.h"

using namespace pgplex::gossip;

namespace {

const std::vector<uint8_t> key(32, 0x11);

Header header() {
    return Header{"10.0.0.1:7946", "10.0.0.2:7946", 1700000000000000, 7, 3, 99};
}

std::vector<Record> records() {
    std::vector<Record> out;
    Record ping;
    ping.kind = RecordKind::Ping;
    ping.id = 42;
    ping.address = "10.0.0.2:7946";
    out.push_back(ping);
    Record view;
    view.kind = RecordKind::View;
    view.address = "10.0.0.3:7946";
    view.cluster = "main";
    view.age_ms = 150;
    view.nodes = {NodeView{"db0:5432", true, pgplex::cluster::Role::Primary, 900, 1000},
                  NodeView{"db1:5432", false, pgplex::cluster::Role::Replica, 800, 0}};
    out.push_back(view);
    Record promise;
    promise.kind = RecordKind::Promise;
    promise.cluster = "main";
    promise.epoch = 5;
    promise.ballot = Ballot{2, "10.0.0.1:7946"};
    promise.accepted = Ballot{1, "10.0.0.3:7946"};
    promise.node = "db1:5432";
    out.push_back(promise);
    Record member;
    member.kind = RecordKind::Member;
    member.address = "10.0.0.3:7946";
    member.state = MemberState::Suspect;
    member.incarnation = 9;
    member.boot = 77;
    out.push_back(member);
    Record demand;
    demand.kind = RecordKind::Demand;
    demand.node = "db1:5432";
    demand.id = 12;    // servers held
    demand.epoch = 3;  // clients waiting
    demand.boot = 4;   // its limit
    out.push_back(demand);
    return out;
}

std::vector<uint8_t> sealed() {
    std::vector<uint8_t> bytes;
    std::vector<Record> list = records();
    cr_assert(encode(header(), list, key, bytes));
    return bytes;
}

}  // namespace

Test(gossip_wire, datagram_round_trips) {
    std::vector<uint8_t> bytes = sealed();
    Header got;
    std::vector<Record> list;
    cr_assert_eq(decode(bytes, key, got, list), DecodeResult::Ok);
    cr_assert(got == header());
    cr_assert(list == records());
}

Test(gossip_wire, flipped_byte_or_other_key_is_forged) {
    std::vector<uint8_t> bytes = sealed();
    Header got;
    std::vector<Record> list;
    for (size_t at = 0; at < bytes.size(); at += 7) {
        std::vector<uint8_t> copy = bytes;
        copy[at] ^= 0x40;
        cr_assert_eq(decode(copy, key, got, list), DecodeResult::Forged, "byte %zu", at);
    }
    std::vector<uint8_t> other(32, 0x12);
    cr_assert_eq(decode(bytes, other, got, list), DecodeResult::Forged);
}

Test(gossip_wire, truncated_datagram_is_refused) {
    std::vector<uint8_t> bytes = sealed();
    Header got;
    std::vector<Record> list;
    for (size_t size = 0; size < bytes.size(); ++size) {
        std::span<const uint8_t> cut(bytes.data(), size);
        cr_assert_neq(decode(cut, key, got, list), DecodeResult::Ok, "size %zu", size);
    }
}

Test(gossip_wire, authentic_but_unreadable_is_malformed) {
    // A record count larger than the records present, sealed with the right key.
    std::vector<uint8_t> bytes = sealed();
    bytes.resize(bytes.size() - mac_bytes);
    size_t count_at = 4 + 1 + 1 + 13 + 1 + 13 + 32;
    bytes[count_at + 1] += 1;
    bytes.resize(bytes.size() + mac_bytes);
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), int(key.size()), bytes.data(), bytes.size() - mac_bytes,
         bytes.data() + bytes.size() - mac_bytes, &length);
    Header got;
    std::vector<Record> list;
    cr_assert_eq(decode(bytes, key, got, list), DecodeResult::Malformed);
    cr_assert(list.empty());
}

Test(gossip_wire, oversized_datagram_is_not_encoded) {
    Record view;
    view.kind = RecordKind::View;
    view.cluster = "main";
    for (int i = 0; i < 60; ++i)
        view.nodes.push_back(NodeView{std::string(200, 'n'), true, {}, 0, 0});
    std::vector<Record> list = {view};
    std::vector<uint8_t> bytes;
    cr_assert_not(encode(header(), list, key, bytes));
    cr_assert(bytes.empty());
}

Test(gossip_wire, replay_window_refuses_repeats_and_the_too_old) {
    ReplayGuard guard;
    cr_assert_eq(guard.check(10, 1), ReplayGuard::Verdict::Fresh);
    guard.accept(10, 1);
    cr_assert_eq(guard.check(10, 1), ReplayGuard::Verdict::Replayed);
    guard.accept(10, 100);
    cr_assert_eq(guard.check(10, 99), ReplayGuard::Verdict::Fresh);  // reordered, in window
    guard.accept(10, 99);
    cr_assert_eq(guard.check(10, 99), ReplayGuard::Verdict::Replayed);
    cr_assert_eq(guard.check(10, 100 - replay_window), ReplayGuard::Verdict::Replayed);
    cr_assert_eq(guard.check(10, 100 - replay_window + 1), ReplayGuard::Verdict::Fresh);
}

Test(gossip_wire, newer_boot_resets_and_older_boot_is_refused) {
    ReplayGuard guard;
    guard.accept(10, 500);
    cr_assert_eq(guard.check(11, 1), ReplayGuard::Verdict::Fresh);  // restarted sender
    guard.accept(11, 1);
    cr_assert_eq(guard.check(10, 501), ReplayGuard::Verdict::OldBoot);
    cr_assert_eq(guard.boot(), 11u);
}
