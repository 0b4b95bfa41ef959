// Firecracker's metrics (PUT /metrics): Firecracker writes one JSON object a line to a FIFO, every
// 60 s and on each FlushMetrics action. Most counters in a line are deltas since the previous
// flush, so the poller keeps both the last good line and the sum of every good line (the totals a
// job's usage comes from).
//
// The FIFO's writer is Firecracker, which a guest may own: lines are bounded
// (metrics_limits::kMaxLine; a longer one is skipped up to its end), nesting is bounded, and a line
// that is not a metrics object is skipped and counted, never fatal.
//
// Thread-safety: parse_metrics_line is pure; a MetricsPoller is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "paddock/runtime/error.h"

namespace paddock::runtime::firecracker {

namespace metrics_limits {
inline constexpr size_t kMaxLine = 256u << 10;  // a flush with many devices is ~20 KiB
inline constexpr size_t kMaxDepth = 8;
}  // namespace metrics_limits

// The fields Paddock uses from one flush.
struct MetricsSample {
  uint64_t utc_timestamp_ms = 0;
  // vcpu: exits by kind, and the time spent handling them (sum_us of the *_agg latencies).
  uint64_t vcpu_exit_io_in = 0;
  uint64_t vcpu_exit_io_out = 0;
  uint64_t vcpu_exit_mmio_read = 0;
  uint64_t vcpu_exit_mmio_write = 0;
  uint64_t vcpu_exit_time_us = 0;
  // memory: pages the guest dirtied (with dirty page tracking on).
  uint64_t memory_dirty_pages = 0;
  // net (all interfaces): bytes and packets.
  uint64_t net_rx_bytes = 0;
  uint64_t net_tx_bytes = 0;
  uint64_t net_rx_packets = 0;
  uint64_t net_tx_packets = 0;
  // block (all drives): bytes.
  uint64_t block_read_bytes = 0;
  uint64_t block_write_bytes = 0;

  MetricsSample& operator+=(const MetricsSample& delta);  // the timestamp is the later one
  bool operator==(const MetricsSample&) const = default;
};

// One line (without its '\n'). nullopt, with `why` set, for a line that is too long or too deep,
// not JSON, not an object, without utc_timestamp_ms, or with a used field of the wrong type.
// Sections a VM does not have (no net device) read as zeros.
std::optional<MetricsSample> parse_metrics_line(std::string_view line, std::string& why);

class MetricsPoller {
 public:
  // Opens the FIFO for reading without blocking (before Firecracker opens it for writing: its
  // open fails without a reader). Metrics error naming the path and errno; Metrics if `path` is
  // not a FIFO.
  static Result<std::unique_ptr<MetricsPoller>> open(const std::string& path);
  ~MetricsPoller();
  MetricsPoller(const MetricsPoller&) = delete;
  MetricsPoller& operator=(const MetricsPoller&) = delete;

  // Reads what the FIFO holds now (never blocks) and takes every complete line. Metrics error if
  // the read fails.
  Status poll();
  // The last good line, or Metrics (saying how many lines were skipped and why the last was)
  // when none came yet.
  Result<MetricsSample> last() const;
  // Every good line added up.
  const MetricsSample& totals() const { return totals_; }
  uint64_t good_lines() const { return good_; }
  uint64_t bad_lines() const { return bad_; }

 private:
  MetricsPoller(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  void take_line(std::string_view line);

  int fd_ = -1;
  std::string path_;
  std::string partial_;    // bytes of a line not yet ended
  bool skipping_ = false;  // inside a line longer than kMaxLine: drop up to its '\n'
  std::optional<MetricsSample> last_;
  MetricsSample totals_;
  uint64_t good_ = 0;
  uint64_t bad_ = 0;
  std::string last_why_;
};

}  // namespace paddock::runtime::firecracker
