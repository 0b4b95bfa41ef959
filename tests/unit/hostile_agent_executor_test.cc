// The worker's job executor (worker/src/executor.cc) when the guest agent is hostile: a provider
// whose exec() talks to a FakeAgent (fake_agent.h) through a real AgentClient, as the qemu backend
// does. Each job must end with an ERROR or a RESULT that the broker's decoders accept (an answer
// the broker refuses would leave the job assigned forever), within a bounded time, its VM torn
// down; and the same provider and executor then run the next job correctly.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "delegating_provider.h"
#include "fake_agent.h"
#include "paddock/runtime/agent_client.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"
#include "paddock/worker/executor.h"

namespace rt = paddock::runtime;
namespace sc = paddock::schemas;
namespace agent = paddock::runtime::agent;
using paddock::testing::error_reply;
using paddock::testing::FakeAgent;
using paddock::testing::honest_agent;
using paddock::testing::on_exec;
using paddock::testing::result_reply;
using paddock::testing::send_then_silence;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Each exec starts a FakeAgent playing the script set for the next job (honest when none is set)
// and runs the request through an AgentClient on it, with the job's timeout and a margin as the
// deadline (QemuVm allows 15 s; a short one keeps the tests fast).
class FakeGuestProvider final : public paddock::testing::DelegatingProvider {
 public:
  void next_agent(FakeAgent::Script script) {
    std::lock_guard lock(mu_);
    script_ = std::move(script);
  }
  rt::Result<rt::ExecResult> exec(const std::string& id, const rt::ExecRequest& request,
                                  std::stop_token cancel) override {
    auto vm = p_.get(id);
    if (!vm) return vm.error();
    FakeAgent::Script script = honest_agent;
    {
      std::lock_guard lock(mu_);
      if (script_) script = std::exchange(script_, nullptr);
    }
    FakeAgent guest(std::move(script));
    rt::AgentClient client(guest.host_fd());
    return client.exec(request, std::move(cancel),
                       std::chrono::milliseconds(request.timeout_ms) + 500ms);
  }

 private:
  std::mutex mu_;
  FakeAgent::Script script_;
};

sc::JobDispatch dispatch(std::vector<std::string> argv, uint32_t output_cap = 1u << 20,
                         std::vector<std::string> files_out = {}) {
  sc::JobDispatch d;
  d.attempt = 1;
  d.request.job_id = "job-h";
  d.request.argv = std::move(argv);
  d.request.timeout_ms = 300;
  d.request.output_cap = output_cap;
  d.request.files_out = std::move(files_out);
  return d;
}

struct Ran {
  paddock::worker::Outcome outcome;
  Clock::duration took;
};

// Runs one job cold, in a VM of its own.
Ran run(FakeGuestProvider& p, const sc::JobDispatch& d) {
  static int jobs = 0;
  const auto t0 = Clock::now();
  auto outcome = paddock::worker::execute_job(p, d, {"w-h", "vm-" + std::to_string(++jobs)}, {});
  return {std::move(outcome), Clock::now() - t0};
}

// The ERROR of a job as the broker decodes it.
sc::JobError error_as_broker_sees_it(const Ran& ran) {
  REQUIRE(std::holds_alternative<sc::JobError>(ran.outcome));
  const std::string body = sc::encode(std::get<sc::JobError>(ran.outcome));
  auto decoded = sc::decode_job_error(body);
  REQUIRE_MESSAGE(static_cast<bool>(decoded),
                  "the broker would refuse this ERROR: " << decoded.error().message());
  CHECK(decoded->code == rt::code_of(rt::Variant::kGuestAgent));
  return decoded.value();
}

// The RESULT of a job as the broker decodes it.
sc::JobResult result_as_broker_sees_it(const Ran& ran) {
  REQUIRE(std::holds_alternative<sc::JobResult>(ran.outcome));
  const std::string body = sc::encode(std::get<sc::JobResult>(ran.outcome));
  CHECK(body.size() <= sc::limits::kMaxFrameBytes);
  auto decoded = sc::decode_job_result(body);
  REQUIRE_MESSAGE(static_cast<bool>(decoded),
                  "the broker would refuse this RESULT: " << decoded.error().message());
  return decoded.value();
}

// The same provider and executor run an honest job next, and no VM is left.
void check_next_job_runs(FakeGuestProvider& p) {
  auto r = result_as_broker_sees_it(run(p, dispatch({"echo", "next"}, 1u << 20, {"out.txt"})));
  CHECK(r.stdout_data == "next\n");
  REQUIRE(r.files.size() == 1);
  CHECK(r.files[0].data == "data of out.txt");
  CHECK(p.live_vms() == 0);
}

}  // namespace

