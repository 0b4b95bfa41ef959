// CURVE on the broker's endpoints (README.md, "Operating Paddock"): allowed submitters and
// workers run jobs; a client without a key, with an unknown key or with a worker's key is
// refused, as is a submitter's key on the worker endpoint; secret key files others can read are
// refused; plaintext off loopback needs --allow-plaintext; and the wire carries no job content.
#include <sys/stat.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "loopback_capture.h"
#include "paddock/client/curve.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

// Keys broker, alice (a submitter), w1 (a worker) and mallory (in no allowlist), and allowlists
// clients.allow (alice) and workers.allow (w1), in `dir`.
struct Keys {
  explicit Keys(const TempDir& dir) : path(dir.path()) {
    for (const char* name : {"broker", "alice", "w1", "mallory"}) curve::write_key_pair(path, name);
    std::filesystem::copy_file(path + "/alice.pub", path + "/clients.allow");
    std::filesystem::copy_file(path + "/w1.pub", path + "/workers.allow");
  }
  std::vector<std::string> broker_args() const {
    return {"--curve-secret-key",    path + "/broker.key", "--client-allow",
            path + "/clients.allow", "--worker-allow",     path + "/workers.allow"};
  }
  std::vector<std::string> worker_args(const std::string& name) const {
    return {"--broker-public-key", path + "/broker.pub", "--curve-key", path + "/" + name + ".key"};
  }
  curve::ClientKeys client(const std::string& name) const {
    return *curve::load_client_keys(path + "/broker.pub", path + "/" + name + ".key");
  }
  std::string public_key(const std::string& name) const {
    return curve::read_public_key(path + "/" + name + ".pub");
  }
  std::string path;
};

// True once `needle` is in the file, waiting up to `timeout` for it.
bool log_shows(const std::string& file, const std::string& needle,
               std::chrono::milliseconds timeout = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (slurp(file).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// Everything a refused client hears within `wait` after its job and PING (sent at once, while
// its connection is pending: once refused, a send would block, as no connection takes it).
size_t answers_to_refused(client::Client& c, std::chrono::milliseconds wait) {
  size_t heard = 0;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (c.next(100ms)) ++heard;
  }
  return heard;
}

void send_job_and_ping(client::Client& c, const std::string& id) {
  c.submit(job(id, {"echo", "should-not-run"}));
  c.ping();
}

std::vector<std::string> ids(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

std::string random_marker() {
  std::mt19937_64 rng{std::random_device{}()};
  return "paddock-wire-marker-" + std::to_string(rng());
}

}  // namespace

TEST_CASE(
    "curve: an allowed client's jobs complete while clients without a key, with an unknown key or "
    "with a worker key are refused") {
  TempDir dir;
  Keys keys(dir);
  auto broker = start_broker(dir, keys.broker_args());
  const std::string broker_log = broker.process->log() + ".err";
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4, keys.worker_args("w1"));

  client::Client alice(broker.client_endpoint, keys.client("alice"));
  client::Client anonymous(broker.client_endpoint);
  send_job_and_ping(anonymous, "anon-1");
  client::Client mallory(broker.client_endpoint, keys.client("mallory"));
  send_job_and_ping(mallory, "mallory-1");
  client::Client impostor(broker.client_endpoint, keys.client("w1"));  // a worker's key
  send_job_and_ping(impostor, "impostor-1");

  const auto want = ids("alice-", 20);
  std::vector<schemas::JobRequest> jobs;
  for (const auto& id : want) jobs.push_back(job(id, {"echo", id}));
  alice.submit(jobs);

  CHECK(answers_to_refused(anonymous, 2s) == 0);
  CHECK(answers_to_refused(mallory, 1s) == 0);
  CHECK(answers_to_refused(impostor, 1s) == 0);

  auto answers = collect(alice, want, 30s);
  INFO(slurp(broker_log));
  REQUIRE(answers.all_exactly_once(want));
  for (const auto& id : want) {
    const auto& ev = answers.finals.at(id).front();
    REQUIRE(ev.kind == client::Event::Kind::kResult);
    CHECK(ev.result.stdout_data == id + "\n");
  }
  CHECK(log_shows(broker_log, "refused a client connection on"));  // no key: no CURVE at all
  CHECK(log_shows(broker_log,
                  "key " + keys.public_key("mallory") + ": key not in the client allowlist"));
  CHECK(
      log_shows(broker_log, "key " + keys.public_key("w1") + ": key not in the client allowlist"));
  CHECK(slurp(broker_log).find("'alice-") == std::string::npos);  // nothing odd about alice's
}

