// The latency histogram of /metrics: which bucket a time falls in at and around each bound,
// and that what a reader takes adds up (its count is the sum of its buckets).
#include <criterion/criterion.h>

#include "pgplex/base/histogram.h"

using namespace pgplex::base;

Test(histogram, a_time_on_a_bound_falls_in_that_bound_s_bucket) {
    cr_assert_eq(histogram_bucket_of(0), 0u);
    for (size_t i = 0; i < histogram_bounds_us.size(); ++i) {
        cr_assert_eq(histogram_bucket_of(histogram_bounds_us[i]), i, "bound %zu", i);
        cr_assert_eq(histogram_bucket_of(histogram_bounds_us[i] + 1), i + 1, "bound %zu", i);
    }
}

Test(histogram, a_time_above_every_bound_falls_in_the_inf_bucket) {
    cr_assert_eq(histogram_bucket_of(10'000'001), histogram_bucket_count - 1);
    cr_assert_eq(histogram_bucket_of(UINT64_MAX), histogram_bucket_count - 1);
}

Test(histogram, the_bounds_run_from_half_a_millisecond_to_ten_seconds) {
    cr_assert_eq(histogram_bounds_us.front(), 500u);
    cr_assert_eq(histogram_bounds_us.back(), 10'000'000u);
    cr_assert_eq(histogram_bucket_count, 15u);
}

Test(histogram, observations_are_read_back_per_bucket_with_their_sum_and_count) {
    Histogram histogram;
    histogram.observe(0);
    histogram.observe(1'000);
    histogram.observe(1'000);
    histogram.observe(3'000);
    histogram.observe(60'000'000);
    HistogramValues values = histogram.read();
    cr_assert_eq(values.buckets[0], 1u);   // le 0.0005
    cr_assert_eq(values.buckets[1], 2u);   // le 0.001
    cr_assert_eq(values.buckets[2], 0u);   // le 0.0025
    cr_assert_eq(values.buckets[3], 1u);   // le 0.005
    cr_assert_eq(values.buckets[14], 1u);  // +Inf
    cr_assert_eq(values.count(), 5u);
    cr_assert_eq(values.sum_us, 60'005'000u);
}

Test(histogram, values_of_two_pools_add_bucket_by_bucket) {
    Histogram a, b;
    a.observe(700);
    b.observe(700);
    b.observe(20'000'000);
    HistogramValues sum = a.read();
    sum += b.read();
    cr_assert_eq(sum.buckets[1], 2u);
    cr_assert_eq(sum.buckets[14], 1u);
    cr_assert_eq(sum.count(), 3u);
    cr_assert_eq(sum.sum_us, 20'001'400u);
}
