// Issue 20's reproductions of the contract's limits, through a real broker and worker: whatever the
// broker accepts is answered exactly once (a request at the nesting limit, outputs at both maxima),
// and whatever a request can get wrong is refused at SUBMIT with ERROR 100 naming the field (egress
// with host bits, invalid UTF-8), PING bodies included. And the worker's last resort: a JOB it
// cannot decode is answered with an ERROR and its credit comes back (a fake broker sends it).
#include <doctest/doctest.h>

#include <msgpack.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"
#include "paddock/wire/zmq_frames.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

namespace sc = paddock::schemas;
namespace L = paddock::schemas::limits;

// A submitter that writes raw frames, to send what the client library would refuse to.
class RawClient {
 public:
  explicit RawClient(const std::string& endpoint) : socket_(ctx_, zmq::socket_type::dealer) {
    wire::apply_common_options(socket_);
    socket_.connect(endpoint);
  }
  void send(sc::Command c, std::vector<std::string> bodies) {
    REQUIRE(wire::send_message(socket_, sc::make_message(c, std::move(bodies))) ==
            wire::SendStatus::kOk);
  }
  // The next message from the broker (command and its bodies), or nullopt after `timeout`.
  std::optional<std::pair<sc::Command, std::vector<std::string>>> next(
      std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (wire::recv_message(socket_, frames_)) {
        auto parts = wire::views(frames_);
        auto env = sc::parse_envelope(parts, sc::Direction::kBrokerToClient);
        REQUIRE_MESSAGE(env, env.error().message());
        return std::make_pair(env->command,
                              std::vector<std::string>(env->bodies.begin(), env->bodies.end()));
      }
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }
  // The next ERROR, decoded (failing the test if something else comes first).
  sc::JobError error(std::chrono::milliseconds timeout = 10s) {
    auto m = next(timeout);
    REQUIRE(m.has_value());
    REQUIRE(m->first == sc::Command::kError);
    auto e = sc::decode_job_error(m->second.at(0));
    REQUIRE_MESSAGE(e, e.error().message());
    return e.value();
  }

 private:
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  std::vector<zmq::message_t> frames_;
};

std::string pack(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fn) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  fn(pk);
  return std::string(buf.data(), buf.size());
}

void pack_str(msgpack::packer<msgpack::sbuffer>& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// The reproduction: {job_id, argv: ["true"], x: [[[[[nil]]]]]}, 6 containers deep.
std::string deep_request(const std::string& id) {
  return pack([&](auto& pk) {
    pk.pack_map(3);
    pack_str(pk, "job_id");
    pack_str(pk, id);
    pack_str(pk, "argv");
    pk.pack_array(1);
    pack_str(pk, "true");
    pack_str(pk, "x");
    for (size_t i = 1; i < L::kMaxDepth; ++i) pk.pack_array(1);
    pk.pack_nil();
  });
}

}  // namespace

TEST_CASE("limits: requests at the nesting limit are accepted, answered and free their slots") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  RawClient raw(broker.client_endpoint);
  // More jobs than slots: before the fix the worker dropped each one and kept its credit, so the
  // first two stalled it and the rest were never sent.
  std::vector<std::string> bodies;
  for (int i = 0; i < 6; ++i) bodies.push_back(deep_request("deep" + std::to_string(i)));
  raw.send(sc::Command::kSubmit, bodies);
  size_t accepted = 0;
  std::map<std::string, int> results;
  while (results.size() < bodies.size()) {
    auto m = raw.next(30s);
    REQUIRE_MESSAGE(m.has_value(), "answers so far: " << results.size() << "; worker log: "
                                                      << slurp(worker->log() + ".err"));
    if (m->first == sc::Command::kAccepted) {
      accepted += sc::decode_accepted(m->second.at(0))->job_ids.size();
      continue;
    }
    REQUIRE(m->first == sc::Command::kResult);
    auto r = sc::decode_job_result(m->second.at(0));
    REQUIRE(r);
    CHECK(r->exit_code == 0);
    ++results[r->job_id];
  }
  CHECK(accepted == bodies.size());
  for (const auto& [id, n] : results) CHECK_MESSAGE(n == 1, id);
}

