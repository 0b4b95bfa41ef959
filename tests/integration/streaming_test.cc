// Live output (PROTOCOL.md, "Live output"), end to end through a real broker and worker over
// loopback TCP, on the in-memory TEST DOUBLE backend (its `every MS N TEXT` prints over time;
// nothing is executed). What is checked is the queue's part: chunks reach the submitting
// connection while the job runs, in order and with their offsets; a slow submitter loses chunks,
// never the job or its RESULT, and slows neither; a retried attempt's stream starts again; the
// broker forwards only what it should. tests/vm has the same on QEMU with a real program.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <map>

#include "dashboard_probe.h"
#include "fake_worker.h"
#include "harness.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"
#include "paddock/wire/zmq_frames.h"

using namespace paddock;
using namespace paddock::testing;
namespace sc = paddock::schemas;

namespace {

using Clock = std::chrono::steady_clock;
using Kind = client::Event::Kind;

sc::JobRequest streaming(std::string id, std::vector<std::string> argv) {
  auto j = job(std::move(id), std::move(argv));
  j.stream = true;
  return j;
}

size_t count(const std::vector<client::Event>& seen, Kind kind) {
  return static_cast<size_t>(
      std::count_if(seen.begin(), seen.end(), [&](const auto& e) { return e.kind == kind; }));
}

bool has_final(const std::vector<client::Event>& seen) {
  return count(seen, Kind::kResult) + count(seen, Kind::kError) > 0;
}

// The stdout chunks of `attempt`, checked to follow one another without a gap, put together.
std::string stdout_of(const std::vector<client::Event>& seen, uint32_t attempt) {
  std::string out;
  for (const auto& e : seen) {
    if (e.kind != Kind::kOutput || e.output.attempt != attempt) continue;
    if (e.output.stream != sc::OutputStream::kStdout) continue;
    CHECK(e.output.offset == out.size());
    out += e.output.data;
  }
  return out;
}

// A DEALER that reads only when told to (ZeroMQ's receive queue of one message): a submitter
// that does not keep up, as a slow network or a stalled program is.
struct SlowSubmitter {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};
  explicit SlowSubmitter(const std::string& endpoint) {
    wire::apply_common_options(socket);
    socket.set(zmq::sockopt::rcvhwm, 1);
    socket.set(zmq::sockopt::rcvbuf, 4096);  // the kernel's buffer small too
    socket.connect(endpoint);
  }
  void submit(const std::vector<sc::JobRequest>& jobs) {
    std::vector<std::string> bodies;
    for (const auto& j : jobs) bodies.push_back(sc::encode(j));
    auto parts = sc::make_message(sc::Command::kSubmit, bodies);
    for (size_t i = 0; i < parts.size(); ++i) {
      socket.send(zmq::buffer(parts[i]),
                  i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // Reads until `finals` RESULTs or ERRORs came, or 60 s pass: (command, body) in order.
  std::vector<std::pair<sc::Command, std::string>> read_until_finals(size_t finals) {
    std::vector<std::pair<sc::Command, std::string>> out;
    size_t seen = 0;
    const auto deadline = Clock::now() + 60s;
    std::vector<zmq::message_t> frames;
    while (seen < finals && Clock::now() < deadline) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      while (seen < finals && wire::recv_message(socket, frames)) {
        auto parts = wire::views(frames);
        auto env = sc::parse_envelope(parts, sc::Direction::kBrokerToClient);
        REQUIRE_MESSAGE(env, env.error().message());
        const std::string body = env->bodies.empty() ? "" : std::string(env->bodies[0]);
        if (env->command == sc::Command::kResult || env->command == sc::Command::kError) ++seen;
        out.emplace_back(env->command, body);
      }
    }
    return out;
  }
};

}  // namespace

TEST_CASE(
    "streaming: a job's output reaches its submitter while it runs, in OUTPUT chunks in order, "
    "and only when it asked") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  client::Client c(broker.client_endpoint);

  // "first" at once, then nothing for a minute: the chunk can only have come while the job ran,
  // which the CANCEL afterwards shows (the job is still there to cancel).
  c.submit(streaming("live", {"every", "60000", "2", "first"}));
  std::vector<client::Event> seen;
  REQUIRE(read_until(
      c, seen, [&] { return count(seen, Kind::kOutput) > 0; }, 30s));
  CHECK_FALSE(has_final(seen));
  CHECK(stdout_of(seen, 1) == "first\n");
  const auto& chunk = *std::find_if(seen.begin(), seen.end(),
                                    [](const auto& e) { return e.kind == Kind::kOutput; });
  CHECK(chunk.output.job_id == "live");
  CHECK(chunk.output.tenant.empty());  // the broker strips it
  CHECK_FALSE(chunk.output.step.has_value());
  c.cancel("live");
  REQUIRE(read_until(
      c, seen, [&] { return has_final(seen); }, 30s));
  REQUIRE(count(seen, Kind::kError) == 1);
  CHECK(seen.back().error.variant == "Cancelled");

