// What pgplex says to etcd's JSON gateway and how it reads the answers (dcs/etcd_codec.h,
// dcs/json.h): answers captured from a real etcd 3.4 are read, error answers carry etcd's
// message, malformed ones are refused, keys and values travel base64 encoded.
#include <criterion/criterion.h>

#include <map>
#include <string>
#include <vector>

#include "pgplex/dcs/etcd_codec.h"
#include "pgplex/dcs/json.h"

using namespace pgplex::dcs;

Test(etcd_codec, base64_round_trips_and_refuses_what_is_not_canonical) {
    for (const std::string& text : std::vector<std::string>{
             "", "a", "ab", "abc", "/pgplex/clusters/main", std::string(1, 0)}) {
        std::string back;
        cr_assert(base64_decode(base64_encode(text), back));
        cr_assert(back == text);
    }
    std::string encoded = base64_encode("/pgplex/clusters/main");
    cr_assert_str_eq(encoded.c_str(), "L3BncGxleC9jbHVzdGVycy9tYWlu");
    std::string out;
    cr_assert_not(base64_decode("QR==", out), "pad bits set");
    cr_assert_not(base64_decode("QQ=", out), "length not a multiple of 4");
    cr_assert_not(base64_decode("Q=Q=", out), "padding inside");
    cr_assert_not(base64_decode("QQ!!", out));
}

Test(etcd_codec, a_range_answer_of_etcd_gives_each_clusters_decision) {
    std::string value = decision_value({7, "127.0.0.2:5432", "127.0.0.1:7946", 0});
    std::string body =
        R"({"header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"2"},"kvs":[)"
        R"({"key":")" +
        base64_encode("/pgplex/clusters/main") +
        R"(","create_revision":"2","mod_revision":"9","version":"3","value":")" +
        base64_encode(value) + R"("},{"key":")" + base64_encode("/pgplex/clusters/junk") +
        R"(","mod_revision":"4","value":")" + base64_encode("not json") + R"("}],"count":"2"})";
    std::map<std::string, StoredDecision> stored;
    std::string skipped, reason;
    cr_assert(parse_range(body, "/pgplex", stored, skipped, reason), "%s", reason.c_str());
    cr_assert_eq(stored.size(), 2u);
    cr_assert_eq(stored["junk"].epoch, 0u, "unreadable: confirms nothing");
    cr_assert_eq(stored["junk"].revision, 4, "but its revision lets a proposal replace it");
    const StoredDecision& main = stored["main"];
    cr_assert_eq(main.epoch, 7u);
    cr_assert_eq(main.revision, 9);
    cr_assert_str_eq(main.primary.c_str(), "127.0.0.2:5432");
    cr_assert_str_eq(main.by.c_str(), "127.0.0.1:7946");
    cr_assert_str_eq(skipped.c_str(), "/pgplex/clusters/junk");
    // Nothing stored: etcd leaves kvs out.
    cr_assert(parse_range(R"({"header":{"revision":"1"}})", "/pgplex", stored, skipped, reason));
    cr_assert(stored.empty());
}

Test(etcd_codec, leases_transactions_and_errors_read_as_etcd_writes_them) {
    int64_t lease = 0, ttl = 0;
    std::string reason;
    cr_assert(parse_lease(R"({"header":{"revision":"1"},"ID":"994629570853281797","TTL":"2"})",
                          lease, ttl, reason));
    cr_assert_eq(lease, 994629570853281797);
    cr_assert_eq(ttl, 2);
    cr_assert(
        parse_lease(R"({"result":{"header":{"revision":"1"},"ID":"12345"}})", lease, ttl, reason));
    cr_assert_eq(ttl, 0, "a keepalive of an expired lease has no TTL");
    bool succeeded = true;
    cr_assert(parse_txn(R"({"header":{"revision":"2"}})", succeeded, reason));
    cr_assert_not(succeeded);
    cr_assert(parse_txn(R"({"header":{"revision":"2"},"succeeded":true})", succeeded, reason));
    cr_assert(succeeded);
    std::string refusal = R"({"error":"etcdserver: user name is empty",)"
                          R"("message":"etcdserver: user name is empty","code":3})";
    cr_assert_not(parse_txn(refusal, succeeded, reason));
    cr_assert_str_eq(reason.c_str(), "etcdserver: user name is empty");
    cr_assert_not(parse_txn("<html>", succeeded, reason));
    std::string token;
    cr_assert(parse_authenticate(R"({"header":{},"token":"abc.123"})", token, reason));
    cr_assert_str_eq(token.c_str(), "abc.123");
}

Test(etcd_codec, a_compare_and_swap_compares_the_mod_revision) {
    std::string body = cas_request("/pgplex/clusters/main", 0, "v");
    Json json;
    std::string reason;
    cr_assert(parse_json(body, json, reason), "%s", reason.c_str());
    const Json& compare = json.get("compare")->items.at(0);
    cr_assert_str_eq(compare.get("target")->text.c_str(), "MOD");
    cr_assert_str_eq(compare.get("mod_revision")->text.c_str(), "0");
    std::string key = base64_encode("/pgplex/clusters/main");
    cr_assert_str_eq(compare.get("key")->text.c_str(), key.c_str());
    const Json* put = json.get("success")->items.at(0).get("request_put");
    std::string value = base64_encode("v");
    cr_assert_str_eq(put->get("value")->text.c_str(), value.c_str());
    std::string range = range_request("/p");
    std::string expected = "{\"key\":\"" + base64_encode("/p/clusters/") + "\",\"range_end\":\"" +
                           base64_encode("/p/clusters0") + "\"}";
    cr_assert_str_eq(range.c_str(), expected.c_str());
}

Test(etcd_codec, json_strings_decode_escapes_and_bad_documents_are_refused) {
    Json json;
    std::string reason;
    cr_assert(parse_json(R"("a\"\\\/\n\u00e9\ud83d\ude00")", json, reason), "%s", reason.c_str());
    cr_assert_str_eq(json.text.c_str(), "a\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
    for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "\"\\ud800\"", "\"\\udc00\"", "01", "1.",
                            "tru", "{} {}", "\"\x01\""})
        cr_assert_not(parse_json(bad, json, reason), "accepted %s", bad);
    std::string deep(40, '[');
    cr_assert_not(parse_json(deep + std::string(40, ']'), json, reason));
    StoredDecision decision;
    cr_assert_not(parse_decision_value(R"({"epoch":0,"primary":"x"})", decision));
    cr_assert_not(parse_decision_value(R"({"epoch":"3","primary":"x"})", decision));
    cr_assert(parse_decision_value(R"({"epoch":3,"primary":"x","by":"y"})", decision));
    cr_assert(decision == (StoredDecision{3, "x", "y", 0}));
}
