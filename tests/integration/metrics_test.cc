// Metrics endpoints (issue 8): the broker's and a worker's /metrics, scraped over HTTP during and
// after a run, count what the run did.
#include <doctest/doctest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"

using namespace paddock;
using namespace paddock::testing;
using namespace std::chrono_literals;

namespace {

// GET http://ADDRESS/metrics; nullopt if it did not answer 200.
std::optional<std::string> scrape(const std::string& address) {
  httplib::Client client("http://" + address);
  client.set_connection_timeout(2s);
  client.set_read_timeout(5s);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return std::nullopt;
  return res->body;
}

// The value of one series (`name{labels}` exactly as rendered), or nullopt if it is absent.
std::optional<double> sample(const std::string& text, const std::string& series) {
  const std::string key = series + " ";
  size_t at = text.rfind(key, 0) == 0 ? 0 : text.find("\n" + key);
  if (at == std::string::npos) return std::nullopt;
  if (at != 0) ++at;
  const size_t end = text.find('\n', at);
  return std::stod(text.substr(at + key.size(), end - at - key.size()));
}

// Scrapes until `ok` holds of the text (the broker publishes what its loop knows every 20 ms or
// so) or 10 s pass; returns the last text scraped.
std::string scrape_until(const std::string& address,
                         const std::function<bool(const std::string&)>& ok) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto text = scrape(address)) {
      last = *text;
      if (ok(last)) return last;
    }
    std::this_thread::sleep_for(20ms);
  }
  return last;
}

auto equals(const std::string& series, double value) {
  return [series, value](const std::string& text) { return sample(text, series) == value; };
}

// Waits for a JSON file a process writes once it has started.
nlohmann::json wait_for_ready_file(const std::string& path, Process& process) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!std::filesystem::exists(path)) {
    if (std::chrono::steady_clock::now() > deadline || !process.running()) {
      throw std::runtime_error("no ready file " + path + ": " + slurp(process.log() + ".err"));
    }
    std::this_thread::sleep_for(10ms);
  }
  return nlohmann::json::parse(slurp(path));
}

}  // namespace

