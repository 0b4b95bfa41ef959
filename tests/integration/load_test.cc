// paddock-load (tools/load) against a real broker and an in-memory worker: closed and open loop,
// every job answered, the JSON summary's contract, errors counted by variant, and giving up on a
// broker without workers.
#include <doctest/doctest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "harness.h"

using namespace paddock;
using namespace paddock::testing;
using nlohmann::json;

namespace {

struct LoadRun {
  int status = -1;
  json summary;     // from --json-out
  std::string out;  // stdout
  std::string err;
};

LoadRun run_load(const TempDir& dir, const Broker& broker, const std::string& name,
                 std::vector<std::string> args) {
  const std::string json_out = dir.path() + "/" + name + ".json";
  std::vector<std::string> all = {"--broker", broker.client_endpoint, "--json", "--json-out",
                                  json_out};
  all.insert(all.end(), args.begin(), args.end());
  Process load(PADDOCK_LOAD_BIN, all, dir.path() + "/" + name + ".log");
  LoadRun run;
  const auto status = load.wait_for(60s);
  REQUIRE_MESSAGE(status.has_value(),
                  "paddock-load did not finish: " << slurp(load.log() + ".err"));
  run.status = *status;
  run.out = slurp(load.log());
  run.err = slurp(load.log() + ".err");
  std::ifstream in(json_out);
  REQUIRE_MESSAGE(in.good(), "no --json-out file; stderr: " << run.err);
  run.summary = json::parse(in);
  // --json prints the same object, alone, on stdout.
  CHECK(json::parse(run.out) == run.summary);
  return run;
}

void check_latencies(const json& latency) {
  for (const char* key : {"p50", "p90", "p99", "p999", "max", "mean", "count"}) {
    CAPTURE(key);
    REQUIRE(latency.contains(key));
  }
  CHECK(latency["p50"] <= latency["p90"]);
  CHECK(latency["p90"] <= latency["p99"]);
  CHECK(latency["p99"] <= latency["p999"]);
  CHECK(latency["p999"] <= latency["max"]);
  CHECK(latency["max"].get<uint64_t>() > 0);
}

void check_all_ran(const LoadRun& run, uint64_t jobs) {
  CAPTURE(run.summary.dump());
  CAPTURE(run.err);
  CHECK(run.status == 0);
  CHECK(run.summary["complete"] == true);
  CHECK(run.summary["jobs"] == jobs);
  CHECK(run.summary["ok"] == jobs);
  CHECK(run.summary["errors"] == 0);
  CHECK(run.summary["errors_by_variant"].empty());
  CHECK(run.summary["unanswered"] == 0);
  CHECK(run.summary["duplicate_answers"] == 0);
  CHECK(run.summary["warm"].get<uint64_t>() + run.summary["cold"].get<uint64_t>() == jobs);
  CHECK(run.summary["backends"]["memory"] == jobs);
  CHECK(run.summary["throughput_jobs_per_s"].get<double>() > 0);
  CHECK(run.summary["elapsed_s"].get<double>() > 0);
  const auto& latency = run.summary["latency_us"];
  check_latencies(latency["submit_to_accepted"]);
  check_latencies(latency["submit_to_result"]);
  CHECK(latency["submit_to_accepted"]["count"] == jobs);
  CHECK(latency["submit_to_result"]["count"] == jobs);
}

}  // namespace

TEST_CASE("paddock-load closed loop: 2000 jobs through a memory worker, every one answered") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 64);
  auto run = run_load(dir, broker, "closed",
                      {"--jobs", "2000", "--concurrency", "200", "--", "echo", "hi"});
  check_all_ran(run, 2000);
  CHECK(run.summary["mode"] == "closed");
  CHECK(run.summary["concurrency"] == 200);
  CHECK(run.summary["latency_from"] == "send");
}

TEST_CASE("paddock-load open loop: 500 jobs per second for 1 s, latency from the schedule") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 64);
  auto run = run_load(dir, broker, "open", {"--rate", "500", "--duration", "1", "--", "true"});
  check_all_ran(run, 500);
  CHECK(run.summary["mode"] == "open");
  CHECK(run.summary["rate"] == 500.0);
  CHECK(run.summary["latency_from"] == "scheduled_send");
}

TEST_CASE("paddock-load counts ERRORs by variant and non-zero exits, and still exits 0") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 16);

  // The test double answers `fail <variant>` with that ERROR (Unsupported is not retried).
  auto failing = run_load(dir, broker, "fail",
                          {"--jobs", "100", "-c", "20", "--", "fail", "Unsupported", "boom"});
  CAPTURE(failing.summary.dump());
  CHECK(failing.status == 0);
  CHECK(failing.summary["jobs"] == 100);
  CHECK(failing.summary["ok"] == 0);
  CHECK(failing.summary["errors"] == 100);
  CHECK(failing.summary["errors_by_variant"] == json{{"Unsupported", 100}});
  CHECK(failing.summary["latency_us"]["submit_to_result"]["count"] == 100);

  // A job that runs and exits non-zero is a RESULT: ok, counted apart. From a template file.
  const std::string tmpl = dir.path() + "/exit3.json";
  std::ofstream(tmpl) << R"({"argv": ["exit", "3"], "priority": 5})";
  auto nonzero = run_load(dir, broker, "exit3", {"--jobs", "100", "-c", "20", "--template", tmpl});
  CAPTURE(nonzero.summary.dump());
  CHECK(nonzero.status == 0);
  CHECK(nonzero.summary["ok"] == 100);
  CHECK(nonzero.summary["nonzero_exit"] == 100);
  CHECK(nonzero.summary["errors"] == 0);
}

TEST_CASE("paddock-load gives up when nothing is answered within --timeout-s, exit 69") {
  TempDir dir;
  auto broker = start_broker(dir);  // no worker: jobs are accepted, never answered
  auto run = run_load(dir, broker, "stalled", {"--jobs", "20", "--timeout-s", "1"});
  CAPTURE(run.summary.dump());
  CHECK(run.status == 69);
  CHECK(run.summary["complete"] == false);
  CHECK(run.summary["jobs"] == 20);
  CHECK(run.summary["unanswered"] == 20);
  CHECK(run.summary["latency_us"]["submit_to_accepted"]["count"] == 20);
  CHECK(run.err.find("20 jobs unanswered") != std::string::npos);
  CHECK(run.err.find("--timeout-s") != std::string::npos);
}

TEST_CASE("paddock-load with no broker at the endpoint says so and exits 69") {
  TempDir dir;
  Broker nobody;
  nobody.client_endpoint = "tcp://127.0.0.1:1";  // nothing listens there
  auto run = run_load(dir, nobody, "nobody", {"--jobs", "5", "--timeout-s", "1"});
  CAPTURE(run.summary.dump());
  CHECK(run.status == 69);
  CHECK(run.summary["complete"] == false);
  CHECK(run.summary["unanswered"] == 5);
  CHECK(run.err.find("did not answer") != std::string::npos);
}
