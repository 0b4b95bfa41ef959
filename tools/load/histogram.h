// A latency histogram in the manner of HdrHistogram: log-linear buckets over a fixed range, so
// that memory does not grow with the number of samples and every percentile it reports is within
// a known relative error of the exact one.
//
// Layout: with S sub-buckets (a power of two, S = 2^b), values below S have a bucket each
// (exact); above, bucket k >= 1 holds [S/2 * 2^k, S * 2^k) in S/2 steps of 2^k. A value is
// reported as the highest value of its step, so a percentile is never below the exact one and at
// most 2/S of it above (3 significant digits: S = 2048, error < 0.1%; 2 digits: S = 256, < 0.8%).
//
// Thread-safety: none; one Histogram per thread, merge() them afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace paddock::load {

class Histogram {
 public:
  // One hour in microseconds: the default top of the range.
  static constexpr uint64_t kOneHourUs = 3'600'000'000ULL;

  // REQUIRES: 1 <= significant_digits <= 4, highest >= 2.
  // Values above `highest` are recorded as `highest` and counted by clamped().
  explicit Histogram(uint64_t highest = kOneHourUs, int significant_digits = 3);

  void record(uint64_t value);
  // Adds every sample of `other`. Throws std::invalid_argument if its range or precision differ.
  void merge(const Histogram& other);

  uint64_t count() const { return count_; }
  uint64_t clamped() const { return clamped_; }
  // Exact values (of the samples as recorded, after clamping); 0 when empty.
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }

  // The value below or at which q percent of the samples lie (nearest rank), q in [0, 100]:
  // q = 0 is min(), q = 100 is max(), both exact; others within relative_error(). 0 when empty.
  uint64_t percentile(double q) const;

  // The bound on |percentile(q) - exact| / exact for values above the exact range.
  double relative_error() const { return 1.0 / static_cast<double>(half_); }
  uint64_t highest() const { return highest_; }
  // Bytes held by the buckets: fixed at construction.
  size_t memory_bytes() const { return counts_.size() * sizeof(uint64_t); }

 private:
  size_t index_of(uint64_t value) const;
  uint64_t highest_in(size_t index) const;

  uint64_t highest_;
  int digits_;
  unsigned sub_bits_;  // S = 2^sub_bits_
  uint64_t sub_count_;
  uint64_t half_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t clamped_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
  uint64_t sum_ = 0;
};

}  // namespace paddock::load
