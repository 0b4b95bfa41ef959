// Live output (PROTOCOL.md, "Live output"): the OUTPUT body and JobRequest's `stream` on the wire,
// the agent protocol's output replies, the host's agent client taking them, the providers'
// exec_streaming and the executor handing a streaming job's pieces on.
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "delegating_provider.h"
#include "fake_agent.h"
#include "paddock/agent/protocol.h"
#include "paddock/runtime/agent_client.h"
#include "paddock/runtime/memory_provider.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"
#include "paddock/worker/executor.h"

namespace rt = paddock::runtime;
namespace sc = paddock::schemas;
namespace agent = paddock::runtime::agent;
using paddock::testing::FakeAgent;
using paddock::testing::on_exec;
using paddock::testing::result_reply;
using namespace std::chrono_literals;

namespace {

sc::OutputChunk chunk(std::string data, uint64_t offset = 0) {
  sc::OutputChunk c;
  c.job_id = "j-1";
  c.attempt = 2;
  c.stream = sc::OutputStream::kStderr;
  c.offset = offset;
  c.data = std::move(data);
  return c;
}

// One piece a sink was given.
struct Piece {
  std::optional<uint32_t> step;
  sc::OutputStream stream;
  uint64_t offset;
  std::string data;
};

rt::OutputSink recorder(std::vector<Piece>& into) {
  return [&into](sc::OutputStream s, uint64_t offset, std::string_view data) {
    into.push_back({std::nullopt, s, offset, std::string(data)});
  };
}

// The pieces of one stream put together, checking that each starts where the one before ended.
std::string joined(const std::vector<Piece>& pieces, sc::OutputStream stream,
                   std::optional<uint32_t> step = std::nullopt) {
  std::string out;
  for (const auto& p : pieces) {
    if (p.stream != stream || p.step != step) continue;
    CHECK(p.offset == out.size());
    CHECK_FALSE(p.data.empty());
    CHECK(p.data.size() <= sc::limits::kMaxOutputChunk);
    out += p.data;
  }
  return out;
}

}  // namespace

TEST_CASE("output: an OUTPUT body round-trips, with and without step and tenant") {
  auto c = chunk("hello\n", 42);
  auto d = sc::decode_output(sc::encode(c));
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(*d == c);
  c.step = 3;
  c.tenant = "alice";
  d = sc::decode_output(sc::encode(c));
  REQUIRE(d);
  CHECK(*d == c);
  CHECK(d->step == 3u);
  CHECK(d->tenant == "alice");
}

TEST_CASE("output: an OUTPUT body past its limits is refused naming the field") {
  auto field_of = [](const sc::OutputChunk& c) {
    auto d = sc::decode_output(sc::encode(c));
    REQUIRE_FALSE(d);
    return d.error().field;
  };
  CHECK(field_of(chunk("")) == "data");
  CHECK(field_of(chunk(std::string(sc::limits::kMaxOutputChunk + 1, 'x'))) == "data");
  CHECK(field_of(chunk("xy", sc::limits::kMaxOutputCap - 1)) == "data");
  CHECK(sc::decode_output(sc::encode(chunk("x", sc::limits::kMaxOutputCap - 1))));
  CHECK(field_of(chunk("x", sc::limits::kMaxOutputCap + 1)) == "offset");
  auto c = chunk("x");
  c.attempt = 0;
  CHECK(field_of(c) == "attempt");
  c = chunk("x");
  c.job_id = "";
  CHECK(field_of(c) == "job_id");
  c = chunk("x");
  c.step = static_cast<uint32_t>(sc::limits::kMaxSteps);
  CHECK(field_of(c) == "step");
  c = chunk("x");
  c.tenant = ".hidden";
  CHECK(field_of(c) == "tenant");
}

TEST_CASE("output: the largest OUTPUT and agent output reply fit every hop's frame") {
  auto c = chunk(std::string(sc::limits::kMaxOutputChunk, '\xff'),
                 sc::limits::kMaxOutputCap - sc::limits::kMaxOutputChunk);
  c.job_id = std::string(sc::limits::kMaxJobId, 'j');
  c.tenant = std::string(sc::limits::kMaxTenant, 't');
  c.attempt = UINT32_MAX;
  c.step = static_cast<uint32_t>(sc::limits::kMaxSteps - 1);
  const std::string body = sc::encode(c);
  CHECK(body.size() < sc::limits::kMaxOutputChunk + 300);
  CHECK(body.size() <= sc::limits::kMaxFrameBytes);
  CHECK(sc::decode_output(body));
  agent::Reply piece;
  piece.id = UINT64_MAX;
  piece.kind = agent::ReplyKind::kOutput;
  piece.output = {sc::OutputStream::kStderr, agent::limits::kMaxOutputCap - c.data.size(), c.data};
  const std::string reply = agent::encode_reply(piece);
  CHECK(reply.size() <= agent::limits::kMaxFrameBytes);
  CHECK(agent::decode_reply(reply));
  static_assert(agent::limits::kMaxOutputChunk == sc::limits::kMaxOutputChunk);
  static_assert(agent::limits::kMaxOutputCap == sc::limits::kMaxOutputCap);
}

