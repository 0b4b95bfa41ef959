#include "load/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

namespace paddock::load {

Histogram::Histogram(uint64_t highest, int significant_digits)
    : highest_(std::max<uint64_t>(highest, 2)), digits_(std::clamp(significant_digits, 1, 4)) {
  // Steps of at most 1 in 10^digits of the value: S/2 >= 10^digits.
  uint64_t want = 2;
  for (int i = 0; i < digits_; ++i) want *= 10;
  sub_count_ = std::bit_ceil(want);
  sub_bits_ = static_cast<unsigned>(std::countr_zero(sub_count_));
  half_ = sub_count_ / 2;
  counts_.assign(index_of(highest_) + 1, 0);
}

size_t Histogram::index_of(uint64_t value) const {
  if (value < sub_count_) return static_cast<size_t>(value);
  const unsigned k = static_cast<unsigned>(std::bit_width(value)) - sub_bits_;  // >= 1
  return static_cast<size_t>(sub_count_ + (k - 1) * half_ + ((value >> k) - half_));
}

uint64_t Histogram::highest_in(size_t index) const {
  if (index < sub_count_) return index;
  const uint64_t k = (index - sub_count_) / half_ + 1;
  const uint64_t step = (index - sub_count_) % half_ + half_;
  return ((step + 1) << k) - 1;
}

void Histogram::record(uint64_t value) {
  if (value > highest_) {
    value = highest_;
    ++clamped_;
  }
  ++counts_[index_of(value)];
  min_ = count_ == 0 ? value : std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
  ++count_;
}

void Histogram::merge(const Histogram& other) {
  if (other.highest_ != highest_ || other.digits_ != digits_) {
    throw std::invalid_argument("Histogram::merge: histograms of different range or precision");
  }
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
  count_ += other.count_;
  clamped_ += other.clamped_;
}

uint64_t Histogram::percentile(double q) const {
  if (count_ == 0) return 0;
  if (!(q > 0)) return min_;  // also NaN
  if (q >= 100) return max_;
  // Nearest rank: the smallest sample with at least ceil(q% of count) samples at or below it.
  // (The small subtraction keeps 90% of 1000 at rank 900 despite rounding in q / 100 * count.)
  const auto rank = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(q / 100.0 * static_cast<double>(count_) - 1e-9)));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(highest_in(i), min_, max_);
  }
  return max_;
}

}  // namespace paddock::load