  // Ran to its end: the chunks hold what the RESULT holds, and all came before it.
  seen.clear();
  c.submit(streaming("whole", {"every", "5", "20", "line"}));
  REQUIRE(read_until(
      c, seen, [&] { return has_final(seen); }, 30s));
  REQUIRE(seen.back().kind == Kind::kResult);
  std::string expected;
  for (int i = 0; i < 20; ++i) expected += "line\n";
  CHECK(seen.back().result.stdout_data == expected);
  CHECK(stdout_of(seen, 1) == expected);

  // The same job without `stream`: its submitter never sees an OUTPUT.
  seen.clear();
  c.submit(job("quiet", {"every", "5", "20", "line"}));
  REQUIRE(read_until(
      c, seen, [&] { return has_final(seen); }, 30s));
  c.ping();
  REQUIRE(read_until(
      c, seen, [&] { return count(seen, Kind::kPong) > 0; }, 30s));
  CHECK(count(seen, Kind::kOutput) == 0);
  CHECK(seen[seen.size() - 2].result.stdout_data == expected);
}

TEST_CASE(
    "streaming: a submitter that does not read loses chunks, never its RESULTs, and slows "
    "neither the jobs nor the broker") {
  TempDir dir;
  // A small pipe to each submitter, so that a slow one fills it soon.
  auto broker = start_broker(dir, {"--client-send-hwm", "8", "--metrics-address", "127.0.0.1:0"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4);
  SlowSubmitter slow(broker.client_endpoint);
  constexpr int kJobs = 4;
  constexpr size_t kBytes = 4u << 20;  // per job: 64 chunks of 64 KiB
  std::vector<sc::JobRequest> jobs;
  for (int i = 0; i < kJobs; ++i) {
    auto j = streaming("flood-" + std::to_string(i), {"output", std::to_string(kBytes)});
    j.output_cap = static_cast<uint32_t>(kBytes);
    jobs.push_back(j);
  }
  slow.submit(jobs);
  // While it reads nothing, its jobs run to their end (the broker answers them: its metrics
  // count them) and another submitter's job is answered.
  auto done = http_get_until(
      broker.metrics_address, "/api/v1/overview",
      [&](const nlohmann::json& j) { return j["totals"]["completed"].get<int>() >= kJobs; }, 60s);
  REQUIRE_MESSAGE(done.is_object(), "the slow submitter's jobs did not finish");
  client::Client other(broker.client_endpoint);
  other.submit(job("other", {"echo", "hi"}));
  auto answered = collect(other, {"other"}, 30s, 0ms);
  REQUIRE(answered.finals.count("other") == 1);
  CHECK(answered.finals.at("other").front().result.stdout_data == "hi\n");

  // Now it reads: every RESULT whole; the chunks it got are in order per job, with gaps where
  // some were dropped.
  const auto got = slow.read_until_finals(kJobs);
  std::map<std::string, sc::JobResult> results;
  std::map<std::string, uint64_t> next_offset, streamed;
  size_t gaps = 0;
  for (const auto& [command, body] : got) {
    if (command == sc::Command::kResult) {
      auto r = sc::decode_job_result(body);
      REQUIRE(r);
      results[r->job_id] = *r;
    } else if (command == sc::Command::kOutput) {
      auto o = sc::decode_output(body);
      REQUIRE(o);
      CHECK(results.count(o->job_id) == 0);  // before its job's RESULT
      CHECK(o->offset >= next_offset[o->job_id]);
      gaps += o->offset > next_offset[o->job_id];
      next_offset[o->job_id] = o->offset + o->data.size();
      streamed[o->job_id] += o->data.size();
    }
  }
  REQUIRE(results.size() == kJobs);
  uint64_t all_streamed = 0;
  for (const auto& j : jobs) {
    const auto& r = results.at(j.job_id);
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == std::string(kBytes, 'x'));
    CHECK_FALSE(r.stdout_truncated);
    all_streamed += streamed[j.job_id];
  }
  MESSAGE("streamed " << all_streamed << " of " << kJobs * kBytes << " bytes; " << gaps
                      << " gap(s) seen");
  CHECK(all_streamed < kJobs * kBytes);  // some were dropped ...
  const std::string metrics = http_get(broker.metrics_address, "/metrics").body;
  CHECK(metrics.find("paddock_broker_output_chunks_dropped_total 0\n") == std::string::npos);
}