TEST_CASE("curve: a submitter key on the worker endpoint cannot register as a worker") {
  TempDir dir;
  Keys keys(dir);
  auto broker = start_broker(dir, keys.broker_args());
  const std::string broker_log = broker.process->log() + ".err";
  auto impostor =
      start_worker(dir, broker.worker_endpoint, "impostor", 4, keys.worker_args("alice"));
  REQUIRE(log_shows(broker_log, "refused a worker connection from"));
  CHECK(slurp(broker_log).find(keys.public_key("alice") + ": key not in the worker allowlist") !=
        std::string::npos);

  client::Client alice(broker.client_endpoint, keys.client("alice"));
  alice.submit(job("queued-1", {"echo", "hi"}));
  // The job waits: no worker registered (bounded wait, not a timing claim).
  auto early = collect(alice, {"queued-1"}, 2s, 0ms);
  CHECK(early.accepted.count("queued-1") == 1);
  CHECK(early.finals.empty());
  CHECK(slurp(broker_log).find("worker 'impostor' ready") == std::string::npos);

  // The legitimate worker registers and runs it.
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2, keys.worker_args("w1"));
  auto answers = collect(alice, {"queued-1"}, 30s);
  INFO(slurp(broker_log));
  REQUIRE(answers.all_exactly_once({"queued-1"}));
  CHECK(answers.finals.at("queued-1").front().kind == client::Event::Kind::kResult);
  CHECK(slurp(broker_log).find("worker 'impostor' ready") == std::string::npos);
  CHECK(slurp(dir.path() + "/worker-impostor.log").find("queued-1") == std::string::npos);
}

TEST_CASE("curve: a secret key file that others may read is refused by the broker and the worker") {
  TempDir dir;
  Keys keys(dir);
  REQUIRE(::chmod((keys.path + "/broker.key").c_str(), 0644) == 0);
  std::vector<std::string> args = {"--client-endpoint", "tcp://127.0.0.1:*", "--worker-endpoint",
                                   "tcp://127.0.0.1:*", "--no-journal"};
  for (const auto& a : keys.broker_args()) args.push_back(a);
  Process broker(PADDOCK_BROKER_BIN, args, dir.path() + "/broker-0644.log");
  auto status = broker.wait_for(10s);
  REQUIRE(status.has_value());
  CHECK(*status != 0);
  const std::string err = slurp(broker.log() + ".err");
  INFO(err);
  CHECK(err.find("broker.key has mode 0644") != std::string::npos);
  CHECK(err.find("chmod 600") != std::string::npos);

  REQUIRE(::chmod((keys.path + "/w1.key").c_str(), 0640) == 0);
  auto worker = start_worker(dir, "tcp://127.0.0.1:9", "w1", 1, keys.worker_args("w1"));
  auto wstatus = worker->wait_for(10s);
  REQUIRE(wstatus.has_value());
  CHECK(*wstatus == 2);
  CHECK(slurp(worker->log() + ".err").find("w1.key has mode 0640") != std::string::npos);
}

TEST_CASE(
    "curve: plaintext on a non-loopback endpoint needs --allow-plaintext, which logs a warning") {
  TempDir dir;
  {
    Process broker(PADDOCK_BROKER_BIN,
                   {"--client-endpoint", "tcp://0.0.0.0:*", "--worker-endpoint",
                    "tcp://127.0.0.1:*", "--no-journal"},
                   dir.path() + "/refused.log");
    auto status = broker.wait_for(10s);
    REQUIRE(status.has_value());
    CHECK(*status != 0);
    const std::string err = slurp(broker.log() + ".err");
    INFO(err);
    CHECK(err.find("tcp://0.0.0.0:* is not loopback or ipc") != std::string::npos);
    CHECK(err.find("--allow-plaintext") != std::string::npos);
  }
  auto broker = start_broker(dir, {"--allow-plaintext"}, "tcp://0.0.0.0:*", "tcp://127.0.0.1:*");
  CHECK(broker.process->running());
  CHECK(slurp(broker.process->log() + ".err").find("PLAINTEXT on tcp://0.0.0.0:*") !=
        std::string::npos);
  // With CURVE, a non-loopback endpoint needs no flag.
  Keys keys(dir);
  auto curve_broker = start_broker(dir, keys.broker_args(), "tcp://0.0.0.0:*", "tcp://127.0.0.1:*");
  CHECK(curve_broker.process->running());
  CHECK(slurp(curve_broker.process->log() + ".err").find("PLAINTEXT") == std::string::npos);
}

