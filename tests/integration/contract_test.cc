// The broker's side of "exactly one answer, always" (issue 20): who hears a job submitted twice,
// the order of a SUBMIT's replies, stale outcomes of an attempt no longer current, the held-job
// watchdog, and the shutdown line after a failed journal commit. Workers that must misbehave on
// cue are FakeWorkers (fake_worker.h) speaking the worker protocol over a DEALER of their own;
// every wait is for a condition, with a generous deadline.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include <httplib.h>

#include "fake_worker.h"
#include "harness.h"
#include "ledger.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/wire/zmq_frames.h"

using namespace paddock;
using namespace paddock::testing;

namespace fs = std::filesystem;
namespace sc = paddock::schemas;

namespace {

using Clock = std::chrono::steady_clock;
using Kind = client::Event::Kind;

bool has(const std::vector<client::Event>& seen, Kind kind) {
  return std::any_of(seen.begin(), seen.end(), [&](const auto& e) { return e.kind == kind; });
}

std::vector<client::Event> finals(const std::vector<client::Event>& seen) {
  std::vector<client::Event> out;
  for (const auto& e : seen) {
    if (e.kind == Kind::kResult || e.kind == Kind::kError) out.push_back(e);
  }
  return out;
}

// Everything the broker sent `c` before it answered a PING sent now (one connection's answers
// arrive in the order the broker sent them), into `seen`.
void read_to_pong(client::Client& c, std::vector<client::Event>& seen) {
  const size_t pongs =
      std::count_if(seen.begin(), seen.end(), [](const auto& e) { return e.kind == Kind::kPong; });
  c.ping();
  REQUIRE(read_until(c, seen, [&] {
    return static_cast<size_t>(std::count_if(seen.begin(), seen.end(), [](const auto& e) {
             return e.kind == Kind::kPong;
           })) > pongs;
  }));
}

// GET /metrics until `metric`'s line (no labels) says `value`; false after 10 s.
bool metric_reaches(const std::string& address, const std::string& metric, int value) {
  const auto colon = address.rfind(':');
  httplib::Client http(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
  const std::string line = "\n" + metric + " " + std::to_string(value) + "\n";
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    auto res = http.Get("/metrics");
    if (res && res->status == 200 && res->body.find(line) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// A bare DEALER on the client endpoint, to send bodies the client library would refuse.
struct RawClient {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};
  explicit RawClient(const std::string& endpoint) {
    wire::apply_common_options(socket);
    socket.connect(endpoint);
  }
  void send(sc::Command command, const std::vector<std::string>& bodies) {
    auto parts = sc::make_message(command, bodies);
    for (size_t i = 0; i < parts.size(); ++i) {
      socket.send(zmq::buffer(parts[i]),
                  i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // The next `n` messages as (command, body); fewer if 10 s pass.
  std::vector<std::pair<sc::Command, std::string>> receive(size_t n) {
    std::vector<std::pair<sc::Command, std::string>> out;
    const auto deadline = Clock::now() + 10s;
    std::vector<zmq::message_t> frames;
    while (out.size() < n && Clock::now() < deadline) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      while (out.size() < n && wire::recv_message(socket, frames)) {
        auto parts = wire::views(frames);
        auto env = sc::parse_envelope(parts, sc::Direction::kBrokerToClient);
        REQUIRE_MESSAGE(env, env.error().message());
        out.emplace_back(env->command,
                         env->bodies.empty() ? std::string() : std::string(env->bodies[0]));
      }
    }
    return out;
  }
};

}  // namespace

TEST_CASE(
    "contract: a job submitted again from a second connection while it runs is answered on that "
    "connection only") {
  // Issue 20, item 4. Both the journal's outbox and the direct path.
  for (const bool with_journal : {false, true}) {
    CAPTURE(with_journal);
    TempDir dir;
    // The fake worker heartbeats only while the test pumps it: a long liveness.
    std::vector<std::string> args = {"--liveness", "100"};
    if (with_journal) args.insert(args.end(), {"--journal", dir.path() + "/journal.db"});
    auto broker = start_broker(dir, args);
    FakeWorker w(broker.worker_endpoint, "fake", 1);
    client::Client first(broker.client_endpoint), second(broker.client_endpoint);
    std::vector<client::Event> a, b;
    first.submit(job("dup", {"true"}));
    REQUIRE(read_until(first, a, [&] { return has(a, Kind::kAccepted); }));
    REQUIRE(w.pump_until([&] { return w.jobs.size() == 1; }, 10s));  // it runs now
    second.submit(job("dup", {"true"}));
    REQUIRE(read_until(second, b, [&] { return has(b, Kind::kAccepted); }));
    w.result("dup", w.jobs[0].attempt, "ran once");
    REQUIRE(read_until(second, b, [&] { return !finals(b).empty(); }));
    read_to_pong(second, b);
    read_to_pong(first, a);  // anything sent to `first` with second's answer came before this
    CHECK(finals(a).empty());
    REQUIRE(finals(b).size() == 1);
    CHECK(finals(b)[0].result.stdout_data == "ran once");
    CHECK(w.jobs.size() == 1);  // not run a second time
  }
}

TEST_CASE(
    "contract: a SUBMIT's replies come in body order and an ERROR names the body it answers") {
  // Issue 20, item 5. No worker: accepted jobs stay queued, so --max-queue 3 REJECTS the fourth.
  TempDir dir;
  auto broker = start_broker(dir, {"--max-queue", "3"});
  RawClient raw(broker.client_endpoint);
  const std::string a = sc::encode(job("a", {"true"}));
  // {"argv": ["x"]}: no job_id to name it by.
  const std::string no_id(
      "\x81\xa4"
      "argv"
      "\x91\xa1"
      "x");
  const std::string c = sc::encode(job("c", {"true"}));
  // {"job_id": "b-bad", "argv": 5}: its job_id can be read.
  const std::string bad_argv(
      "\x82\xa6"
      "job_id"
      "\xa5"
      "b-bad"
      "\xa4"
      "argv"
      "\x05");
  const std::string d = sc::encode(job("d", {"true"}));
  const std::string e = sc::encode(job("e", {"true"}));
  raw.send(sc::Command::kSubmit, {a, no_id, c, bad_argv, d, e});
  auto replies = raw.receive(6);
  REQUIRE(replies.size() == 6);
  auto accepted = [&](size_t i) {
    CAPTURE(i);
    REQUIRE(replies[i].first == sc::Command::kAccepted);
    auto acc = sc::decode_accepted(replies[i].second);
    REQUIRE(acc);
    return acc->job_ids;
  };
  auto error = [&](size_t i, sc::Command command) {
    CAPTURE(i);
    REQUIRE(replies[i].first == command);
    auto err = sc::decode_job_error(replies[i].second);
    REQUIRE(err);
    return err.value();
  };
  CHECK(accepted(0) == std::vector<std::string>{"a"});
  const auto e1 = error(1, sc::Command::kError);
  CHECK(e1.code == 100);
  CHECK(e1.job_id.empty());
  CHECK(e1.index == 1u);
  CHECK(e1.message.find("job_id") != std::string::npos);
  CHECK(accepted(2) == std::vector<std::string>{"c"});
  const auto e3 = error(3, sc::Command::kError);
  CHECK(e3.job_id == "b-bad");
  CHECK(e3.index == 3u);
  CHECK(accepted(4) == std::vector<std::string>{"d"});
  const auto e5 = error(5, sc::Command::kRejected);
  CHECK(e5.job_id == "e");
  CHECK(e5.code == 103);
  CHECK_FALSE(e5.index.has_value());

  // Consecutive accepted bodies share one ACCEPTED, in body order (a, c, d are held already).
  raw.send(sc::Command::kSubmit, {d, a, c});
  auto again = raw.receive(1);
  REQUIRE(again.size() == 1);
  REQUIRE(again[0].first == sc::Command::kAccepted);
  CHECK(sc::decode_accepted(again[0].second)->job_ids == std::vector<std::string>{"d", "a", "c"});

  // FETCH's bodies are named the same way.
  raw.send(sc::Command::kFetch, {sc::encode(sc::JobRef{"a", {}}), no_id});
  auto fetched = raw.receive(1);
  REQUIRE(fetched.size() == 1);
  REQUIRE(fetched[0].first == sc::Command::kError);
  CHECK(sc::decode_job_error(fetched[0].second)->index == 1u);
}

TEST_CASE(
    "contract: a late outcome of an attempt that is no longer current is dropped and counted, and "
    "the current attempt answers") {
  // Issue 20, item 6: a worker stalled past its heartbeats (SIGSTOP) is declared dead and its job
  // goes out again; it comes back on a new connection, is sent the job's attempt 2, and then
  // reports the attempt 1 it finished while stalled.
  TempDir dir;
  auto broker = start_broker(
      dir, {"--heartbeat-ms", "100", "--liveness", "3", "--metrics-address", "127.0.0.1:0"});
  FakeWorker w(broker.worker_endpoint, "stalled", 1);
  client::Client c(broker.client_endpoint);
  std::vector<client::Event> seen;
  c.submit(job("stale", {"true"}));
  REQUIRE(w.pump_until([&] { return w.jobs.size() == 1; }, 10s));
  CHECK(w.jobs[0].attempt == 1);
  // Silent (no heartbeats) until the broker gives up on it.
  wait_for_log(broker, "missed its heartbeats", 10s);
  w.reconnect(1);
  REQUIRE(w.pump_until([&] { return w.jobs.size() == 2; }, 10s));
  REQUIRE(w.jobs[1].attempt == 2);
  // The same worker, the same job, now assigned to this very connection: only the attempt differs.
  w.result("stale", 1, "attempt 1");
  w.result("stale", 2, "attempt 2");
  REQUIRE(read_until(c, seen, [&] { return !finals(seen).empty(); }));
  read_to_pong(c, seen);
  const auto answers = finals(seen);
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].kind == Kind::kResult);
  CHECK(answers[0].result.stdout_data == "attempt 2");
  CHECK(answers[0].result.attempt == 2);
  CHECK(metric_reaches(broker.metrics_address, "paddock_broker_outcomes_stale_total", 1));
  // The broker's logs name a job by its key, <tenant>/<job_id> (broker/README.md, "Tenants").
  wait_for_log(broker, "stale RESULT for job 'local/stale' attempt 1 dropped", 10s);
}

TEST_CASE(
    "contract: a job a live worker holds past its timeout and margin without an answer is taken "
    "back, sent out again and counted") {
  // The held-job watchdog: the worker accepts the JOB, then says nothing of it while it keeps
  // heartbeating.
  TempDir dir;
  // A margin long enough that attempt 2 is answered before it could be overdue too.
  auto broker =
      start_broker(dir, {"--heartbeat-ms", "100", "--liveness", "50", "--overdue-margin-ms", "1000",
                         "--metrics-address", "127.0.0.1:0"});
  FakeWorker w(broker.worker_endpoint, "silent", 1);
  client::Client c(broker.client_endpoint);
  auto held = job("held", {"true"});
  held.timeout_ms = 100;
  c.submit(held);
  REQUIRE(w.pump_until([&] { return w.jobs.size() == 1; }, 10s));
  // Taken back: the worker is told to stop it...
  REQUIRE(w.pump_until([&] { return w.cancels.size() == 1; }, 20s));
  CHECK(w.cancels[0] == "held");
  CHECK(metric_reaches(broker.metrics_address, "paddock_broker_jobs_overdue_total", 1));
  // ...and it goes out again, attempt 2, to the next free slot (this worker's, once it frees it).
  w.credit(1);
  REQUIRE(w.pump_until([&] { return w.jobs.size() == 2; }, 10s));
  CHECK(w.jobs[1].attempt == 2);
  w.result("held", 1, "attempt 1, too late");
  w.result("held", 2, "attempt 2");
  std::vector<client::Event> seen;
  REQUIRE(read_until(c, seen, [&] { return !finals(seen).empty(); }));
  read_to_pong(c, seen);
  const auto answers = finals(seen);
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].result.stdout_data == "attempt 2");

