// See dcs/etcd.h.
#include "pgplex/dcs/etcd.h"

#include <curl/curl.h>

#include <algorithm>
#include <ctime>

#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"
#include "pgplex/dcs/etcd_codec.h"
#include "pgplex/dcs/json.h"

namespace pgplex::dcs {

namespace {

// Requests time out after a quarter of the TTL, within these bounds: a reading must come
// back well inside the time it confirms, and a slow etcd is an unreachable one.
constexpr int64_t request_timeout_ms_min = 250;
constexpr int64_t request_timeout_ms_max = 2000;

int64_t clock_ms() {  // the monitor thread's clock (cluster/monitor.cc), in milliseconds
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

size_t collect(char* data, size_t size, size_t count, void* user) {
    std::string& out = *static_cast<std::string*>(user);
    size_t bytes = size * count;
    if (out.size() + bytes > json_bytes_max) return 0;  // curl fails the transfer
    out.append(data, bytes);
    return bytes;
}

std::once_flag curl_initialized;

// curl calls it while a request runs: non-zero aborts it, so the destructor never waits out
// a request to an etcd that does not answer.
int progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<std::atomic<bool>*>(user)->load(std::memory_order_relaxed) ? 1 : 0;
}

}  // namespace

EtcdStore::EtcdStore(const config::Dcs& settings, std::string self,
                     std::vector<std::string> clusters)
    : settings_(settings), self_(std::move(self)), clusters_(std::move(clusters)) {
    PGPLEX_ASSERT(!settings_.endpoints.empty() && settings_.ttl_s > 0);
    request_timeout_ms_ = std::clamp<int64_t>(settings_.ttl_s * 1000 / 4, request_timeout_ms_min,
                                              request_timeout_ms_max);
    std::call_once(curl_initialized, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    curl_ = curl_easy_init();
    thread_ = std::thread([this] { run(); });
}

EtcdStore::~EtcdStore() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    stopping_.store(true, std::memory_order_relaxed);
    wake_.notify_all();
    thread_.join();
    if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

std::optional<Reading> EtcdStore::reading(std::string_view cluster) const {
    std::lock_guard lock(mutex_);
    auto it = readings_.find(std::string(cluster));
    if (it == readings_.end()) return std::nullopt;
    return it->second;
}

int64_t EtcdStore::lease_until_ms() const {
    std::lock_guard lock(mutex_);
    return lease_until_ms_;
}

bool EtcdStore::reachable() const {
    std::lock_guard lock(mutex_);
    return reachable_;
}

void EtcdStore::propose(std::string_view cluster, int64_t expected_revision,
                        const StoredDecision& next) {
    {
        std::lock_guard lock(mutex_);
        proposals_.push_back(Proposal{std::string(cluster), expected_revision, next});
    }
    wake_.notify_all();
}

// --- the client thread ---------------------------------------------------------------------

bool EtcdStore::post(const std::string& url, const std::string& body, std::string& answer,
                     long& status, std::string& reason) {
    CURL* curl = static_cast<CURL*>(curl_);
    if (curl == nullptr) return reason = "libcurl could not start", false;
    curl_easy_reset(curl);
    answer.clear();
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    std::string authorization = "Authorization: " + token_;
    if (!token_.empty()) headers = curl_slist_append(headers, authorization.c_str());
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, long(body.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, long(request_timeout_ms_));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, long(request_timeout_ms_));
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &stopping_);
    if (!settings_.cacert.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, settings_.cacert.c_str());
    if (!settings_.cert.empty()) {
        curl_easy_setopt(curl, CURLOPT_SSLCERT, settings_.cert.c_str());
        curl_easy_setopt(curl, CURLOPT_SSLKEY, settings_.key.c_str());
    }
    CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (code != CURLE_OK) return reason = url + ": " + curl_easy_strerror(code), false;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    return true;
}

bool EtcdStore::authenticate(std::string& reason) {
    token_.clear();
    std::string url = settings_.endpoints[endpoint_] + "/v3/auth/authenticate";
    std::string answer;
    long status = 0;
    if (!post(url, authenticate_request(settings_.username, settings_.password), answer, status,
              reason))
        return false;
    if (!parse_authenticate(answer, token_, reason)) return reason = url + ": " + reason, false;
    return true;
}

// One request to the current endpoint; on failure the next endpoint is current. With
// username, a missing or expired token is fetched first, and once again if refused.
bool EtcdStore::call(const char* path, const std::string& body, std::string& answer,
                     std::string& reason) {
    bool ok = false;
    for (int attempt = 0; attempt < 2 && !ok; ++attempt) {
        if (!settings_.username.empty() && token_.empty() && !authenticate(reason)) break;
        long status = 0;
        std::string url = settings_.endpoints[endpoint_] + path;
        if (!post(url, body, answer, status, reason)) break;
        bool refused = status == 401 || answer.find("invalid auth token") != std::string::npos;
        if (refused && !settings_.username.empty() && attempt == 0) {
            token_.clear();
            continue;
        }
        ok = status == 200;
        if (!ok) {
            Json json;
            std::string ignored;
            const Json* message = parse_json(answer, json, ignored) ? json.get("message") : nullptr;
            reason = url + ": HTTP " + std::to_string(status) +
                     (message != nullptr ? ": " + message->text : std::string());
        }
    }
    if (!ok) {
        endpoint_ = (endpoint_ + 1) % settings_.endpoints.size();
        token_.clear();
    }
    return ok;
}

