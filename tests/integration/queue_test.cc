// Broker and workers as real processes over loopback TCP: every accepted job answered exactly
// once, through worker crashes, garbage and drains.
#include <doctest/doctest.h>
#include <signal.h>

#include <thread>

#include "dashboard_probe.h"
#include "harness.h"
#include "paddock/schemas/frames.h"
#include "paddock/wire/zmq_frames.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

std::vector<std::string> ids_of(const std::vector<schemas::JobRequest>& jobs) {
  std::vector<std::string> ids;
  for (const auto& j : jobs) ids.push_back(j.job_id);
  return ids;
}

}  // namespace

TEST_CASE("1000 jobs through a broker and a worker: every one answered exactly once") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 8);
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs;
  for (int i = 0; i < 1000; ++i) {
    jobs.push_back(job("job-" + std::to_string(i), {"echo", "n", std::to_string(i)}));
  }
  c.submit(jobs);
  auto answers = collect(c, ids_of(jobs), 60s);
  CHECK(answers.accepted.size() == 1000);
  REQUIRE(answers.all_exactly_once(ids_of(jobs)));
  for (int i = 0; i < 1000; ++i) {
    const auto& ev = answers.finals.at("job-" + std::to_string(i)).front();
    REQUIRE(ev.kind == client::Event::Kind::kResult);
    CHECK(ev.result.stdout_data == "n " + std::to_string(i) + "\n");
    CHECK(ev.result.backend == "memory");
  }
  CHECK(answers.others.empty());
}

TEST_CASE("warm starts: a job through broker and worker runs in a template's clone") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  client::Client c(broker.client_endpoint);
  // The template is built in the background at start; a job that comes before it is cold. One at
  // a time, until one is warm (the first, as a rule, on the test double).
  schemas::JobResult warm;
  for (int i = 0; i < 20 && !warm.warm; ++i) {
    const std::string id = "warm-" + std::to_string(i);
    c.submit(job(id, {"echo", "hi"}));
    auto answers = collect(c, {id}, 10s, 0ms);
    REQUIRE(answers.finals.count(id) == 1);
    REQUIRE(answers.finals.at(id).front().kind == client::Event::Kind::kResult);
    warm = answers.finals.at(id).front().result;
    if (!warm.warm) CHECK(warm.template_vm.empty());
  }
  CHECK(warm.warm);
  CHECK(warm.template_vm.rfind("tpl-default-1x128-", 0) == 0);
  CHECK(warm.stdout_data == "hi\n");
  // A job of another spec gets its own pool (and template) on first use.
  auto other = job("warm-big", {"true"});
  other.vcpus = 2;
  other.mem_mib = 256;
  c.submit(other);
  auto answers = collect(c, {"warm-big"}, 10s, 0ms);
  REQUIRE(answers.finals.count("warm-big") == 1);
  const auto& big = answers.finals.at("warm-big").front().result;
  if (big.warm) CHECK(big.template_vm.rfind("tpl-default-2x256-", 0) == 0);
}

TEST_CASE("--warm off: every job cold-boots and names no template") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2, {"--warm", "off"});
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(job("cold-" + std::to_string(i), {"true"}));
  c.submit(jobs);
  auto answers = collect(c, ids_of(jobs), 10s);
  REQUIRE(answers.all_exactly_once(ids_of(jobs)));
  for (const auto& id : ids_of(jobs)) {
    const auto& r = answers.finals.at(id).front().result;
    CHECK_FALSE(r.warm);
    CHECK(r.template_vm.empty());
  }
}