TEST_CASE("output: a request's stream is on the wire only when asked for") {
  sc::JobRequest r;
  r.job_id = "s-1";
  r.argv = {"true"};
  const std::string plain = sc::encode(r);
  CHECK(plain.find("stream") == std::string::npos);
  r.stream = true;
  const std::string streaming = sc::encode(r);
  CHECK(streaming.find("stream") != std::string::npos);
  auto d = sc::decode_job_request(streaming);
  REQUIRE(d);
  CHECK(d->stream);
  CHECK_FALSE(sc::decode_job_request(plain)->stream);
}

TEST_CASE("output: the agent protocol's output reply round-trips and keeps its limits") {
  agent::Reply piece;
  piece.id = 7;
  piece.kind = agent::ReplyKind::kOutput;
  piece.output = {sc::OutputStream::kStderr, 10, "abc"};
  auto d = agent::decode_reply(agent::encode_reply(piece));
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(*d == piece);
  piece.output.data = "";
  CHECK(agent::decode_reply(agent::encode_reply(piece)).error().field == "data");
  piece.output.data = std::string(agent::limits::kMaxOutputChunk + 1, 'x');
  CHECK_FALSE(agent::decode_reply(agent::encode_reply(piece)));
  piece.output = {sc::OutputStream::kStdout, agent::limits::kMaxOutputCap, "x"};
  CHECK(agent::decode_reply(agent::encode_reply(piece)).error().field == "data");
  // An exec asks for it only with stream set; older agents never see the key.
  agent::Request r;
  r.id = 1;
  r.op = agent::Op::kExec;
  r.exec.argv = {"true"};
  CHECK(agent::encode_request(r).find("stream") == std::string::npos);
  r.exec.stream = true;
  auto back = agent::decode_request(agent::encode_request(r));
  REQUIRE(back);
  CHECK(back->exec.stream);
}

TEST_CASE(
    "output: the agent client gives a streaming exec's pieces to its sink before the result") {
  FakeAgent a(on_exec([](FakeAgent& f, const agent::Request& r) {
    REQUIRE(r.exec.stream);
    for (const auto& [offset, text] :
         std::vector<std::pair<uint64_t, std::string>>{{0, "first\n"}, {6, "second\n"}}) {
      agent::Reply piece;
      piece.id = r.id;
      piece.kind = agent::ReplyKind::kOutput;
      piece.output = {sc::OutputStream::kStdout, offset, text};
      f.send(piece);
    }
    f.send(result_reply(r.id, "first\nsecond\n"));
  }));
  rt::AgentClient client(a.host_fd());
  rt::ExecRequest req;
  req.argv = {"x"};
  std::vector<Piece> pieces;
  auto r = client.exec(req, std::stop_token{}, 10s, recorder(pieces));
  REQUIRE_MESSAGE(r, r.error().message());
  CHECK(r.value().stdout_data == "first\nsecond\n");
  CHECK(pieces.size() == 2);
  CHECK(joined(pieces, sc::OutputStream::kStdout) == "first\nsecond\n");
  // The stream stays usable, and an exec without a sink does not ask for output.
  FakeAgent b(on_exec([](FakeAgent& f, const agent::Request& r) {
    CHECK_FALSE(r.exec.stream);
    f.send(result_reply(r.id, "ok\n"));
  }));
  rt::AgentClient plain(b.host_fd());
  CHECK(plain.exec(req, std::stop_token{}, 10s));
}

