// Firecracker's metrics FIFO: the line parser on sample lines (good, broken, hostile) and the
// poller on a real FIFO (mkfifo) fed by a writer thread.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "fake_firecracker.h"
#include "firecracker/metrics.h"

using namespace paddock::runtime;
using namespace paddock::runtime::firecracker;

namespace {

// A flush as Firecracker writes it (fields Paddock does not use included, as in a real line).
std::string sample_line(uint64_t ts, uint64_t rx_bytes) {
  return R"({"utc_timestamp_ms":)" + std::to_string(ts) +
         R"(,"api_server":{"process_startup_time_us":0},)"
         R"("vcpu":{"exit_io_in":3,"exit_io_out":4,"exit_mmio_read":5,"exit_mmio_write":6,)"
         R"("failures":0,"exit_io_in_agg":{"min_us":1,"max_us":9,"sum_us":10},)"
         R"("exit_io_out_agg":{"min_us":1,"max_us":9,"sum_us":20},)"
         R"("exit_mmio_read_agg":{"min_us":1,"max_us":9,"sum_us":30},)"
         R"("exit_mmio_write_agg":{"min_us":1,"max_us":9,"sum_us":40}},)"
         R"("memory":{"dirty_pages":7},)"
         R"("net":{"rx_bytes_count":)" +
         std::to_string(rx_bytes) +
         R"(,"tx_bytes_count":200,"rx_packets_count":3,"tx_packets_count":4,"rx_fails":0},)"
         R"("block":{"read_bytes":4096,"write_bytes":8192,"read_count":1,"write_count":2}})";
}

struct Fifo {
  std::filesystem::path dir = paddock::test::fresh_temp_dir("fcmetrics-");
  std::string path = (dir / "metrics.fifo").string();
  Fifo() { REQUIRE(::mkfifo(path.c_str(), 0600) == 0); }
  ~Fifo() { std::filesystem::remove_all(dir); }
};

void write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n > 0) done += static_cast<size_t>(n);
  }
}

}  // namespace

TEST_CASE("firecracker metrics: a flush line gives every used field") {
  std::string why;
  auto s = parse_metrics_line(sample_line(1700000000000, 100), why);
  REQUIRE_MESSAGE(s, why);
  CHECK(s->utc_timestamp_ms == 1700000000000);
  CHECK(s->vcpu_exit_io_in == 3);
  CHECK(s->vcpu_exit_io_out == 4);
  CHECK(s->vcpu_exit_mmio_read == 5);
  CHECK(s->vcpu_exit_mmio_write == 6);
  CHECK(s->vcpu_exit_time_us == 100);
  CHECK(s->memory_dirty_pages == 7);
  CHECK(s->net_rx_bytes == 100);
  CHECK(s->net_tx_bytes == 200);
  CHECK(s->net_rx_packets == 3);
  CHECK(s->net_tx_packets == 4);
  CHECK(s->block_read_bytes == 4096);
  CHECK(s->block_write_bytes == 8192);
}

TEST_CASE("firecracker metrics: missing sections read as zero") {
  std::string why;
  auto s = parse_metrics_line(R"({"utc_timestamp_ms": 5, "vcpu": {"exit_io_in": 1}})", why);
  REQUIRE(s);
  CHECK(s->vcpu_exit_io_in == 1);
  CHECK(s->net_rx_bytes == 0);
  CHECK(s->block_write_bytes == 0);
}

TEST_CASE("firecracker metrics: broken lines are refused with a reason") {
  const std::pair<std::string, std::string> cases[] = {
      {"{\"utc_timestamp_ms\": 1, \"net\": {\"rx_bytes_count\": 1", "not JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{\"net\": {}}", "no utc_timestamp_ms"},
      {"{\"utc_timestamp_ms\": 1, \"net\": {\"rx_bytes_count\": -1}}", "rx_bytes_count"},
      {"{\"utc_timestamp_ms\": 1, \"block\": {\"read_bytes\": \"4096\"}}", "read_bytes"},
      {"{\"utc_timestamp_ms\": 1, \"vcpu\": {\"exit_io_in_agg\": {\"sum_us\": 1.5}}}", "sum_us"},
      {std::string(20, '[') + std::string(20, ']'), "nested deeper"},
      {std::string(metrics_limits::kMaxLine + 1, ' '), "longer than"},
  };
  for (const auto& [line, reason] : cases) {
    std::string why;
    INFO(line.substr(0, 80));
    CHECK_FALSE(parse_metrics_line(line, why));
    CHECK(why.find(reason) != std::string::npos);
  }
}

TEST_CASE("firecracker metrics: opening a path that is not a FIFO is a Metrics error") {
  auto missing = MetricsPoller::open("/nonexistent/metrics.fifo");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().variant() == Variant::kMetrics);
  CHECK(missing.error().detail().find("No such file or directory") != std::string::npos);
  auto regular = MetricsPoller::open("/etc/hostname");
  REQUIRE_FALSE(regular);
  CHECK(regular.error().variant() == Variant::kMetrics);
  CHECK(regular.error().detail().find("not a FIFO") != std::string::npos);
}

TEST_CASE("firecracker metrics: no good line yet is a Metrics error saying why") {
  Fifo fifo;
  auto poller = MetricsPoller::open(fifo.path);
  REQUIRE(poller);
  const int w = ::open(fifo.path.c_str(), O_WRONLY | O_NONBLOCK);
  REQUIRE(w >= 0);
  write_all(w, "garbage\n");
  ::close(w);
  REQUIRE(poller.value()->poll());
  auto last = poller.value()->last();
  REQUIRE_FALSE(last);
  CHECK(last.error().variant() == Variant::kMetrics);
  CHECK(last.error().detail().find("1 line(s) skipped") != std::string::npos);
  CHECK(last.error().detail().find("not JSON") != std::string::npos);
}

TEST_CASE("firecracker metrics: the poller keeps the last good line and sums the deltas") {
  Fifo fifo;
  auto opened = MetricsPoller::open(fifo.path);  // before the writer, as Firecracker needs
  REQUIRE(opened);
  MetricsPoller& poller = *opened.value();
  std::thread writer([&] {
    const int w = ::open(fifo.path.c_str(), O_WRONLY);
    // A good line, a broken one, an oversized one split across writes, then a good one in two
    // pieces: the poller must reassemble lines across reads.
    write_all(w, sample_line(1, 100) + "\n{broken\n");
    write_all(w, std::string(metrics_limits::kMaxLine, 'x'));
    write_all(w, std::string(1000, 'x') + "\n");
    const std::string last = sample_line(2, 50);
    write_all(w, last.substr(0, 40));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    write_all(w, last.substr(40) + "\n");
    ::close(w);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (poller.good_lines() < 2 && std::chrono::steady_clock::now() < deadline) {
    REQUIRE(poller.poll());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  writer.join();
  REQUIRE(poller.good_lines() == 2);
  CHECK(poller.bad_lines() == 2);
  auto last = poller.last();
  REQUIRE(last);
  CHECK(last.value().utc_timestamp_ms == 2);
  CHECK(last.value().net_rx_bytes == 50);
  CHECK(poller.totals().net_rx_bytes == 150);
  CHECK(poller.totals().block_write_bytes == 2 * 8192);
  CHECK(poller.totals().utc_timestamp_ms == 2);
}