TEST_CASE("a worker killed with SIGKILL mid-batch: its jobs finish on a second worker, once each") {
  TempDir dir;
  auto broker = start_broker(
      dir, {"--heartbeat-ms", "100", "--liveness", "3", "--metrics-address", "127.0.0.1:0"});
  auto victim = start_worker(dir, broker.worker_endpoint, "victim", 4, {"--heartbeat-ms", "100"});
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs;
  for (int i = 0; i < 200; ++i) {
    jobs.push_back(job("k-" + std::to_string(i), {"sleep", "200"}));
  }
  c.submit(jobs);
  // Once the victim holds jobs (the only worker: whatever runs, runs there), kill it without
  // warning. 200 jobs of 200 ms on 4 slots keep it busy for 10 s, so it dies holding some.
  auto overview = http_get_until(
      broker.metrics_address, "/api/v1/overview",
      [](const nlohmann::json& j) { return j["queue"]["running"].get<int>() > 0; }, 60s);
  REQUIRE_MESSAGE(overview.is_object(), slurp(victim->log() + ".err"));
  REQUIRE(overview["queue"]["running"].get<int>() > 0);
  victim->signal(SIGKILL);
  REQUIRE(victim->wait_for(5s).has_value());
  auto survivor =
      start_worker(dir, broker.worker_endpoint, "survivor", 4, {"--heartbeat-ms", "100"});
  auto answers = collect(c, ids_of(jobs), 60s, 500ms);
  REQUIRE(answers.all_exactly_once(ids_of(jobs)));
  size_t on_survivor = 0, retried = 0;
  for (const auto& [id, evs] : answers.finals) {
    REQUIRE(evs.front().kind == client::Event::Kind::kResult);
    on_survivor += evs.front().result.worker_id == "survivor";
    retried += evs.front().result.attempt > 1;
  }
  CHECK(on_survivor > 0);
  CHECK(retried > 0);  // the victim's in-flight jobs came back with attempt + 1
  // Found dead by its missed heartbeats or by its vanished connection, whichever came first.
  const std::string log = slurp(broker.process->log() + ".err");
  const bool declared_dead =
      log.find("worker 'victim' missed its heartbeats") != std::string::npos ||
      log.find("worker 'victim' is unreachable") != std::string::npos;
  CHECK(declared_dead);
}

TEST_CASE("garbage frames from a raw socket do not disturb a normal client's jobs") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4);
  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(broker.client_endpoint);
  zmq::socket_t raw_worker(ctx, zmq::socket_type::dealer);
  raw_worker.set(zmq::sockopt::linger, 0);
  raw_worker.connect(broker.worker_endpoint);

  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs;
  for (int i = 0; i < 300; ++i) jobs.push_back(job("g-" + std::to_string(i), {"echo", "ok"}));
  c.submit(jobs);

  const std::vector<std::vector<std::string>> garbage = {
      {"hello"},
      {"PDK1"},
      {"PDK1", "\x01"},
      {"PDK1", std::string("\x01\x02", 2), "x"},
      {"PDK1", "\x01", "\xc1"},                                  // never-used msgpack byte
      {"PDK1", "\x01", std::string("\xdd\xff\xff\xff\xff", 5)},  // array of 4 G entries
      {"PDK1", "\x01", std::string(64, '\x91')},                 // nesting far too deep
      {"PDK1", "\x7f", "{}"},
      {"PDK2", "\x01", "\x80"},
      {"PDK1", "\x0a", "\x80"},  // a worker command on the client side
  };
  uint32_t seed = 12345;
  for (int round = 0; round < 50; ++round) {
    for (const auto& g : garbage) {
      wire::send_message(raw, g);
      wire::send_message(raw_worker, g);
    }
    std::string noise(1 + (round * 37) % 300, '\0');
    for (auto& ch : noise) {
      seed = seed * 1103515245 + 12345;
      ch = static_cast<char>(seed >> 16);
    }
    wire::send_message(raw, {"PDK1", "\x01", noise});
    wire::send_message(raw_worker, {"PDK1", "\x0a", noise});
  }
  auto answers = collect(c, ids_of(jobs), 60s);
  REQUIRE(answers.all_exactly_once(ids_of(jobs)));
  for (const auto& [id, evs] : answers.finals) {
    CHECK(evs.front().kind == client::Event::Kind::kResult);
  }
  // The raw client got InvalidRequest errors naming what was wrong, never a crash.
  std::vector<zmq::message_t> frames;
  int errors = 0;
  while (true) {
    zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(500)) == 0) break;
    while (wire::recv_message(raw, frames)) {
      auto parts = wire::views(frames);
      auto env = schemas::parse_envelope(parts, schemas::Direction::kBrokerToClient);
      REQUIRE(env);
      REQUIRE(env->command == schemas::Command::kError);
      auto e = schemas::decode_job_error(env->bodies[0]);
      REQUIRE(e);
      CHECK(e->code == 100);
      CHECK_FALSE(e->message.empty());
      ++errors;
    }
  }
  CHECK(errors >= 500);
  CHECK(broker.process->running());
  CHECK(worker->running());
}

