// The broker's dashboard API (issue 13; broker/README.md, "Dashboard"): real broker and worker
// processes (the memory backend, a TEST DOUBLE that executes nothing), the API read over HTTP.
#include <doctest/doctest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "dashboard_probe.h"
#include "harness.h"

using namespace paddock;
using namespace paddock::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

using Reply = HttpReply;

Reply get(const std::string& address, const std::string& path, httplib::Headers headers = {}) {
  return http_get(address, path, std::move(headers));
}

json get_until(const std::string& address, const std::string& path,
               const std::function<bool(const json&)>& ok) {
  return http_get_until(address, path, ok);
}

std::vector<std::string> run_batch(const std::string& client_endpoint, int ok, int failing,
                                   const std::string& prefix = "") {
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  for (int i = 0; i < ok; ++i)
    jobs.push_back(job(prefix + "ok-" + std::to_string(i), {"echo", "hi"}));
  for (int i = 0; i < failing; ++i) {
    jobs.push_back(job(prefix + "bad-" + std::to_string(i), {"fail", "InvalidTransition", "nope"}));
  }
  for (const auto& j : jobs) ids.push_back(j.job_id);
  client::Client c(client_endpoint);
  c.submit(jobs);
  auto answers = collect(c, ids, 30s, 50ms);
  REQUIRE(answers.all_exactly_once(ids));
  return ids;
}

std::string write_token(const TempDir& dir, const std::string& token) {
  const std::string path = dir.path() + "/dashboard.token";
  std::ofstream(path) << token << "\n";
  ::chmod(path.c_str(), 0600);
  return path;
}

}  // namespace

TEST_CASE("dashboard api: overview workers and jobs count a batch with failing jobs") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4);
  run_batch(broker.client_endpoint, 12, 4);

  auto overview = get_until(broker.metrics_address, "/api/v1/overview", [](const json& j) {
    return j["totals"]["completed"] == 12 && j["totals"]["failed"] == 4;
  });
  CHECK(overview["api_version"] == 1);
  CHECK(overview["totals"]["accepted"] == 16);
  CHECK(overview["totals"]["completed"] == 12);
  CHECK(overview["totals"]["failed"] == 4);
  CHECK(overview["queue"]["held"] == 0);
  CHECK(overview["latency"]["jobs"] == 16);
  CHECK(overview["latency"]["p99_ms"].get<double>() >= overview["latency"]["p50_ms"].get<double>());
  REQUIRE(overview["errors"].size() == 1);
  CHECK(overview["errors"][0]["variant"] == "InvalidTransition");
  CHECK(overview["errors"][0]["count"] == 4);
  CHECK(overview["workers"]["connected"] == 1);

  auto workers = get_until(broker.metrics_address, "/api/v1/workers",
                           [](const json& j) { return j["workers"].size() == 1; });
  REQUIRE(workers["workers"].size() == 1);
  const auto& w = workers["workers"][0];
  CHECK(w["worker_id"] == "w1");
  CHECK(w["backend"] == "memory");
  CHECK(w["images"] == json::array({"default"}));
  CHECK(w["slots"]["total"] == 4);
  CHECK(w["jobs_answered"] == 16);
  CHECK(w["host"].get<std::string>().rfind("127.0.0.1", 0) == 0);

  auto failed = get_until(broker.metrics_address, "/api/v1/jobs?status=error",
                          [](const json& j) { return j["jobs"].size() == 4; });
  REQUIRE(failed["jobs"].size() == 4);
  CHECK(failed["jobs"][0]["variant"] == "InvalidTransition");

  auto one = get(broker.metrics_address, "/api/v1/jobs/bad-0");
  REQUIRE(one.status == 200);
  auto j = json::parse(one.body);
  CHECK(j["status"] == "error");
  CHECK(j["error"]["variant"] == "InvalidTransition");
  CHECK(j["error"]["message"].get<std::string>().find("invalid vm transition") !=
        std::string::npos);
  REQUIRE(j["attempts"].size() == 1);
  CHECK(j["attempts"][0]["worker_id"] == "w1");
  auto ok = json::parse(get(broker.metrics_address, "/api/v1/jobs/ok-3").body);
  CHECK(ok["result"]["exit_code"] == 0);
  CHECK(ok["result"]["stdout_head"] == "hi\n");
  CHECK(ok["result"]["backend"] == "memory");

  worker->signal(SIGTERM);
  CHECK(worker->wait_for(10s) == 0);
}