TEST_CASE(
    "metrics: the broker's and a worker's endpoints count accepted, completed and failed jobs, "
    "latencies, workers and slots") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  REQUIRE(broker.metrics_address.rfind("127.0.0.1:", 0) == 0);
  REQUIRE(broker.metrics_address != "127.0.0.1:0");

  // Jobs accepted before any worker exists: all queued, by priority.
  constexpr int kOk = 30;
  constexpr int kFailing = 10;
  constexpr int kHigh = 5;  // of the ok ones, at priority 5
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  for (int i = 0; i < kOk; ++i) {
    auto j = job("ok-" + std::to_string(i), {"echo", "hi"});
    if (i < kHigh) j.priority = 5;
    jobs.push_back(j);
  }
  for (int i = 0; i < kFailing; ++i) {
    jobs.push_back(job("bad-" + std::to_string(i), {"fail", "InvalidTransition", "nope"}));
  }
  for (const auto& j : jobs) ids.push_back(j.job_id);
  client::Client c(broker.client_endpoint);
  c.submit(jobs);

  // During the run: the endpoint answers while jobs wait for a worker.
  const int total = kOk + kFailing;
  std::string text = scrape_until(
      broker.metrics_address, equals("paddock_broker_queue_depth{priority=\"0\"}", total - kHigh));
  CHECK(sample(text, "paddock_broker_jobs_accepted_total") == total);
  CHECK(sample(text, "paddock_broker_queue_depth{priority=\"0\"}") == total - kHigh);
  CHECK(sample(text, "paddock_broker_queue_depth{priority=\"5\"}") == kHigh);
  CHECK(sample(text, "paddock_broker_jobs_held") == total);
  CHECK(sample(text, "paddock_broker_workers_connected") == 0);
  CHECK(sample(text, "paddock_broker_journal_enabled") == 0);
  CHECK(text.find("# TYPE paddock_broker_dispatch_latency_seconds histogram") != std::string::npos);

  const std::string worker_ready = dir.path() + "/worker.ready";
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4,
                             {"--metrics-address", ":0", "--ready-file", worker_ready});
  const auto ready = wait_for_ready_file(worker_ready, *worker);
  const std::string worker_metrics = ready.value("metrics", "");
  REQUIRE(worker_metrics.rfind("127.0.0.1:", 0) == 0);
  CHECK(scrape(worker_metrics));  // answers while the worker runs the jobs

  auto answers = collect(c, ids, 30s, 100ms);
  REQUIRE(answers.all_exactly_once(ids));
  const auto& bad = answers.finals.at("bad-0").front();
  REQUIRE(bad.kind == client::Event::Kind::kError);
  const std::string failed_labels =
      "{variant=\"InvalidTransition\",code=\"" + std::to_string(bad.error.code) + "\"}";

  // After the run. The worker grants its credits back after each job: all 4 free in the end.
  text = scrape_until(broker.metrics_address, [&](const std::string& t) {
    return sample(t, "paddock_broker_jobs_completed_total") == kOk &&
           sample(t, "paddock_broker_worker_slots_free") == 4;
  });
  CHECK(sample(text, "paddock_broker_jobs_accepted_total") == total);
  CHECK(sample(text, "paddock_broker_jobs_completed_total") == kOk);
  CHECK(sample(text, "paddock_broker_jobs_failed_total" + failed_labels) == kFailing);
  CHECK(sample(text, "paddock_broker_jobs_rejected_total") == 0);
  CHECK(sample(text, "paddock_broker_jobs_retried_total") == 0);
  CHECK(sample(text, "paddock_broker_dispatch_latency_seconds_count") == total);
  CHECK(sample(text, "paddock_broker_dispatch_latency_seconds_bucket{le=\"+Inf\"}") == total);
  CHECK(sample(text, "paddock_broker_job_latency_seconds_count") == total);
  CHECK(sample(text, "paddock_broker_job_latency_seconds_sum") > 0);
  CHECK(sample(text, "paddock_broker_workers_connected") == 1);
  CHECK(sample(text, "paddock_broker_worker_slots_free") == 4);
  CHECK(sample(text, "paddock_broker_queue_depth{priority=\"0\"}") == 0);
  CHECK(sample(text, "paddock_broker_queue_depth{priority=\"5\"}") == 0);
  CHECK(sample(text, "paddock_broker_jobs_running") == 0);
  CHECK(sample(text, "paddock_broker_jobs_held") == 0);

  auto wtext = scrape(worker_metrics);
  REQUIRE(wtext);
  CHECK(sample(*wtext, "paddock_worker_info{worker_id=\"w1\",backend=\"memory\"}") == 1);
  CHECK(sample(*wtext, "paddock_worker_jobs_total{outcome=\"ok\"}") == kOk);
  CHECK(sample(*wtext, "paddock_worker_jobs_total{outcome=\"error\"}") == kFailing);
  CHECK(sample(*wtext, "paddock_worker_jobs_failed_total" + failed_labels) == kFailing);
  CHECK(sample(*wtext, "paddock_worker_job_duration_seconds_count") == total);
  CHECK(sample(*wtext, "paddock_worker_slots{state=\"busy\"}") == 0);
  CHECK(sample(*wtext, "paddock_worker_slots{state=\"free\"}") == 4);
  // Every job's VM started, from a warm pool or cold.
  const auto warm = sample(*wtext, "paddock_worker_vm_start_seconds_count{start=\"warm\"}");
  const auto cold = sample(*wtext, "paddock_worker_vm_start_seconds_count{start=\"cold\"}");
  REQUIRE(warm);
  REQUIRE(cold);
  CHECK(*warm + *cold == total);
  // Every VM was torn down after its job's answer, before the slot's credit went back.
  CHECK(sample(*wtext, "paddock_worker_vm_teardown_seconds_count") == total);
  CHECK(sample(*wtext, "paddock_worker_warm_pool_ready{template=\"tpl-default-1x128\"}"));
  CHECK(sample(*wtext, "paddock_worker_warm_pool_broken{template=\"tpl-default-1x128\"}") == 0);

  worker->signal(SIGTERM);
  CHECK(worker->wait_for(10s) == 0);
}

TEST_CASE(
    "metrics: a broker whose metrics address is taken does not start, and says which address") {
  TempDir dir;
  auto first = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  REQUIRE_FALSE(first.metrics_address.empty());
  std::string error;
  try {
    start_broker(dir, {"--metrics-address", first.metrics_address});
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  CHECK(error.find(first.metrics_address) != std::string::npos);
  MESSAGE(error);
}