// The lease, granted (with this appliance's key put under it) or kept alive. lease_until
// counts from the request's sending: the store's own expiry is later still.
bool EtcdStore::keep_lease(int64_t now_ms, std::string& reason) {
    std::string answer;
    int64_t id = 0, ttl_s = 0;
    if (lease_ != 0) {
        if (!call("/v3/lease/keepalive", keepalive_request(lease_), answer, reason) ||
            !parse_lease(answer, id, ttl_s, reason))
            return false;
        if (ttl_s > 0) {
            std::lock_guard lock(mutex_);
            lease_until_ms_ = std::max(lease_until_ms_, now_ms + ttl_s * 1000);
            return true;
        }
        log_warning("dcs: etcd let this appliance's lease %lld expire; granting a new one",
                    static_cast<long long>(lease_));
        lease_ = 0;
    }
    if (!call("/v3/lease/grant", grant_request(settings_.ttl_s), answer, reason) ||
        !parse_lease(answer, id, ttl_s, reason))
        return false;
    if (ttl_s <= 0) return reason = "etcd granted a lease of no time", false;
    lease_ = id;
    std::string value = "{\"appliance\":" + json_quote(self_) + "}";
    if (!call("/v3/kv/put", put_request(appliance_key(settings_.prefix, self_), value, lease_),
              answer, reason)) {
        lease_ = 0;  // granted but not used: left to expire, a new one next time
        return false;
    }
    std::lock_guard lock(mutex_);
    lease_until_ms_ = std::max(lease_until_ms_, now_ms + ttl_s * 1000);
    return true;
}

bool EtcdStore::read_all(int64_t now_ms, std::string& reason) {
    std::string answer;
    std::map<std::string, StoredDecision> stored;
    std::string skipped;
    if (!call("/v3/kv/range", range_request(settings_.prefix), answer, reason) ||
        !parse_range(answer, settings_.prefix, stored, skipped, reason))
        return false;
    if (!skipped.empty())
        log_warning(
            "dcs: etcd holds unreadable decisions at %s: they confirm nothing, and the "
            "next decision replaces them",
            skipped.c_str());
    std::lock_guard lock(mutex_);
    for (const std::string& cluster : clusters_) {
        auto it = stored.find(cluster);
        readings_[cluster] = Reading{it != stored.end() ? it->second : StoredDecision{}, now_ms};
    }
    return true;
}

bool EtcdStore::swap(const Proposal& proposal, std::string& reason) {
    std::string answer;
    bool succeeded = false;
    std::string key = cluster_key(settings_.prefix, proposal.cluster);
    if (!call("/v3/kv/txn",
              cas_request(key, proposal.expected_revision, decision_value(proposal.next)), answer,
              reason) ||
        !parse_txn(answer, succeeded, reason))
        return false;
    log_info("dcs: cluster %s: epoch %llu with primary %s %s", proposal.cluster.c_str(),
             static_cast<unsigned long long>(proposal.next.epoch), proposal.next.primary.c_str(),
             succeeded ? "written to etcd" : "not written: another appliance wrote first");
    return true;
}

void EtcdStore::report(bool ok, const std::string& reason) {
    {
        std::lock_guard lock(mutex_);
        reachable_ = ok;
    }
    if (!ok && !logged_unreachable_)
        log_warning(
            "dcs: cannot reach etcd (%s): this appliance routes no writes once its last reading "
            "is %lld s old",
            reason.c_str(), static_cast<long long>(settings_.ttl_s));
    if (ok && logged_unreachable_) log_info("dcs: etcd answers again");
    logged_unreachable_ = !ok;
}

void EtcdStore::run() {
    int64_t keepalive_ms = std::max<int64_t>(1, settings_.ttl_s * 1000 / 3);
    int64_t read_ms = std::max<int64_t>(1, settings_.ttl_s * 1000 / 4);
    for (;;) {
        std::vector<Proposal> proposals;
        {
            std::unique_lock lock(mutex_);
            int64_t due = std::min(next_keepalive_ms_, next_read_ms_);
            wake_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(0, due - clock_ms())),
                           [&] { return stop_ || !proposals_.empty(); });
            if (stop_) return;
            proposals.swap(proposals_);
        }
        bool ok = true;
        std::string reason;
        for (const Proposal& proposal : proposals) ok = swap(proposal, reason) && ok;
        if (!proposals.empty()) next_read_ms_ = 0;  // read back the outcome now
        int64_t now_ms = clock_ms();
        if (now_ms >= next_keepalive_ms_) {
            next_keepalive_ms_ = now_ms + keepalive_ms;
            ok = keep_lease(now_ms, reason) && ok;
        }
        now_ms = clock_ms();
        if (now_ms >= next_read_ms_) {
            next_read_ms_ = now_ms + read_ms;
            ok = read_all(now_ms, reason) && ok;
        }
        report(ok, reason);
    }
}

}  // namespace pgplex::dcs