TEST_CASE("output: a guest that streams past the cap or unasked breaks the agent stream") {
  auto streaming_liar = [](uint64_t offset) {
    return on_exec([offset](FakeAgent& f, const agent::Request& r) {
      agent::Reply piece;
      piece.id = r.id;
      piece.kind = agent::ReplyKind::kOutput;
      piece.output = {sc::OutputStream::kStdout, offset, "0123456789"};
      f.send(piece);
      f.send(result_reply(r.id, ""));
    });
  };
  rt::ExecRequest req;
  req.argv = {"x"};
  req.output_cap = 15;
  {
    FakeAgent a(streaming_liar(10));  // bytes 10..19 of a 15-byte cap
    rt::AgentClient client(a.host_fd());
    std::vector<Piece> pieces;
    auto r = client.exec(req, std::stop_token{}, 10s, recorder(pieces));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("past the exec's output_cap of 15 bytes") != std::string::npos);
    CHECK(pieces.empty());
    CHECK_FALSE(client.healthy());
  }
  {
    FakeAgent a(streaming_liar(0));  // output for an exec that did not ask for it
    rt::AgentClient client(a.host_fd());
    auto r = client.exec(req, std::stop_token{}, 10s);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("no streaming exec in flight") != std::string::npos);
  }
}

TEST_CASE("output: the memory test double streams `every` as it writes and the rest at the end") {
  rt::MemoryProvider p;
  REQUIRE(p.create("vm", {}));
  REQUIRE(p.start("vm"));
  rt::ExecRequest req;
  req.argv = {"every", "1", "3", "tick"};
  std::vector<Piece> pieces;
  auto r = p.exec_streaming("vm", req, {}, recorder(pieces));
  REQUIRE(r);
  CHECK(r.value().stdout_data == "tick\ntick\ntick\n");
  CHECK(pieces.size() == 3);
  CHECK(joined(pieces, sc::OutputStream::kStdout) == "tick\ntick\ntick\n");
  // Output past the cap is neither kept nor streamed; big output comes in pieces of 64 KiB.
  pieces.clear();
  req.argv = {"output", "150000"};
  req.output_cap = 140000;
  r = p.exec_streaming("vm", req, {}, recorder(pieces));
  REQUIRE(r);
  CHECK(r.value().stdout_truncated);
  CHECK(pieces.size() == 3);
  CHECK(joined(pieces, sc::OutputStream::kStdout) == std::string(140000, 'x'));
  pieces.clear();
  req.argv = {"stderr", "oops"};
  REQUIRE(p.exec_streaming("vm", req, {}, recorder(pieces)));
  CHECK(joined(pieces, sc::OutputStream::kStderr) == "oops\n");
  CHECK(joined(pieces, sc::OutputStream::kStdout).empty());
}

TEST_CASE("output: a provider that cannot stream gives its result's output at the end") {
  // DelegatingProvider overrides exec() only: Provider's exec_streaming is used.
  struct Plain final : paddock::testing::DelegatingProvider {};
  Plain p;
  REQUIRE(p.create("vm", {}));
  REQUIRE(p.start("vm"));
  rt::ExecRequest req;
  req.argv = {"output", "70000"};
  std::vector<Piece> pieces;
  auto r = p.exec_streaming("vm", req, {}, recorder(pieces));
  REQUIRE(r);
  CHECK(pieces.size() == 2);
  CHECK(joined(pieces, sc::OutputStream::kStdout) == std::string(70000, 'x'));
}

TEST_CASE("output: the executor hands a streaming job's pieces on, per step, and no others") {
  rt::MemoryProvider p;
  sc::JobDispatch d;
  d.request.job_id = "s-1";
  d.request.stream = true;
  sc::Step a;
  a.argv = {"echo", "one"};
  sc::Step b;
  b.argv = {"every", "1", "2", "two"};
  d.request.steps = {a, b};
  std::vector<Piece> pieces;
  paddock::worker::ExecutionContext ctx{"w1", "vm-1"};
  ctx.on_output = [&](std::optional<uint32_t> step, sc::OutputStream s, uint64_t offset,
                      std::string_view data) {
    pieces.push_back({step, s, offset, std::string(data)});
  };
  auto outcome = paddock::worker::execute_job(p, d, ctx, {});
  REQUIRE(std::holds_alternative<sc::JobResult>(outcome));
  CHECK(std::get<sc::JobResult>(outcome).steps.size() == 2);
  CHECK(joined(pieces, sc::OutputStream::kStdout, 0u) == "one\n");
  CHECK(joined(pieces, sc::OutputStream::kStdout, 1u) == "two\ntwo\n");
  // The same job not streaming: nothing is handed on.
  pieces.clear();
  d.request.stream = false;
  ctx.vm_id = "vm-2";
  outcome = paddock::worker::execute_job(p, d, ctx, {});
  REQUIRE(std::holds_alternative<sc::JobResult>(outcome));
  CHECK(pieces.empty());
}
