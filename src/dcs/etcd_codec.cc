// See dcs/etcd_codec.h.
#include "pgplex/dcs/etcd_codec.h"

#include "pgplex/dcs/json.h"

namespace pgplex::dcs {

namespace {

// The answer as JSON, or false with etcd's own message when it is an error answer.
bool answer(std::string_view body, Json& out, std::string& reason) {
    if (!parse_json(body, out, reason)) {
        reason = "unreadable answer: " + reason;
        return false;
    }
    if (out.kind != Json::Kind::Object) {
        reason = "the answer is not an object";
        return false;
    }
    const Json* error = out.get("error");
    if (error == nullptr) error = out.get("message");
    if (error != nullptr) {
        reason = error->kind == Json::Kind::String ? error->text : "an error answer";
        return false;
    }
    return true;
}

std::string_view text_of(const Json* json) {
    return json != nullptr && json->kind == Json::Kind::String ? std::string_view(json->text)
                                                               : std::string_view();
}

}  // namespace

std::string cluster_key(std::string_view prefix, std::string_view cluster) {
    return std::string(prefix) + "/clusters/" + std::string(cluster);
}

std::string appliance_key(std::string_view prefix, std::string_view appliance) {
    return std::string(prefix) + "/appliances/" + std::string(appliance);
}

std::string decision_value(const StoredDecision& decision) {
    return "{\"epoch\":" + std::to_string(decision.epoch) +
           ",\"primary\":" + json_quote(decision.primary) + ",\"by\":" + json_quote(decision.by) +
           "}";
}

bool parse_decision_value(std::string_view text, StoredDecision& out) {
    Json json;
    std::string reason;
    if (!parse_json(text, json, reason) || json.kind != Json::Kind::Object) return false;
    const Json* epoch = json.get("epoch");
    int64_t number = 0;
    if (epoch == nullptr || epoch->kind != Json::Kind::Number || !epoch->integer(number) ||
        number <= 0)
        return false;
    const Json* primary = json.get("primary");
    const Json* by = json.get("by");
    if (primary == nullptr || primary->kind != Json::Kind::String || primary->text.empty())
        return false;
    out.epoch = uint64_t(number);
    out.primary = primary->text;
    out.by = std::string(text_of(by));
    return true;
}

std::string range_request(std::string_view prefix) {
    std::string first = std::string(prefix) + "/clusters/";
    std::string end = first;
    end.back() = char(end.back() + 1);  // '/' + 1: every key that starts with `first`
    return "{\"key\":\"" + base64_encode(first) + "\",\"range_end\":\"" + base64_encode(end) +
           "\"}";
}

std::string cas_request(std::string_view key, int64_t expected_revision, std::string_view value) {
    std::string k = base64_encode(key);
    return "{\"compare\":[{\"target\":\"MOD\",\"result\":\"EQUAL\",\"key\":\"" + k +
           "\",\"mod_revision\":\"" + std::to_string(expected_revision) +
           "\"}],\"success\":[{\"request_put\":{\"key\":\"" + k + "\",\"value\":\"" +
           base64_encode(value) + "\"}}]}";
}

std::string put_request(std::string_view key, std::string_view value, int64_t lease) {
    return "{\"key\":\"" + base64_encode(key) + "\",\"value\":\"" + base64_encode(value) +
           "\",\"lease\":\"" + std::to_string(lease) + "\"}";
}

std::string grant_request(int64_t ttl_s) {
    return "{\"TTL\":\"" + std::to_string(ttl_s) + "\"}";
}

std::string keepalive_request(int64_t lease) {
    return "{\"ID\":\"" + std::to_string(lease) + "\"}";
}

std::string authenticate_request(std::string_view name, std::string_view password) {
    return "{\"name\":" + json_quote(name) + ",\"password\":" + json_quote(password) + "}";
}

bool parse_range(std::string_view body, std::string_view prefix,
                 std::map<std::string, StoredDecision>& out, std::string& skipped,
                 std::string& reason) {
    out.clear();
    skipped.clear();
    Json json;
    if (!answer(body, json, reason)) return false;
    const Json* kvs = json.get("kvs");
    if (kvs == nullptr) return true;  // nothing stored: etcd leaves the field out
    if (kvs->kind != Json::Kind::Array) return reason = "kvs is not an array", false;
    std::string first = std::string(prefix) + "/clusters/";
    for (const Json& kv : kvs->items) {
        std::string key, value;
        int64_t revision = 0;
        const Json* mod = kv.get("mod_revision");
        if (!base64_decode(text_of(kv.get("key")), key) ||
            !base64_decode(text_of(kv.get("value")), value) || mod == nullptr ||
            !mod->integer(revision) || revision <= 0)
            return reason = "a key-value pair without key, value or mod_revision", false;
        if (!key.starts_with(first) || key.size() == first.size()) continue;
        StoredDecision decision;
        std::string cluster = key.substr(first.size());
        if (!parse_decision_value(value, decision)) {
            // Kept as epoch 0 with its revision: it confirms nothing, and a proposal may
            // replace it (comparing that revision) rather than fail against it for ever.
            decision = StoredDecision{};
            skipped += skipped.empty() ? key : ", " + key;
        }
        decision.revision = revision;
        out[cluster] = std::move(decision);
    }
    return true;
}

bool parse_txn(std::string_view body, bool& succeeded, std::string& reason) {
    Json json;
    if (!answer(body, json, reason)) return false;
    if (json.get("header") == nullptr) return reason = "no header in the answer", false;
    const Json* flag = json.get("succeeded");
    succeeded = flag != nullptr && flag->kind == Json::Kind::Bool && flag->boolean;
    return true;
}

bool parse_lease(std::string_view body, int64_t& lease, int64_t& ttl_s, std::string& reason) {
    Json json;
    if (!answer(body, json, reason)) return false;
    const Json* result = json.get("result");
    const Json& inner = result != nullptr ? *result : json;
    if (inner.kind != Json::Kind::Object) return reason = "result is not an object", false;
    if (const Json* error = inner.get("error"); error != nullptr)
        return reason = std::string(text_of(error)), false;
    const Json* id = inner.get("ID");
    if (id == nullptr || !id->integer(lease)) return reason = "no lease ID in the answer", false;
    ttl_s = 0;  // left out when the lease is gone
    const Json* ttl = inner.get("TTL");
    if (ttl != nullptr && (!ttl->integer(ttl_s) || ttl_s < 0))
        return reason = "a bad TTL in the answer", false;
    return true;
}

bool parse_authenticate(std::string_view body, std::string& token, std::string& reason) {
    Json json;
    if (!answer(body, json, reason)) return false;
    token = std::string(text_of(json.get("token")));
    if (token.empty()) return reason = "no token in the answer", false;
    return true;
}

}  // namespace pgplex::dcs
