// A latency histogram cheap enough for the data path: fixed bucket bounds, one relaxed atomic
// add for the bucket and one for the sum per observation, no lock and no allocation. Workers
// observe; the metrics thread reads (metrics/exposition.cc writes it as a Prometheus
// histogram, prometheus.io/docs/concepts/metric_types/#histogram).
//
// Buckets hold what fell in them alone, not the running total: an observation touches one
// bucket, and the reader makes them cumulative. The count is not a counter of its own but
// the sum of the buckets read, so the `_count` a scrape shows always equals its `+Inf`
// bucket, even while workers observe during the read (two counters read one after the
// other could disagree by the adds in between).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pgplex::base {

// Upper bounds of the buckets in microseconds (inclusive: Prometheus' `le`), from 0.5 ms to
// 10 s, about 2.5x apart: a pooled query or a wait for a server on loopback is under a
// millisecond, a slow report or a wait behind a full pool takes seconds. Fixed at build time
// so a dashboard's histogram_quantile() sees the same `le` labels on every appliance. The
// workers' clock counts coarse milliseconds (base/clock.h): the lowest buckets hold the times
// that began and ended within one tick, counted as 0.
inline constexpr std::array<uint64_t, 14> histogram_bounds_us = {
    500,     1'000,   2'500,   5'000,     10'000,    25'000,    50'000,
    100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000,
};
// One bucket per bound and the last for everything above them (`le="+Inf"`).
inline constexpr size_t histogram_bucket_count = histogram_bounds_us.size() + 1;

consteval bool histogram_bounds_ascend() {
    for (size_t i = 1; i < histogram_bounds_us.size(); ++i)
        if (histogram_bounds_us[i - 1] >= histogram_bounds_us[i]) return false;
    return true;
}
static_assert(histogram_bounds_ascend(), "histogram_bucket_of() scans the bounds in order");

// The bucket a time falls in: the first whose bound it does not exceed, else the +Inf one.
// Fourteen compares at most, on one cache line of constants.
constexpr size_t histogram_bucket_of(uint64_t us) {
    size_t bucket = 0;
    while (bucket < histogram_bounds_us.size() && us > histogram_bounds_us[bucket]) ++bucket;
    return bucket;
}

// What a reader took from a Histogram: per-bucket (not cumulative) counts and the sum.
struct HistogramValues {
    std::array<uint64_t, histogram_bucket_count> buckets{};
    uint64_t sum_us = 0;

    uint64_t count() const {
        uint64_t total = 0;
        for (uint64_t n : buckets) total += n;
        return total;
    }
    HistogramValues& operator+=(const HistogramValues& other) {
        for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
        sum_us += other.sum_us;
        return *this;
    }
};

// Shared by every worker: each add is relaxed, as a bucket is never read together with
// another for a decision, and a scrape that misses an add in flight shows it the next time.
struct Histogram {
    std::array<std::atomic<uint64_t>, histogram_bucket_count> buckets{};
    std::atomic<uint64_t> sum_us{0};

    void observe(uint64_t us) {
        buckets[histogram_bucket_of(us)].fetch_add(1, std::memory_order_relaxed);
        sum_us.fetch_add(us, std::memory_order_relaxed);
    }
    HistogramValues read() const {
        HistogramValues values;
        for (size_t i = 0; i < buckets.size(); ++i)
            values.buckets[i] = buckets[i].load(std::memory_order_relaxed);
        values.sum_us = sum_us.load(std::memory_order_relaxed);
        return values;
    }
};

}  // namespace pgplex::base
