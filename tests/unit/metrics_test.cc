// paddock::metrics: the Prometheus text format (HELP, TYPE, label escaping, histogram buckets)
// and the HTTP server that serves it.
#include "paddock/metrics/metrics.h"

#include <doctest/doctest.h>
#include <httplib.h>

#include <stdexcept>
#include <thread>

#include "paddock/metrics/http_server.h"

using namespace paddock::metrics;

namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

}  // namespace

TEST_CASE("metrics: counters and gauges render with HELP and TYPE lines") {
  Registry r;
  Counter& c = r.counter("jobs_total", "Jobs seen.");
  Gauge& g = r.gauge("depth", "Queue depth.");
  c.inc();
  c.inc(41);
  g.set(7);
  g.add(-2.5);
  const std::string text = r.render();
  CHECK(text ==
        "# HELP jobs_total Jobs seen.\n"
        "# TYPE jobs_total counter\n"
        "jobs_total 42\n"
        "# HELP depth Queue depth.\n"
        "# TYPE depth gauge\n"
        "depth 4.5\n");
}

TEST_CASE(
    "metrics: label values escape backslash, quote and newline, help escapes backslash and "
    "newline") {
  Registry r;
  auto& f = r.counter_family("failed_total", "Failed\\jobs\nby variant.", {"variant", "code"});
  f.with({"a\\b\"c\nd", "7"}).inc(3);
  const std::string text = r.render();
  CHECK(has_line(text, "# HELP failed_total Failed\\\\jobs\\nby variant."));
  CHECK(has_line(text, "failed_total{variant=\"a\\\\b\\\"c\\nd\",code=\"7\"} 3"));
}

TEST_CASE("metrics: a family keeps one child per label set, in a stable order") {
  Registry r;
  auto& f = r.gauge_family("depth", "d", {"priority"});
  Gauge& a = f.with({"5"});
  Gauge& b = f.with({"-1"});
  CHECK(&f.with({"5"}) == &a);
  a.set(2);
  b.set(1);
  const std::string text = r.render();
  CHECK(text.find("depth{priority=\"-1\"} 1\ndepth{priority=\"5\"} 2\n") != std::string::npos);
  CHECK_THROWS_AS(f.with({"1", "2"}), std::invalid_argument);
}

TEST_CASE(
    "metrics: histogram buckets are cumulative, inclusive, and end with +Inf, _sum and _count") {
  Registry r;
  auto& f = r.histogram_family("latency_seconds", "Latency.", {"start"}, {0.1, 1, 2.5});
  Histogram& h = f.with({"warm"});
  h.observe(0.05);
  h.observe(0.1);  // on a bound: in that bucket (le is inclusive)
  h.observe(0.5);
  h.observe(std::chrono::milliseconds(2000));
  h.observe(10.0);
  const std::string text = r.render();
  CHECK(has_line(text, "# TYPE latency_seconds histogram"));
  CHECK(has_line(text, "latency_seconds_bucket{start=\"warm\",le=\"0.1\"} 2"));
  CHECK(has_line(text, "latency_seconds_bucket{start=\"warm\",le=\"1\"} 3"));
  CHECK(has_line(text, "latency_seconds_bucket{start=\"warm\",le=\"2.5\"} 4"));
  CHECK(has_line(text, "latency_seconds_bucket{start=\"warm\",le=\"+Inf\"} 5"));
  CHECK(has_line(text, "latency_seconds_sum{start=\"warm\"} 12.65"));
  CHECK(has_line(text, "latency_seconds_count{start=\"warm\"} 5"));
  const auto s = h.snapshot();
  CHECK(s.cumulative == std::vector<uint64_t>{2, 3, 4, 5});
  CHECK(s.count == 5);
}

TEST_CASE("metrics: an unlabelled histogram has only le on its buckets") {
  Registry r;
  Histogram& h = r.histogram("wait_seconds", "w", {1});
  h.observe(0.5);
  const std::string text = r.render();
  CHECK(has_line(text, "wait_seconds_bucket{le=\"1\"} 1"));
  CHECK(has_line(text, "wait_seconds_bucket{le=\"+Inf\"} 1"));
  CHECK(has_line(text, "wait_seconds_sum 0.5"));
  CHECK(has_line(text, "wait_seconds_count 1"));
}