TEST_CASE(
    "curve: traffic captured on loopback shows job content in plaintext and none with CURVE") {
  // Runs one job whose argv and stdin carry `marker` and returns the captured payload of both
  // endpoints' ports.
  auto run_captured = [](const std::string& marker, bool use_curve) {
    TempDir dir;
    Keys keys(dir);
    auto broker = start_broker(dir, use_curve ? keys.broker_args() : std::vector<std::string>{});
    LoopbackCapture capture({port_of(broker.client_endpoint), port_of(broker.worker_endpoint)});
    auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1,
                               use_curve ? keys.worker_args("w1") : std::vector<std::string>{});
    std::optional<client::Client> c;
    if (use_curve) {
      c.emplace(broker.client_endpoint, keys.client("alice"));
    } else {
      c.emplace(broker.client_endpoint);
    }
    auto j = job("marked-1", {"echo", marker});
    j.stdin_data = marker;
    c->submit(j);
    auto answers = collect(*c, {"marked-1"}, 30s, 200ms);
    REQUIRE(answers.all_exactly_once({"marked-1"}));
    REQUIRE(answers.finals.at("marked-1").front().kind == client::Event::Kind::kResult);
    CHECK(answers.finals.at("marked-1").front().result.stdout_data == marker + "\n");
    REQUIRE(capture.packets() > 0);
    return capture.payload();
  };
  const std::string plain_marker = random_marker();
  CHECK(run_captured(plain_marker, false).find(plain_marker) != std::string::npos);  // control
  const std::string curve_marker = random_marker();
  CHECK(run_captured(curve_marker, true).find(curve_marker) == std::string::npos);
}

TEST_CASE("curve: paddock-load with an allowed key runs its jobs and without one gets no answer") {
  TempDir dir;
  Keys keys(dir);
  auto broker = start_broker(dir, keys.broker_args());
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4, keys.worker_args("w1"));
  auto load = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = {
        "--broker", broker.client_endpoint, "-n", "50",         "-c",
        "10",       "--timeout-s",          "5",  "--json-out", dir.path() + "/" + name + ".json"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "echo", "over-curve"});
    Process p(PADDOCK_LOAD_BIN, args, dir.path() + "/" + name + ".log");
    auto status = p.wait_for(60s);
    REQUIRE_MESSAGE(status.has_value(), "paddock-load did not finish: " << slurp(p.log() + ".err"));
    return std::make_pair(*status, slurp(p.log() + ".err"));
  };
  auto [ok_status, ok_err] = load("alice", {"--broker-public-key", keys.path + "/broker.pub",
                                            "--curve-key", keys.path + "/alice.key"});
  CAPTURE(ok_err);
  REQUIRE(ok_status == 0);
  const auto summary = nlohmann::json::parse(slurp(dir.path() + "/alice.json"));
  CHECK(summary.at("jobs") == 50);
  CHECK(summary.at("ok") == 50);

  // No key: the broker (CURVE on) never completes the handshake, so nothing is answered and the
  // tool gives up after --timeout-s, saying so.
  auto [plain_status, plain_err] = load("plain", {});
  CAPTURE(plain_err);
  CHECK(plain_status == 69);
  // An unknown key is refused too.
  auto [mallory_status, mallory_err] =
      load("mallory", {"--broker-public-key", keys.path + "/broker.pub", "--curve-key",
                       keys.path + "/mallory.key"});
  CAPTURE(mallory_err);
  CHECK(mallory_status == 69);
  CHECK(log_shows(broker.process->log() + ".err",
                  "key " + keys.public_key("mallory") + ": key not in the client allowlist"));
}
