// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_HISTOGRAM_HPP
#define SEKUIRE_HISTOGRAM_HPP

/// @file
/// `latency_histogram`: a lock-free histogram of durations (a task handler's latency, say)
/// with fixed bucket bounds, and `histogram_snapshot`, what it holds at one moment.
/// `<sekuire/metrics.hpp>` writes a snapshot in the Prometheus text format. This header
/// depends on nothing else of sekuire but errors, so that any part can feed a histogram.

#include <sekuire/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace sekuire {

/** What a histogram holds at one moment. `counts[i]` counts the observations in bucket `i`
    (not cumulative): at most `upper_bounds[i]` and above the bound before; the last entry
    (`counts.size() == upper_bounds.size() + 1`) counts those above every bound. `count` is
    the sum of `counts`; `sum` is the sum of the observed values, in seconds.
*/
struct histogram_snapshot {
    /// The bucket bounds, in seconds, strictly ascending (without +Inf).
    std::vector<double> upper_bounds;
    /// Observations per bucket, one more entry than `upper_bounds`.
    std::vector<std::uint64_t> counts;
    /// All observations.
    std::uint64_t count = 0;
    /// The sum of the observed values, in seconds.
    double sum = 0;
};

/** A histogram of durations (a handler's latency, say), with fixed bucket bounds in
    seconds.

    @par Thread Safety
    `observe()` and `snapshot()` are safe from any thread at any time, and lock-free. A
    snapshot taken while observations go on may miss the latest ones, but its `count` always
    equals the sum of its buckets.
*/
class latency_histogram {
public:
    /// Bucket bounds (seconds) for request and task latencies: 5 ms to 5 minutes.
    static std::vector<double> default_bounds() {
        return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
    }

    /// A histogram with `default_bounds()`.
    latency_histogram() : latency_histogram(default_bounds()) {}

    /** A histogram with the given upper bounds, in seconds.
        @throws sekuire::error with `errc::invalid_argument` when a bound is not finite and
        positive, or the bounds are not strictly ascending.
    */
    explicit latency_histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
        for (std::size_t i = 0; i < bounds_.size(); ++i) {
            if (!std::isfinite(bounds_[i]) || bounds_[i] <= 0 || (i > 0 && bounds_[i] <= bounds_[i - 1]))
                throw error(errc::invalid_argument, "latency_histogram: bounds must be finite, positive and strictly ascending");
        }
        counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
        for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
    }

    latency_histogram(const latency_histogram&) = delete;
    latency_histogram& operator=(const latency_histogram&) = delete;

    /// Records one duration (a negative one counts as zero).
    template <class Rep, class Period>
    void observe(std::chrono::duration<Rep, Period> d) noexcept {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
        observe_nanoseconds(ns < 0 ? 0 : static_cast<std::uint64_t>(ns));
    }

    /// Records one duration given in seconds (negative counts as zero; NaN is ignored).
    void observe_seconds(double seconds) noexcept {
        if (std::isnan(seconds)) return;
        if (seconds < 0) seconds = 0;
        constexpr double max_ns = 1.8e19;
        const double ns = seconds * 1e9;
        observe_nanoseconds(ns >= max_ns ? static_cast<std::uint64_t>(max_ns) : static_cast<std::uint64_t>(ns));
    }

    /// The bucket bounds, in seconds.
    const std::vector<double>& upper_bounds() const noexcept { return bounds_; }

    /// The histogram's present contents.
    histogram_snapshot snapshot() const {
        histogram_snapshot s;
        s.upper_bounds = bounds_;
        s.counts.resize(bounds_.size() + 1);
        for (std::size_t i = 0; i <= bounds_.size(); ++i) {
            s.counts[i] = counts_[i].load(std::memory_order_relaxed);
            s.count += s.counts[i];
        }
        s.sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
        return s;
    }

private:
    void observe_nanoseconds(std::uint64_t ns) noexcept {
        const double seconds = static_cast<double>(ns) / 1e9;
        const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), seconds);
        counts_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
        sum_ns_.fetch_add(ns, std::memory_order_relaxed);
    }

    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
    std::atomic<std::uint64_t> sum_ns_{0};
};

} // namespace sekuire

#endif