TEST_CASE("limits: 8 MiB of stdout and an 8 MiB file out are answered with a RESULT cut to fit") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1);
  client::Client c(broker.client_endpoint);
  auto j = job("both-max", {"output", std::to_string(L::kMaxOutputCap)});
  j.output_cap = L::kMaxOutputCap;
  j.files = {sc::FileIn{"in.bin", 0644, std::string(L::kMaxFilesTotal, 'f')}};
  j.files_out = {"in.bin"};
  c.submit(j);
  auto answers = collect(c, {"both-max"}, 60s);
  REQUIRE_MESSAGE(answers.all_exactly_once({"both-max"}),
                  "broker log: " << slurp(broker.process->log() + ".err"));
  const auto& ev = answers.finals.at("both-max").front();
  REQUIRE(ev.kind == client::Event::Kind::kResult);
  CHECK(ev.result.stdout_data.size() == L::kMaxOutputCap);
  CHECK_FALSE(ev.result.stdout_truncated);
  REQUIRE(ev.result.files.size() == 1);
  CHECK(ev.result.files[0].truncated);
  CHECK(ev.result.files[0].data.size() == L::kMaxResultData - L::kMaxOutputCap);
}

TEST_CASE("limits: a request the JOB could not carry is refused at SUBMIT naming the body") {
  TempDir dir;
  auto broker = start_broker(dir);
  RawClient raw(broker.client_endpoint);
  // job_id, argv and one unknown bin key padding the body to one byte past kMaxRequestBytes.
  auto padded = [](size_t pad) {
    return pack([&](auto& pk) {
      pk.pack_map(3);
      pack_str(pk, "job_id");
      pack_str(pk, "too-big");
      pack_str(pk, "argv");
      pk.pack_array(1);
      pack_str(pk, "true");
      pack_str(pk, "pad");
      pk.pack_bin(static_cast<uint32_t>(pad));
      const std::string bytes(pad, 'p');
      pk.pack_bin_body(bytes.data(), static_cast<uint32_t>(bytes.size()));
    });
  };
  const size_t overhead = padded(1u << 16).size() - (1u << 16);
  const std::string body = padded(L::kMaxRequestBytes + 1 - overhead);
  REQUIRE(body.size() == L::kMaxRequestBytes + 1);
  raw.send(sc::Command::kSubmit, {body});
  const auto e = raw.error();
  CHECK(e.code == 100);
  CHECK(e.job_id == "too-big");
  CHECK(e.message.rfind("body: a request is at most", 0) == 0);
}

TEST_CASE("limits: client mistakes are ERROR 100 at SUBMIT naming the field, never retried") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1);
  RawClient raw(broker.client_endpoint);
  // Egress with host bits set (issue 20, item 7): used to pass and fail on three workers.
  sc::JobRequest r = job("bits", {"true"});
  r.egress = {sc::EgressRule{"10.0.0.1/8", "tcp", {}}};
  raw.send(sc::Command::kSubmit, {sc::encode(r)});
  auto e = raw.error();
  CHECK(e.code == 100);
  CHECK(e.job_id == "bits");
  CHECK_FALSE(e.retryable);
  CHECK(e.message == "egress[0].cidr: has bits set past its /8 prefix (did you mean 10.0.0.0/8?)");
  // Invalid UTF-8 (item 8): refused, never echoed back.
  raw.send(sc::Command::kCancel, {pack([](auto& pk) {
             pk.pack_map(1);
             pack_str(pk, "job_id");
             pack_str(pk, "\xc3\x28");
           })});
  e = raw.error();
  CHECK(e.code == 100);
  CHECK(e.job_id.empty());
  CHECK(e.message == "job_id: not valid UTF-8");
  sc::JobRequest text = job("text", {"echo", "ok"});
  std::string body = sc::encode(text);
  const size_t at = body.find("ok");
  REQUIRE(at != std::string::npos);
  body.replace(at, 2, "\xc3\x28");
  raw.send(sc::Command::kSubmit, {body});
  e = raw.error();
  CHECK(e.code == 100);
  CHECK(e.job_id == "text");
  CHECK(e.message == "argv[1]: not valid UTF-8");
  // Nothing was accepted, so nothing else comes.
  CHECK_FALSE(raw.next(300ms).has_value());
}