  // At the last attempt the job is answered WorkerLost instead.
  TempDir dir2;
  auto last = start_broker(
      dir2, {"--heartbeat-ms", "100", "--overdue-margin-ms", "200", "--max-attempts", "1"});
  FakeWorker w2(last.worker_endpoint, "silent", 1);
  client::Client c2(last.client_endpoint);
  c2.submit(held);
  std::vector<client::Event> seen2;
  REQUIRE(w2.pump_until([&] { return w2.jobs.size() == 1; }, 10s));
  REQUIRE(w2.pump_until(
      [&] {
        if (auto ev = c2.next(0ms)) seen2.push_back(*ev);
        return !finals(seen2).empty();
      },
      20s));
  const auto lost = finals(seen2);
  REQUIRE(lost.size() == 1);
  REQUIRE(lost[0].kind == Kind::kError);
  CHECK(lost[0].error.code == 102);
  CHECK(lost[0].error.retryable);
  CHECK(lost[0].error.message.find("past its timeout") != std::string::npos);
}

TEST_CASE(
    "contract: after a failed journal commit the broker's last line counts the jobs the journal "
    "really kept") {
  // Issue 20, item 11. Writes past RLIMIT_FSIZE fail (EFBIG) in a process that ignores SIGXFSZ
  // (inherited from here while it starts): the journal's next growth fails its commit.
  TempDir dir;
  const std::string journal = dir.path() + "/journal.db";
  struct sigaction ignore {
  }, before{};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGXFSZ, &ignore, &before) == 0);
  auto broker = start_broker(dir, {"--journal", journal});
  REQUIRE(::sigaction(SIGXFSZ, &before, nullptr) == 0);
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> stored, lost;
  for (int i = 0; i < 200; ++i) stored.push_back(job("kept-" + std::to_string(i), {"true"}));
  c.submit(stored);
  std::set<std::string> accepted;
  std::vector<client::Event> seen;
  REQUIRE(read_until(c, seen, [&] {
    for (const auto& e : seen) accepted.insert(e.accepted_ids.begin(), e.accepted_ids.end());
    return accepted.size() == 200;
  }));
  // No file of the journal may grow now; the next 200 jobs (64 KiB of stdin each, far more than
  // the files hold) cannot be stored.
  uintmax_t size = 0;
  for (const auto* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    const auto s = fs::file_size(journal + suffix, ec);
    if (!ec) size = std::max(size, s);
  }
  const struct rlimit limit { size, size };
  REQUIRE(::prlimit(broker.process->pid(), RLIMIT_FSIZE, &limit, nullptr) == 0);
  for (int i = 0; i < 200; ++i) {
    auto j = job("lost-" + std::to_string(i), {"true"});
    j.stdin_data = std::string(64 * 1024, 'x');
    lost.push_back(std::move(j));
  }
  c.submit(lost);
  const auto code = broker.process->wait_for(30s);
  REQUIRE(code.has_value());
  CHECK(*code == 1);  // fail-stop
  const std::string log = slurp(broker.process->log() + ".err");
  CAPTURE(log);
  CHECK(log.find("400 jobs held") != std::string::npos);
  CHECK(log.find("the journal keeps 200 unanswered") != std::string::npos);
  // And it is what the journal holds: a broker started on it re-queues those 200.
  auto again = start_broker(dir, {"--journal", journal});
  wait_for_log(again, "200 job(s) re-queued", 10s);
}
