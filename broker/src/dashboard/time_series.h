// The dashboard's throughput and latency over the last minutes: one slot per second (a ring of
// kSeconds), each with the jobs accepted, completed and failed in that second and the end-to-end
// latencies of the jobs answered in it, in a small log-linear histogram.
//
// LatencyBuckets: 8 buckets per power of two of microseconds (log-linear, as HdrHistogram with
// 8 sub-buckets), exact below 16 us, up to 2^36 us (about 19 hours; longer ones count in the last
// bucket); a percentile is reported as the middle of its bucket, within 6.25% of the exact value.
// 272 counters, fixed: a window of slots merges by adding them.
//
// Thread-safety: none; the broker's loop owns one and copies what it needs into a snapshot.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace paddock::broker::dashboard {

class LatencyBuckets {
 public:
  static constexpr unsigned kSubBits = 3;  // 8 sub-buckets per power of two
  static constexpr unsigned kOctaves = 36;
  static constexpr size_t kBuckets = (kOctaves - kSubBits + 1) << kSubBits;

  void record(uint64_t us);
  void add(const LatencyBuckets& other);
  uint64_t count() const { return count_; }
  // The value below or at which q percent (0..100) of the samples lie, as the middle of its
  // bucket (exact below 8 us); 0 when empty.
  uint64_t percentile(double q) const;

 private:
  static size_t index_of(uint64_t us);
  static uint64_t middle_of(size_t index);

  std::array<uint32_t, kBuckets> counts_{};
  uint64_t count_ = 0;
};

class TimeSeries {
 public:
  static constexpr size_t kSeconds = 300;

  // Counts and a latency for the second `unix_s`. A second older than the window is ignored.
  void count(uint64_t unix_s, uint32_t accepted, uint32_t completed, uint32_t failed);
  void latency(uint64_t unix_s, uint64_t us);

  struct Point {
    uint64_t unix_s = 0;
    uint32_t accepted = 0;
    uint32_t completed = 0;  // RESULT answers
    uint32_t failed = 0;     // ERROR answers
    uint64_t p50_us = 0;     // of the jobs answered in this second; 0 if none
    uint64_t p99_us = 0;
  };
  // One point per second of the kSeconds up to and including `now_unix_s`, oldest first; seconds
  // with nothing are zeros.
  std::vector<Point> points(uint64_t now_unix_s) const;
  // The latencies of every job answered in the window ending at `now_unix_s`.
  LatencyBuckets window(uint64_t now_unix_s) const;

 private:
  struct Slot {
    uint64_t unix_s = 0;  // the second it holds; 0: never used
    uint32_t accepted = 0;
    uint32_t completed = 0;
    uint32_t failed = 0;
    LatencyBuckets latencies;
  };
  // The slot for `unix_s`, cleared if it held an older second; nullptr if `unix_s` is older than
  // what the slot holds (outside the window).
  Slot* slot(uint64_t unix_s);
  bool in_window(const Slot& s, uint64_t now_unix_s) const;

  std::vector<Slot> slots_ = std::vector<Slot>(kSeconds);
};

}  // namespace paddock::broker::dashboard
