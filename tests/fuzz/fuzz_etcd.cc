// libFuzzer target for what pgplex reads from etcd (dcs/json.h, dcs/etcd_codec.h): any bytes
// as an answer to each request, as a decision value and as base64 give a result or a refusal,
// never a crash; what parses survives a round trip (a decision value written again reads back
// equal, base64 decoded and encoded again is the same text).
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "pgplex/dcs/etcd_codec.h"
#include "pgplex/dcs/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    using namespace pgplex::dcs;
    std::string reason;
    Json json;
    if (parse_json(bytes, json, reason)) {
        int64_t number = 0;
        (void)json.integer(number);
        (void)json.get("kvs");
    }
    std::map<std::string, StoredDecision> stored;
    std::string skipped;
    if (parse_range(bytes, "/pgplex", stored, skipped, reason))
        for (const auto& [cluster, decision] : stored)
            if (decision.revision <= 0) std::abort();
    bool succeeded = false;
    (void)parse_txn(bytes, succeeded, reason);
    int64_t lease = 0, ttl = 0;
    if (parse_lease(bytes, lease, ttl, reason) && ttl < 0) std::abort();
    std::string token;
    if (parse_authenticate(bytes, token, reason) && token.empty()) std::abort();
    StoredDecision decision;
    if (parse_decision_value(bytes, decision)) {
        StoredDecision again;
        if (!parse_decision_value(decision_value(decision), again) || again != decision)
            std::abort();
    }
    std::string decoded;
    if (base64_decode(bytes, decoded) && base64_encode(decoded) != bytes) std::abort();
    return 0;
}
