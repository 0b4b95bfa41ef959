#include "firecracker/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "os/json_depth.h"
#include "os/peer_text.h"
#include "paddock/base/os_error.h"

namespace paddock::runtime::firecracker {

namespace {

using json = nlohmann::json;

// A counter: absent reads as 0; present, it must be an unsigned integer.
bool counter(const json& section, const char* name, uint64_t& out, std::string& why) {
  if (!section.is_object()) return true;
  auto it = section.find(name);
  if (it == section.end()) return true;
  if (!it->is_number_unsigned()) {
    why = std::string("field ") + name + ": not an unsigned integer";
    return false;
  }
  out = it->get<uint64_t>();
  return true;
}

const json& section(const json& j, const char* name) {
  static const json kNone;
  auto it = j.find(name);
  return it == j.end() ? kNone : *it;
}

}  // namespace

MetricsSample& MetricsSample::operator+=(const MetricsSample& d) {
  utc_timestamp_ms = std::max(utc_timestamp_ms, d.utc_timestamp_ms);
  vcpu_exit_io_in += d.vcpu_exit_io_in;
  vcpu_exit_io_out += d.vcpu_exit_io_out;
  vcpu_exit_mmio_read += d.vcpu_exit_mmio_read;
  vcpu_exit_mmio_write += d.vcpu_exit_mmio_write;
  vcpu_exit_time_us += d.vcpu_exit_time_us;
  memory_dirty_pages += d.memory_dirty_pages;
  net_rx_bytes += d.net_rx_bytes;
  net_tx_bytes += d.net_tx_bytes;
  net_rx_packets += d.net_rx_packets;
  net_tx_packets += d.net_tx_packets;
  block_read_bytes += d.block_read_bytes;
  block_write_bytes += d.block_write_bytes;
  return *this;
}

std::optional<MetricsSample> parse_metrics_line(std::string_view line, std::string& why) {
  if (line.size() > metrics_limits::kMaxLine) {
    why = "line longer than " + std::to_string(metrics_limits::kMaxLine) + " bytes";
    return std::nullopt;
  }
  if (os::json_nested_deeper_than(line, metrics_limits::kMaxDepth)) {
    why = "nested deeper than " + std::to_string(metrics_limits::kMaxDepth);
    return std::nullopt;
  }
  const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    why = "not JSON: '" + os::peer_text(line, 64) + "'";
    return std::nullopt;
  }
  if (!j.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  MetricsSample s;
  if (!j.contains("utc_timestamp_ms")) {
    why = "no utc_timestamp_ms";
    return std::nullopt;
  }
  const json& vcpu = section(j, "vcpu");
  const json& net = section(j, "net");
  const json& block = section(j, "block");
  bool ok = counter(j, "utc_timestamp_ms", s.utc_timestamp_ms, why) &&
            counter(vcpu, "exit_io_in", s.vcpu_exit_io_in, why) &&
            counter(vcpu, "exit_io_out", s.vcpu_exit_io_out, why) &&
            counter(vcpu, "exit_mmio_read", s.vcpu_exit_mmio_read, why) &&
            counter(vcpu, "exit_mmio_write", s.vcpu_exit_mmio_write, why) &&
            counter(section(j, "memory"), "dirty_pages", s.memory_dirty_pages, why) &&
            counter(net, "rx_bytes_count", s.net_rx_bytes, why) &&
            counter(net, "tx_bytes_count", s.net_tx_bytes, why) &&
            counter(net, "rx_packets_count", s.net_rx_packets, why) &&
            counter(net, "tx_packets_count", s.net_tx_packets, why) &&
            counter(block, "read_bytes", s.block_read_bytes, why) &&
            counter(block, "write_bytes", s.block_write_bytes, why);
  for (const char* agg :
       {"exit_io_in_agg", "exit_io_out_agg", "exit_mmio_read_agg", "exit_mmio_write_agg"}) {
    uint64_t us = 0;
    ok = ok && counter(section(vcpu, agg), "sum_us", us, why);
    s.vcpu_exit_time_us += us;
  }
  if (!ok) return std::nullopt;
  return s;
}

Result<std::unique_ptr<MetricsPoller>> MetricsPoller::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Error::metrics(base::error_message("open metrics fifo " + path));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    ::close(fd);
    return Error::metrics("metrics path " + path + ": not a FIFO");
  }
  return std::unique_ptr<MetricsPoller>(new MetricsPoller(fd, path));
}

MetricsPoller::~MetricsPoller() {
  if (fd_ >= 0) ::close(fd_);
}

Status MetricsPoller::poll() {
  char buf[16 << 10];
  while (true) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return {};  // a writer, nothing more now
    if (n < 0) return Error::metrics(base::error_message("read metrics fifo " + path_));
    if (n == 0) return {};  // no writer (yet, or any more)
    std::string_view chunk(buf, static_cast<size_t>(n));
    while (!chunk.empty()) {
      const size_t nl = chunk.find('\n');
      const std::string_view piece = chunk.substr(0, nl);
      if (!skipping_) partial_.append(piece);
      if (partial_.size() > metrics_limits::kMaxLine && !skipping_) {
        skipping_ = true;
        partial_.clear();
      }
      if (nl == std::string_view::npos) break;
      if (skipping_) {
        ++bad_;
        last_why_ = "line longer than " + std::to_string(metrics_limits::kMaxLine) + " bytes";
        skipping_ = false;
      } else {
        take_line(partial_);
      }
      partial_.clear();
      chunk.remove_prefix(nl + 1);
    }
  }
}

void MetricsPoller::take_line(std::string_view line) {
  if (line.empty()) return;
  std::string why;
  auto sample = parse_metrics_line(line, why);
  if (!sample) {
    ++bad_;
    last_why_ = std::move(why);
    return;
  }
  ++good_;
  totals_ += *sample;
  last_ = std::move(sample);
}

Result<MetricsSample> MetricsPoller::last() const {
  if (last_) return *last_;
  std::string detail = "no metrics from " + path_ + " yet";
  if (bad_ > 0) {
    detail += ": " + std::to_string(bad_) + " line(s) skipped, the last because: " + last_why_;
  }
  return Error::metrics(detail);
}

}  // namespace paddock::runtime::firecracker
