// What pgplex says to etcd's v3 HTTP/JSON gateway and how it reads the answers: pure
// functions, no I/O (the client that sends them is dcs/etcd.h). Keys and values travel base64
// encoded, 64-bit integers as strings (etcd 3.4's gateway, /v3/kv/range, /v3/kv/txn,
// /v3/lease/grant, /v3/lease/keepalive, /v3/auth/authenticate).
//
// The keys, under [dcs] prefix:
//   <prefix>/clusters/<cluster>     {"epoch":N,"primary":"host:port","by":"appliance"}: the
//                                   decision, replaced only by compare-and-swap on its
//                                   mod_revision; never under a lease (epochs must outlive
//                                   every appliance)
//   <prefix>/appliances/<address>   {"appliance":"..."}: this appliance, under its lease
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "pgplex/base/base64.h"
#include "pgplex/dcs/store.h"

namespace pgplex::dcs {

using base::base64_decode;  // etcd's keys and values travel in base64
using base::base64_encode;

std::string cluster_key(std::string_view prefix, std::string_view cluster);
std::string appliance_key(std::string_view prefix, std::string_view appliance);

// The decision's value, as stored (epoch, primary, by; revision is etcd's, not stored).
std::string decision_value(const StoredDecision& decision);
bool parse_decision_value(std::string_view text, StoredDecision& out);

// Request bodies.
std::string range_request(std::string_view prefix);  // every <prefix>/clusters/ key
std::string cas_request(std::string_view key, int64_t expected_revision, std::string_view value);
std::string put_request(std::string_view key, std::string_view value, int64_t lease);
std::string grant_request(int64_t ttl_s);
std::string keepalive_request(int64_t lease);
std::string authenticate_request(std::string_view name, std::string_view password);

// Answers. Each returns false with `reason` for an answer it cannot read, or an error answer
// ({"error": ..., "code": N}), whose message goes into reason.
// /v3/kv/range of range_request(prefix): every decision stored, by cluster name. A key whose
// value cannot be read is named in `skipped` and given as epoch 0 with its revision.
bool parse_range(std::string_view body, std::string_view prefix,
                 std::map<std::string, StoredDecision>& out, std::string& skipped,
                 std::string& reason);
// /v3/kv/txn: whether the compare held.
bool parse_txn(std::string_view body, bool& succeeded, std::string& reason);
// /v3/lease/grant and /v3/lease/keepalive (its answer wrapped in "result"): the lease and
// its remaining TTL; ttl_s 0 means the lease is gone.
bool parse_lease(std::string_view body, int64_t& lease, int64_t& ttl_s, std::string& reason);
// /v3/auth/authenticate: the token to send as the Authorization header.
bool parse_authenticate(std::string_view body, std::string& token, std::string& reason);

}  // namespace pgplex::dcs