TEST_CASE("SIGTERM drains a worker: jobs in flight finish, then it exits 0") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  auto worker = start_worker(dir, broker.worker_endpoint, "drainer", 2);
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs = {
      job("d-1", {"sleep", "500"}), job("d-2", {"sleep", "500"}), job("d-3", {"echo", "later"})};
  // Wait until the worker has registered (a loaded machine may take a while to start it), so
  // that d-1 and d-2 are running and d-3 waits for a credit when SIGTERM comes.
  for (int i = 0; i < 500 && slurp(broker.process->log() + ".err").find("worker 'drainer' ready") ==
                                 std::string::npos;
       ++i) {
    std::this_thread::sleep_for(20ms);
  }
  c.submit(jobs);
  REQUIRE(wait_until_running(broker.metrics_address, "d-1"));
  REQUIRE(wait_until_running(broker.metrics_address, "d-2"));
  worker->signal(SIGTERM);
  auto code = worker->wait_for(10s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  auto first = collect(c, {"d-1", "d-2"}, 5s);
  CHECK(first.all_exactly_once({"d-1", "d-2"}));
  CHECK(first.finals.count("d-3") == 0);  // not taken by the draining worker
  auto second_worker = start_worker(dir, broker.worker_endpoint, "next", 2);
  auto second = collect(c, {"d-3"}, 10s);
  REQUIRE(second.finals.count("d-3") == 1);
  CHECK(second.finals.at("d-3").front().result.worker_id == "next");
}

TEST_CASE("CANCEL: a queued job ends Cancelled and an unknown job is UnknownJob") {
  TempDir dir;
  auto broker = start_broker(dir);
  client::Client c(broker.client_endpoint);  // no worker: the job stays queued
  c.submit(job("q-1", {"echo", "never"}));
  c.cancel("q-1");
  c.cancel("nobody");
  auto answers = collect(c, {"q-1", "nobody"}, 5s);
  REQUIRE(answers.all_exactly_once({"q-1", "nobody"}));
  CHECK(answers.finals.at("q-1").front().error.variant == "Cancelled");
  CHECK(answers.finals.at("q-1").front().error.code == 101);
  CHECK(answers.finals.at("nobody").front().error.variant == "UnknownJob");
  CHECK(answers.finals.at("nobody").front().error.code == 105);
}

TEST_CASE("CANCEL of a running job stops it on its worker") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1);
  client::Client c(broker.client_endpoint);
  c.submit(job("long", {"sleep", "30000"}));
  // Cancel once it is on the worker (before, the broker cancels it in its queue: no worker_id).
  REQUIRE_MESSAGE(wait_until_running(broker.metrics_address, "long"),
                  slurp(worker->log() + ".err"));
  c.cancel("long");
  auto answers = collect(c, {"long"}, 10s);
  REQUIRE(answers.all_exactly_once({"long"}));
  const auto& ev = answers.finals.at("long").front();
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.variant == "Cancelled");
  CHECK(ev.error.worker_id == "w1");
}

TEST_CASE("a job whose worker dies on every attempt ends with WorkerLost") {
  TempDir dir;
  auto broker = start_broker(
      dir, {"--heartbeat-ms", "100", "--max-attempts", "2", "--metrics-address", "127.0.0.1:0"});
  client::Client c(broker.client_endpoint);
  c.submit(job("doomed", {"sleep", "60000"}));
  for (int attempt = 1; attempt <= 2; ++attempt) {
    auto w = start_worker(dir, broker.worker_endpoint, "w" + std::to_string(attempt), 1,
                          {"--heartbeat-ms", "100"});
    REQUIRE(wait_until_running(broker.metrics_address, "doomed", "w" + std::to_string(attempt)));
    w->signal(SIGKILL);
    REQUIRE(w->wait_for(5s).has_value());
  }
  auto answers = collect(c, {"doomed"}, 10s);
  REQUIRE(answers.all_exactly_once({"doomed"}));
  const auto& e = answers.finals.at("doomed").front().error;
  CHECK(e.variant == "WorkerLost");
  CHECK(e.code == 102);
  CHECK(e.attempt == 2);
  CHECK(e.retryable);
}

TEST_CASE("a full queue REJECTS with QueueFull and a past deadline is DeadlineExceeded") {
  TempDir dir;
  auto broker = start_broker(dir, {"--max-queue", "2", "--heartbeat-ms", "100"});
  client::Client c(broker.client_endpoint);
  auto late = job("late", {"echo"});
  late.deadline_ms = 1;  // long past
  const std::vector<schemas::JobRequest> batch = {job("a", {"echo"}), late, job("c", {"echo"})};
  c.submit(batch);
  auto answers = collect(c, {"late"}, 5s);
  REQUIRE(answers.finals.count("late") == 1);
  CHECK(answers.finals.at("late").front().error.variant == "DeadlineExceeded");
  CHECK(answers.finals.at("late").front().error.code == 104);
  REQUIRE(answers.others.size() == 1);
  CHECK(answers.others[0].kind == client::Event::Kind::kRejected);
  CHECK(answers.others[0].error.job_id == "c");
  CHECK(answers.others[0].error.code == 103);
  CHECK(answers.others[0].error.retryable);
}