TEST_CASE("dashboard api: a worker's heartbeats report its host name and warm pools") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  auto worker =
      start_worker(dir, broker.worker_endpoint, "w1", 2,
                   {"--warm", "on", "--warm-min", "2", "--warm-max", "3", "--heartbeat-ms", "200"});
  char host[256] = {};
  REQUIRE(::gethostname(host, sizeof host - 1) == 0);

  auto ready = [](const json& w) {
    if (!w["warm_pools"].is_array() || w["warm_pools"].size() != 1) return false;
    return w["warm_pools"][0]["ready"].get<uint64_t>() >= 2;
  };
  auto workers = get_until(broker.metrics_address, "/api/v1/workers", [&](const json& j) {
    return j["workers"].size() == 1 && ready(j["workers"][0]);
  });
  INFO("workers: ", workers.dump(), "\nworker log: ", slurp(dir.path() + "/worker-w1.log"));
  REQUIRE(workers["workers"].size() == 1);
  const auto& w = workers["workers"][0];
  CHECK(w["hostname"] == std::string(host));
  CHECK(w["host"].get<std::string>().rfind("127.0.0.1", 0) == 0);  // still the peer address
  REQUIRE(ready(w));
  CHECK(w["warm_pools"][0]["template"] == "tpl-default-1x128");
  CHECK(w["warm_pools"][0]["target"].get<uint64_t>() >= 2);
}

TEST_CASE("dashboard api: the recent jobs ring keeps the newest and an unknown job is 404") {
  TempDir dir;
  auto broker =
      start_broker(dir, {"--metrics-address", "127.0.0.1:0", "--dashboard-recent-jobs", "5"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1);
  run_batch(broker.client_endpoint, 20, 0);
  // Until the last job is in: the ring holds 5 as soon as 5 jobs finished, long before the 20th.
  auto jobs = get_until(broker.metrics_address, "/api/v1/jobs?limit=100", [](const json& j) {
    return j["held"] == 5 && j.dump().find("\"ok-19\"") != std::string::npos;
  });
  CHECK(jobs["capacity"] == 5);
  CHECK(jobs["held"] == 5);
  CHECK(jobs["jobs"].size() == 5);
  CHECK(get(broker.metrics_address, "/api/v1/jobs?limit=2").body.find("\"ok-19\"") !=
        std::string::npos);
  CHECK(json::parse(get(broker.metrics_address, "/api/v1/jobs?limit=2").body)["jobs"].size() == 2);
  // The oldest left the ring; without a journal nothing else knows it.
  auto gone = get(broker.metrics_address, "/api/v1/jobs/ok-0");
  CHECK(gone.status == 404);
  CHECK(json::parse(gone.body)["error"].get<std::string>().find("no journal") != std::string::npos);
  CHECK(get(broker.metrics_address, "/api/v1/jobs/never-submitted").status == 404);
  CHECK(get(broker.metrics_address, "/api/v1/jobs?limit=many").status == 400);
  worker->signal(SIGTERM);
  CHECK(worker->wait_for(10s) == 0);
}

TEST_CASE("dashboard api: a job no longer in the ring is read back from the journal") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0", "--dashboard-recent-jobs",
                                   "1", "--journal", dir.path() + "/journal.db"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1);
  run_batch(broker.client_endpoint, 3, 1);
  get_until(broker.metrics_address, "/api/v1/overview",
            [](const json& j) { return j["totals"]["failed"] == 1; });
  auto bad = get(broker.metrics_address, "/api/v1/jobs/bad-0");
  REQUIRE(bad.status == 200);
  CHECK(json::parse(bad.body)["error"]["variant"] == "InvalidTransition");
  auto ok = get(broker.metrics_address, "/api/v1/jobs/ok-0");
  REQUIRE(ok.status == 200);
  auto j = json::parse(ok.body);
  CHECK(j["source"] == "journal");
  CHECK(j["status"] == "ok");
  CHECK(j["result"]["stdout_head"] == "hi\n");
  CHECK(j["request"]["argv"] == json::array({"echo", "hi"}));
  CHECK(get(broker.metrics_address, "/api/v1/jobs/never-submitted").status == 404);
  worker->signal(SIGTERM);
  CHECK(worker->wait_for(10s) == 0);
}