TEST_CASE(
    "hostile agent executor: an oversized frame is an ERROR naming it then the next job runs") {
  FakeGuestProvider p;
  p.next_agent(send_then_silence(std::string("\xff\xff\xff\xff", 4) + std::string(1u << 20, 'x')));
  const Ran ran = run(p, dispatch({"true"}));
  const auto e = error_as_broker_sees_it(ran);
  CHECK(e.message == "guest agent error: agent reply: frame: length 4294967295 exceeds 33554432");
  CHECK(ran.took < 2s);
  CHECK(p.live_vms() == 0);
  check_next_job_runs(p);
}

TEST_CASE("hostile agent executor: a silent guest is an ERROR in time then the next job runs") {
  FakeGuestProvider p;
  p.next_agent(send_then_silence(std::string("\x00\x00\x10\x00", 4) + "half a frame"));
  const Ran ran = run(p, dispatch({"true"}));
  const auto e = error_as_broker_sees_it(ran);
  CHECK(e.message == "guest agent error: exec: no reply from the guest agent within 800 ms");
  CHECK(ran.took < 3s);
  CHECK(p.live_vms() == 0);
  check_next_job_runs(p);
}

TEST_CASE("hostile agent executor: outputs at every cap give a RESULT that fits one wire frame") {
  FakeGuestProvider p;
  // 8 MiB of stdout, 8 MiB of stderr and 8 MiB of files: each within the agent protocol, 24 MiB
  // in all, over the 16 MiB a JobResult frame may have.
  p.next_agent(on_exec([](FakeAgent& a, const agent::Request& r) {
    a.send(result_reply(
        r.id, std::string(8u << 20, 'o'), std::string(8u << 20, 'e'),
        {{"a", std::string(4u << 20, 'a'), false}, {"b", std::string(4u << 20, 'b'), false}}));
  }));
  // The fake agent answers at once, but 24 MiB through a sanitizer build on a loaded machine can
  // take seconds: the deadline is the job's timeout, so give it one that only a hang would reach.
  auto d = dispatch({"true"}, 8u << 20, {"a", "b"});
  d.request.timeout_ms = 120'000;
  const Ran ran = run(p, d);
  const auto r = result_as_broker_sees_it(ran);
  CHECK(r.stdout_data.size() == (8u << 20));
  CHECK_FALSE(r.stdout_truncated);
  CHECK(r.stderr_data.size() == (7u << 20));
  CHECK(r.stderr_truncated);
  REQUIRE(r.files.size() == 2);
  CHECK(r.files[0].data.empty());
  CHECK(r.files[0].truncated);
  CHECK(r.files[1].truncated);
  check_next_job_runs(p);
}

TEST_CASE("hostile agent executor: an unbelievable result is an ERROR instead of a bad RESULT") {
  FakeGuestProvider p;
  p.next_agent(on_exec([](FakeAgent& a, const agent::Request& r) {
    agent::Reply reply = result_reply(r.id, "");
    reply.result.signal = 200;  // a JobResult allows 0..128
    reply.result.exit_code = 328;
    a.send(reply);
  }));
  const auto e = error_as_broker_sees_it(run(p, dispatch({"true"})));
  CHECK(e.message ==
        "guest agent error: exec: the agent's result is not believable: signal: 200 is not a "
        "signal (0..64)");
  check_next_job_runs(p);
}

TEST_CASE(
    "hostile agent executor: the guest's longest error text gives an ERROR the broker accepts") {
  FakeGuestProvider p;
  p.next_agent(on_exec([](FakeAgent& a, const agent::Request& r) {
    a.send(error_reply(r.id, std::string(agent::limits::kMaxError, '\x01')));
  }));
  const auto e = error_as_broker_sees_it(run(p, dispatch({"true"})));
  CHECK(e.message.rfind("guest agent error: exec: the agent could not run the request: \\x01", 0) ==
        0);
  CHECK(e.message.size() <= sc::limits::kMaxMessage);
  check_next_job_runs(p);
}

TEST_CASE("hostile agent executor: a runtime error message over the wire's limit is cut to fit") {
  // Whatever a provider says (a console tail, a guest's text), the ERROR stays within kMaxMessage.
  const auto error = rt::Error::guest_agent(std::string(3 * sc::limits::kMaxMessage, 'y'));
  const auto e = paddock::worker::job_error_from(error, dispatch({"true"}), "w-h");
  CHECK(e.message.size() == sc::limits::kMaxMessage);
  CHECK(static_cast<bool>(sc::decode_job_error(sc::encode(e))));
}