TEST_CASE("a re-submitted job_id is not run twice") {
  TempDir dir;
  auto broker = start_broker(dir);
  client::Client c(broker.client_endpoint);
  c.submit(job("once", {"echo", "x"}));
  c.submit(job("once", {"echo", "x"}));
  std::this_thread::sleep_for(200ms);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  auto answers = collect(c, {"once"}, 10s, 500ms);
  CHECK(answers.all_exactly_once({"once"}));
}

TEST_CASE("a worker re-registers with a restarted broker and keeps serving") {
  TempDir dir;
  auto broker = start_broker(dir, {"--heartbeat-ms", "100"});
  const std::string client_ep = broker.client_endpoint, worker_ep = broker.worker_endpoint;
  auto worker = start_worker(dir, worker_ep, "w1", 2, {"--heartbeat-ms", "100"});
  {
    client::Client c(client_ep);
    c.submit(job("before", {"echo", "1"}));
    REQUIRE(collect(c, {"before"}, 10s).all_exactly_once({"before"}));
  }
  broker.process->signal(SIGKILL);
  REQUIRE(broker.process->wait_for(5s).has_value());
  auto again = start_broker(dir, {"--heartbeat-ms", "100"}, client_ep, worker_ep);
  client::Client c(client_ep);
  c.submit(job("after", {"echo", "2"}));
  auto answers = collect(c, {"after"}, 20s);
  REQUIRE(answers.all_exactly_once({"after"}));
  CHECK(answers.finals.at("after").front().result.stdout_data == "2\n");
  CHECK(worker->running());
}

TEST_CASE("each of the 13 runtime variants reaches the submitter with its name, code and message") {
  TempDir dir;
  auto broker = start_broker(dir);
  // Cold starts (--warm off): the failing VM's id is the cold one, w1-vm-<n>.
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4, {"--warm", "off"});
  client::Client c(broker.client_endpoint);
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"VmAlreadyExists", "vm 'w1-vm-1' already exists"},
      {"VmNotFound", "vm 'w1-vm-2' not found"},
      {"InvalidTransition", "invalid vm transition for 'w1-vm-3': running -> created"},
      {"SnapshotAlreadyExists", "snapshot 'snap' already exists for vm 'w1-vm-4'"},
      {"SnapshotNotFound", "snapshot 'snap' not found for vm 'w1-vm-5'"},
      {"Unsupported", "backend unsupported: snap"},
      {"Metrics", "metrics: snap"},
      {"Shutdown", "shutdown failed: snap"},
      {"Firewall", "firewall error: snap"},
      {"Jailer", "jailer error: snap"},
      {"NetworkConfig", "network config invalid: snap"},
      {"NetworkSetup", "network setup failed: snap"},
      // Last: a worker that sees its provider poisoned stops taking jobs and exits 3.
      {"StatePoisoned", "provider state lock poisoned"},
  };
  // One at a time, so the worker's VM ids (w1-vm-1, -2, ...) follow the order above.
  for (size_t i = 0; i < variants.size(); ++i) {
    const auto& [name, message] = variants[i];
    const uint32_t code = name == "StatePoisoned" ? 6 : (i < 5 ? i + 1 : i + 2);
    CAPTURE(name);
    c.submit(job("v-" + name, {"fail", name, "snap"}));
    auto answers = collect(c, {"v-" + name}, 10s, 0ms);
    REQUIRE(answers.finals.count("v-" + name) == 1);
    const auto& e = answers.finals.at("v-" + name).front().error;
    CHECK(e.variant == name);
    CHECK(e.code == code);
    CHECK(e.message == message);
    CHECK(e.worker_id == "w1");
  }
  auto exit_code = worker->wait_for(10s);
  REQUIRE(exit_code.has_value());
  CHECK(*exit_code == 3);
}

TEST_CASE("a job that poisons the provider gets StatePoisoned and its worker drains and exits 3") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1);
  client::Client c(broker.client_endpoint);
  c.submit(job("poison", {"poison"}));
  auto answers = collect(c, {"poison"}, 10s);
  REQUIRE(answers.finals.count("poison") == 1);
  const auto& e = answers.finals.at("poison").front().error;
  CHECK(e.variant == "StatePoisoned");
  CHECK(e.code == 6);
  CHECK(e.message == "provider state lock poisoned");
  auto code = worker->wait_for(10s);
  REQUIRE(code.has_value());
  CHECK(*code == 3);
}