TEST_CASE("dashboard api: not served on a non-loopback address without a token while metrics are") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "0.0.0.0:0"});
  CHECK(get(broker.metrics_address, "/metrics").status == 200);
  auto refused = get(broker.metrics_address, "/api/v1/overview");
  CHECK(refused.status == 403);
  CHECK(refused.body.find("--dashboard-token-file") != std::string::npos);
  CHECK(get(broker.metrics_address, "/dashboard/").status == 403);
  CHECK(get(broker.metrics_address, "/api/v1/jobs/x").status == 403);
  CHECK(get(broker.metrics_address, "/login?token=anything").status == 403);
  broker.process->signal(SIGTERM);
  REQUIRE(broker.process->wait_for(10s) == 0);
  CHECK(slurp(broker.process->log() + ".err").find("dashboard NOT served") != std::string::npos);
}

TEST_CASE("dashboard api: with a token every request needs it as a bearer or the login cookie") {
  TempDir dir;
  const std::string token = "s3cret-operator-token-0123";
  auto broker = start_broker(
      dir, {"--metrics-address", "0.0.0.0:0", "--dashboard-token-file", write_token(dir, token)});
  CHECK(get(broker.metrics_address, "/metrics").status == 200);
  auto no_token = get(broker.metrics_address, "/api/v1/overview");
  CHECK(no_token.status == 401);
  CHECK(no_token.header("WWW-Authenticate").find("Bearer") != std::string::npos);
  CHECK(get(broker.metrics_address, "/api/v1/overview",
            {{"Authorization", "Bearer wrong-token-0123456"}})
            .status == 401);
  CHECK(get(broker.metrics_address, "/api/v1/overview", {{"Authorization", "Bearer " + token}})
            .status == 200);
  CHECK(get(broker.metrics_address, "/dashboard/").status == 401);
  CHECK(get(broker.metrics_address, "/login?token=wrong-token-0123456").status == 401);
  auto login = get(broker.metrics_address, "/login?token=" + token);
  CHECK(login.status == 302);
  const std::string cookie = login.header("Set-Cookie");
  CHECK(cookie.find("HttpOnly") != std::string::npos);
  const std::string pair = cookie.substr(0, cookie.find(';'));
  auto page = get(broker.metrics_address, "/dashboard/", {{"Cookie", pair}});
  CHECK(page.status == 200);
  CHECK(page.body.find("<title>Paddock dashboard</title>") != std::string::npos);
  CHECK(get(broker.metrics_address, "/dashboard/app.js", {{"Cookie", pair}}).status == 200);
  broker.process->signal(SIGTERM);
  REQUIRE(broker.process->wait_for(10s) == 0);
  CHECK(slurp(broker.process->log() + ".err").find("operator token required") != std::string::npos);
}

TEST_CASE("dashboard api: a token file others may read stops the broker at start") {
  TempDir dir;
  const std::string path = write_token(dir, "s3cret-operator-token-0123");
  ::chmod(path.c_str(), 0644);
  std::string error;
  try {
    start_broker(dir, {"--metrics-address", "127.0.0.1:0", "--dashboard-token-file", path});
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  CHECK(error.find("chmod 600") != std::string::npos);
}
