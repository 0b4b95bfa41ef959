#include "dashboard/time_series.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace paddock::broker::dashboard {

size_t LatencyBuckets::index_of(uint64_t us) {
  constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  if (us < kSub) return static_cast<size_t>(us);
  const unsigned width = static_cast<unsigned>(std::bit_width(us));
  if (width > kOctaves) return kBuckets - 1;
  const unsigned shift = width - kSubBits;  // >= 1
  // [2^(width-1), 2^width) in kSub steps of 2^(shift-1): the value's top kSubBits + 1 bits.
  const uint64_t top = us >> (shift - 1);  // in [kSub, 2 kSub)
  return static_cast<size_t>((shift << kSubBits) + (top - kSub));
}

uint64_t LatencyBuckets::middle_of(size_t index) {
  constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  if (index < kSub) return index;
  const unsigned shift = static_cast<unsigned>(index >> kSubBits);
  const uint64_t top = (index & (kSub - 1)) + kSub;
  const uint64_t low = top << (shift - 1);
  const uint64_t step = uint64_t{1} << (shift - 1);
  return low + step / 2;
}

void LatencyBuckets::record(uint64_t us) {
  ++counts_[index_of(us)];
  ++count_;
}

void LatencyBuckets::add(const LatencyBuckets& other) {
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
}

uint64_t LatencyBuckets::percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 100.0);
  // Nearest rank: the smallest value with at least q% of the samples at or below it.
  const auto rank = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(q / 100.0 * static_cast<double>(count_) - 1e-9)));
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return middle_of(i);
  }
  return middle_of(kBuckets - 1);
}

TimeSeries::Slot* TimeSeries::slot(uint64_t unix_s) {
  Slot& s = slots_[unix_s % kSeconds];
  if (s.unix_s > unix_s) return nullptr;
  if (s.unix_s < unix_s) s = Slot{unix_s, 0, 0, 0, {}};
  return &s;
}

bool TimeSeries::in_window(const Slot& s, uint64_t now_unix_s) const {
  return s.unix_s != 0 && s.unix_s <= now_unix_s && now_unix_s - s.unix_s < kSeconds;
}

void TimeSeries::count(uint64_t unix_s, uint32_t accepted, uint32_t completed, uint32_t failed) {
  if (Slot* s = slot(unix_s)) {
    s->accepted += accepted;
    s->completed += completed;
    s->failed += failed;
  }
}

void TimeSeries::latency(uint64_t unix_s, uint64_t us) {
  if (Slot* s = slot(unix_s)) s->latencies.record(us);
}

std::vector<TimeSeries::Point> TimeSeries::points(uint64_t now_unix_s) const {
  std::vector<Point> out(kSeconds);
  for (size_t i = 0; i < kSeconds; ++i) {
    const uint64_t t = now_unix_s + 1 + i - kSeconds;
    Point& p = out[i];
    p.unix_s = t;
    const Slot& s = slots_[t % kSeconds];
    if (s.unix_s != t) continue;
    p.accepted = s.accepted;
    p.completed = s.completed;
    p.failed = s.failed;
    p.p50_us = s.latencies.percentile(50);
    p.p99_us = s.latencies.percentile(99);
  }
  return out;
}

LatencyBuckets TimeSeries::window(uint64_t now_unix_s) const {
  LatencyBuckets all;
  for (const Slot& s : slots_) {
    if (in_window(s, now_unix_s)) all.add(s.latencies);
  }
  return all;
}

}  // namespace paddock::broker::dashboard