TEST_CASE("metrics: bad names, repeated names and unordered bounds are refused") {
  Registry r;
  CHECK_THROWS_AS(r.counter("1abc", "x"), std::invalid_argument);
  CHECK_THROWS_AS(r.counter("a-b", "x"), std::invalid_argument);
  CHECK_THROWS_AS(r.counter_family("ok", "x", {"__reserved"}), std::invalid_argument);
  CHECK_THROWS_AS(r.histogram_family("h", "x", {"le"}, {1}), std::invalid_argument);
  CHECK_THROWS_AS(r.histogram("h2", "x", {2, 1}), std::invalid_argument);
  r.counter("ns:name_total", "x");
  CHECK_THROWS_AS(r.gauge("ns:name_total", "x"), std::invalid_argument);
}

TEST_CASE(
    "metrics: sample values are integers when whole, shortest decimals otherwise, Inf and NaN "
    "spelled out") {
  CHECK(format_value(3) == "3");
  CHECK(format_value(0.25) == "0.25");
  CHECK(format_value(-1.5) == "-1.5");
  CHECK(format_value(1.0 / 0.0) == "+Inf");
  CHECK(format_value(-1.0 / 0.0) == "-Inf");
  CHECK(format_value(0.0 / 0.0) == "NaN");
}

TEST_CASE("metrics: collect hooks run before each render") {
  Registry r;
  Gauge& g = r.gauge("pool_ready", "p");
  int calls = 0;
  r.on_collect([&] { g.set(++calls); });
  CHECK(has_line(r.render(), "pool_ready 1"));
  CHECK(has_line(r.render(), "pool_ready 2"));
}

TEST_CASE("metrics: concurrent increments from several threads are all counted") {
  Registry r;
  Counter& c = r.counter("n_total", "n");
  Histogram& h = r.histogram("h", "h", latency_buckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) {
        c.inc();
        h.observe(0.001 * (i % 100));
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(c.value() == 40'000);
  CHECK(h.snapshot().count == 40'000);
}

TEST_CASE("metrics: listen addresses are HOST:PORT, [IPV6]:PORT or :PORT for loopback") {
  auto a = parse_listen_address("127.0.0.1:9100");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 9100);
  a = parse_listen_address(":0");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 0);
  a = parse_listen_address("[::1]:80");
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK_FALSE(parse_listen_address("localhost"));
  CHECK_FALSE(parse_listen_address("::1:80"));
  CHECK_FALSE(parse_listen_address("host:70000"));
  const auto no_port = parse_listen_address("host:");
  REQUIRE_FALSE(no_port);
  CHECK(no_port.error().message.find("port") != std::string::npos);
  CHECK(is_loopback("127.0.0.1:9100"));
  CHECK(is_loopback(":0"));
  CHECK(is_loopback("[::1]:9100"));
  CHECK_FALSE(is_loopback("0.0.0.0:9100"));
  CHECK_FALSE(is_loopback("10.1.2.3:9100"));
}

TEST_CASE(
    "metrics: the HTTP server answers GET /metrics on an ephemeral port, 404 elsewhere, and "
    "stops") {
  Registry r;
  r.counter("served_total", "s").inc(5);
  HttpServer server;
  serve_metrics(server, r);
  server.get("/boom", [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("no"); });
  REQUIRE(server.start("127.0.0.1:0"));
  REQUIRE(server.port() != 0);
  CHECK(server.address() == "127.0.0.1:" + std::to_string(server.port()));
  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/metrics");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == kContentType);
  CHECK(has_line(res->body, "served_total 5"));
  auto missing = client.Get("/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  auto boom = client.Get("/boom");
  REQUIRE(boom);
  CHECK(boom->status == 500);
  // A second server cannot take the same port.
  HttpServer other;
  const auto taken = other.start(server.address());
  REQUIRE_FALSE(taken);
  CHECK(taken.error().message.find(server.address()) != std::string::npos);
  server.stop();
  server.stop();
  CHECK_FALSE(httplib::Client("127.0.0.1", server.port()).Get("/metrics"));
}

TEST_CASE("metrics: a server stopped right after it started does not hang") {
  HttpServer server;
  REQUIRE(server.start(":0"));
  server.stop();
}