TEST_CASE("limits: PING bodies are checked like every body: a bad one is ERROR 100") {
  TempDir dir;
  auto broker = start_broker(dir);
  RawClient raw(broker.client_endpoint);
  const std::string good = sc::encode(sc::JobRef{"echo-me", {}});
  raw.send(sc::Command::kPing, {good});
  auto pong = raw.next(10s);
  REQUIRE(pong.has_value());
  CHECK(pong->first == sc::Command::kPong);
  CHECK(pong->second == std::vector<std::string>{good});
  raw.send(sc::Command::kPing, {});
  pong = raw.next(10s);
  REQUIRE(pong.has_value());
  CHECK(pong->first == sc::Command::kPong);
  CHECK(pong->second.empty());
  std::string nested;
  for (int i = 0; i < 10'000; ++i) nested += "\x81\xa1k";
  nested += '\xc0';
  const std::vector<std::string> bad = {
      good.substr(0, good.size() - 1),           // truncated
      good + "\xc0",                             // trailing bytes
      std::string("\xdf\x00\x00\x00\x02", 5),    // a map32 header without its entries
      nested,                                    // 10,000 nested maps
      pack([](auto& pk) { pk.pack_array(0); }),  // not a map
      pack([](auto& pk) {                        // an integer key
        pk.pack_map(1);
        pk.pack(1);
        pk.pack(2);
      }),
      pack([](auto& pk) {  // a string that is not UTF-8
        pk.pack_map(1);
        pack_str(pk, "s");
        pack_str(pk, "\xc3\x28");
      }),
  };
  for (const auto& body : bad) {
    raw.send(sc::Command::kPing, {body});
    const auto e = raw.error();
    CHECK(e.code == 100);
    CHECK(e.message.rfind("body: ", 0) == 0);
  }
}

TEST_CASE(
    "limits: a JOB the worker cannot decode is answered with an ERROR and its credit returns") {
  // A fake broker: a ROUTER the worker connects to, which sends a JOB no worker can decode.
  TempDir dir;
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  wire::apply_common_options(router);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  // Heartbeats far apart: this fake broker sends none, and the worker must not give up on it.
  auto worker = start_worker(dir, endpoint, "w1", 1, {"--heartbeat-ms", "10000"});
  std::vector<zmq::message_t> frames;
  // Messages from the worker (routing id first), until `want` comes; heartbeats are skipped.
  auto next_from_worker = [&](sc::Command want) -> std::pair<std::string, std::string> {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      while (wire::recv_message(router, frames)) {
        auto parts = wire::views(frames, 1);
        auto env = sc::parse_envelope(parts, sc::Direction::kWorkerToBroker);
        REQUIRE_MESSAGE(env, env.error().message());
        if (env->command == sc::Command::kHeartbeat) continue;
        REQUIRE_MESSAGE(env->command == want, "got command " << sc::command_name(env->command));
        return {frames[0].to_string(), env->bodies.empty() ? "" : std::string(env->bodies[0])};
      }
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
    }
    FAIL("no " << sc::command_name(want)
               << " from the worker; its log: " << slurp(worker->log() + ".err"));
    return {};
  };
  const auto [route, ready] = next_from_worker(sc::Command::kReady);
  CHECK(sc::decode_ready(ready)->slots == 1);
  // vcpus 99 is out of range: the worker's decoder refuses the JOB, but can read its job and
  // attempt.
  sc::JobDispatch d;
  d.attempt = 2;
  d.request = job("undecodable", {"true"});
  d.request.vcpus = 99;
  REQUIRE(wire::send_message(router, sc::make_message(sc::Command::kJob, {sc::encode(d)}), route) ==
          wire::SendStatus::kOk);
  const auto [route2, error_body] = next_from_worker(sc::Command::kError);
  auto e = sc::decode_job_error(error_body);
  REQUIRE_MESSAGE(e, e.error().message());
  CHECK(e->job_id == "undecodable");
  CHECK(e->attempt == 2);
  CHECK(e->code == 100);
  CHECK_FALSE(e->retryable);
  CHECK(e->worker_id == "w1");
  CHECK(e->message.find("request.vcpus") != std::string::npos);
  const auto [route3, credit] = next_from_worker(sc::Command::kCredit);
  CHECK(sc::decode_credit(credit)->credits == 1);
  // And the slot serves the next job.
  d.request = job("fine", {"echo", "ok"});
  REQUIRE(wire::send_message(router, sc::make_message(sc::Command::kJob, {sc::encode(d)}), route) ==
          wire::SendStatus::kOk);
  const auto [route4, result] = next_from_worker(sc::Command::kResult);
  CHECK(sc::decode_job_result(result)->stdout_data == "ok\n");
}