TEST_CASE("streaming: a retried attempt's stream starts again, marked by its attempt") {
  TempDir dir;
  auto broker = start_broker(dir, {"--heartbeat-ms", "100", "--liveness", "3"});
  auto victim = start_worker(dir, broker.worker_endpoint, "victim", 1, {"--heartbeat-ms", "100"});
  client::Client c(broker.client_endpoint);
  // "line" at once and 3 s later: the victim dies in between.
  c.submit(streaming("again", {"every", "3000", "2", "line"}));
  std::vector<client::Event> seen;
  REQUIRE(read_until(
      c, seen, [&] { return count(seen, Kind::kOutput) > 0; }, 30s));
  victim->signal(SIGKILL);
  REQUIRE(victim->wait_for(5s).has_value());
  auto survivor =
      start_worker(dir, broker.worker_endpoint, "survivor", 1, {"--heartbeat-ms", "100"});
  REQUIRE(read_until(
      c, seen, [&] { return has_final(seen); }, 60s));
  REQUIRE(seen.back().kind == Kind::kResult);
  const auto& r = seen.back().result;
  CHECK(r.attempt == 2);
  CHECK(r.worker_id == "survivor");
  CHECK(stdout_of(seen, 1) == "line\n");  // the first attempt's, cut short
  CHECK(stdout_of(seen, 2) == "line\nline\n");
  CHECK(r.stdout_data == "line\nline\n");
  // Attempt 2's chunks all come after attempt 1's.
  bool second = false;
  for (const auto& e : seen) {
    if (e.kind != Kind::kOutput) continue;
    if (e.output.attempt == 2) second = true;
    if (second) CHECK(e.output.attempt == 2);
  }
}

TEST_CASE(
    "streaming: the broker forwards only a running job's current attempt from its worker, "
    "within the limits, and drops the rest") {
  TempDir dir;
  auto broker = start_broker(dir, {"--liveness", "100"});
  FakeWorker w(broker.worker_endpoint, "fake", 2);
  client::Client c(broker.client_endpoint);
  c.submit(streaming("s", {"true"}));
  c.submit(job("plain", {"true"}));
  REQUIRE(w.pump_until([&] { return w.jobs.size() == 2; }, 10s));
  const auto& s = w.jobs[0].request.job_id == "s" ? w.jobs[0] : w.jobs[1];
  const auto& plain = w.jobs[0].request.job_id == "s" ? w.jobs[1] : w.jobs[0];
  auto chunk = [](const sc::JobDispatch& d, uint64_t offset, std::string data) {
    sc::OutputChunk o;
    o.job_id = d.request.job_id;
    o.tenant = d.tenant;
    o.attempt = d.attempt;
    o.offset = offset;
    o.data = std::move(data);
    return o;
  };
  auto bad_attempt = chunk(s, 0, "wrong attempt\n");
  bad_attempt.attempt = s.attempt + 1;
  w.output(sc::encode(bad_attempt));
  w.output(sc::encode(chunk(plain, 0, "not asked for\n")));
  // Over the chunk limit: a body the codec refuses (logged, dropped).
  w.output(sc::encode(chunk(s, 0, std::string(sc::limits::kMaxOutputChunk + 1, 'x'))));
  auto unknown = chunk(s, 0, "no such job\n");
  unknown.job_id = "nobody";
  w.output(sc::encode(unknown));
  w.output(sc::encode(chunk(s, 0, "good\n")));
  w.result("s", s.attempt, "good\n");
  w.result("plain", plain.attempt, "");
  std::vector<client::Event> seen;
  REQUIRE(read_until(
      c, seen, [&] { return count(seen, Kind::kResult) == 2; }, 30s));
  c.ping();
  REQUIRE(read_until(
      c, seen, [&] { return count(seen, Kind::kPong) > 0; }, 30s));
  REQUIRE(count(seen, Kind::kOutput) == 1);
  CHECK(stdout_of(seen, s.attempt) == "good\n");
  CHECK(slurp(broker.process->log() + ".err").find("bad OUTPUT: data:") != std::string::npos);
}
