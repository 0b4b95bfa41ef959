// The worker's job executor on the in-memory test double: RESULT fields (warm or cold), teardown,
// and the ERROR frame (name, code, exact message, fields) for each of the 13 runtime variants.
#include <doctest/doctest.h>

#include "delegating_provider.h"
#include "paddock/runtime/memory_provider.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"
#include "paddock/worker/executor.h"

using namespace paddock;

namespace {

schemas::JobDispatch job(std::vector<std::string> argv) {
  schemas::JobDispatch d;
  d.attempt = 2;
  d.queued_us = 1234;
  d.request.job_id = "job-1";
  d.request.argv = std::move(argv);
  return d;
}

// Runs `argv` and returns the ERROR frame as a peer would decode it.
schemas::JobError error_frame(runtime::MemoryProvider& p, std::vector<std::string> argv,
                              const std::string& vm_id = "vm-1") {
  auto outcome = worker::execute_job(p, job(std::move(argv)), {"w1", vm_id}, {});
  REQUIRE(std::holds_alternative<schemas::JobError>(outcome));
  auto decoded = schemas::decode_job_error(schemas::encode(std::get<schemas::JobError>(outcome)));
  REQUIRE(decoded);
  CHECK(decoded->job_id == "job-1");
  CHECK(decoded->worker_id == "w1");
  CHECK(decoded->attempt == 2);
  return decoded.value();
}

}  // namespace

TEST_CASE("executor: a job's RESULT carries output, timings, attempt and the test-double backend") {
  runtime::MemoryProvider p;
  auto outcome = worker::execute_job(p, job({"echo", "hi"}), {"w1", "vm-1"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  const auto& r = std::get<schemas::JobResult>(outcome);
  CHECK(r.job_id == "job-1");
  CHECK(r.stdout_data == "hi\n");
  CHECK(r.exit_code == 0);
  CHECK(r.attempt == 2);
  CHECK(r.worker_id == "w1");
  CHECK(r.backend == "memory");
  CHECK_FALSE(r.warm);
  CHECK(r.timings.queued_us == 1234);
  CHECK(r.timings.total_us >= r.timings.exec_us);
  CHECK(p.live_vms() == 0);  // torn down
}

namespace {

// The test double, with every exec's result marked as a guest OOM kill (as the qemu backend
// reports a job the guest kernel's OOM killer ended).
class OomProvider final : public testing::DelegatingProvider {
 public:
  std::string_view backend() const override { return "oom-double"; }
  runtime::Result<runtime::ExecResult> exec(const std::string& id, const runtime::ExecRequest& r,
                                            std::stop_token cancel) override {
    auto x = p_.exec(id, r, cancel);
    if (x) {
      x.value().exit_code = 137;
      x.value().signal = 9;
      x.value().oom_killed = true;
    }
    return x;
  }
};

}  // namespace

TEST_CASE("executor: a job the guest OOM killer ended has oom_killed in its RESULT") {
  OomProvider oom;
  auto outcome = worker::execute_job(oom, job({"echo", "hi"}), {"w1", "vm-1"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  const auto& r = std::get<schemas::JobResult>(outcome);
  CHECK(r.oom_killed);
  CHECK(r.signal == 9);
  CHECK(r.exit_code == 137);
  auto decoded = schemas::decode_job_result(schemas::encode(r));
  REQUIRE(decoded);
  CHECK(decoded->oom_killed);
  CHECK(oom.live_vms() == 0);
  // And a job that was not: false.
  runtime::MemoryProvider p;
  auto plain = worker::execute_job(p, job({"echo", "hi"}), {"w1", "vm-1"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(plain));
  CHECK_FALSE(std::get<schemas::JobResult>(plain).oom_killed);
}

TEST_CASE("executor: the VM is destroyed when the job fails") {
  runtime::MemoryProvider p;
  (void)error_frame(p, {"fail", "Firewall", "x"});
  CHECK(p.live_vms() == 0);
  CHECK(p.get("vm-1").value().state == runtime::VmState::kDestroyed);
}

namespace {

// The test double, noting for each destroy() how many answers the executor had given by then.
class TeardownWatch final : public testing::DelegatingProvider {
 public:
  int answers = 0;
  std::vector<int> answers_at_destroy;
  runtime::Status destroy(const std::string& id) override {
    answers_at_destroy.push_back(answers);
    return p_.destroy(id);
  }
};

}  // namespace

TEST_CASE("executor: with an answer sink the outcome is given once, before the VM's teardown") {
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"echo", "hi"}, {"fail", "Firewall", "x"}, {"exit", "3"}}) {
    CAPTURE(argv[0]);
    TeardownWatch p;
    std::optional<worker::Outcome> answered;
    std::vector<std::chrono::microseconds> teardowns;
    worker::ExecutionContext ctx{"w1", "vm-1"};
    ctx.answer = [&](const worker::Outcome& o) {
      ++p.answers;
      answered = o;
    };
    ctx.on_teardown = [&](std::chrono::microseconds took) { teardowns.push_back(took); };
    auto outcome = worker::execute_job(p, job(argv), ctx, {});
    CHECK(p.answers == 1);
    REQUIRE(p.answers_at_destroy.size() == 1);
    CHECK(p.answers_at_destroy[0] == 1);  // the answer came first
    CHECK(teardowns.size() == 1);
    REQUIRE(answered.has_value());
    CHECK(answered->index() == outcome.index());
    if (auto* r = std::get_if<schemas::JobResult>(&outcome)) {
      CHECK(r->timings.teardown_us == 0);  // not part of the job's time (PROTOCOL.md)
      CHECK(std::get<schemas::JobResult>(*answered).stdout_data == r->stdout_data);
    }
  }
  // Refused before any VM exists: answered, nothing torn down.
  TeardownWatch p;
  int answers = 0;
  worker::ExecutionContext ctx{"w1", "vm-1"};
  ctx.answer = [&](const worker::Outcome&) { ++answers; };
  auto outcome = worker::execute_job(p, job({}), ctx, {});  // no argv
  REQUIRE(std::holds_alternative<schemas::JobError>(outcome));
  CHECK(std::get<schemas::JobError>(outcome).code == 100);
  CHECK(answers == 1);
  CHECK(p.answers_at_destroy.empty());
}

TEST_CASE("executor: without an answer sink the teardown is timed into the RESULT") {
  TeardownWatch p;
  auto outcome = worker::execute_job(p, job({"echo", "hi"}), {"w1", "vm-1"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  CHECK(p.answers_at_destroy.size() == 1);
  CHECK(std::get<schemas::JobResult>(outcome).timings.total_us >=
        std::get<schemas::JobResult>(outcome).timings.teardown_us);
}

TEST_CASE("executor: a cancelled job is ERROR Cancelled (101)") {
  runtime::MemoryProvider p;
  std::stop_source stop;
  stop.request_stop();
  auto outcome = worker::execute_job(p, job({"sleep", "10000"}), {"w1", "vm-1"}, stop.get_token());
  REQUIRE(std::holds_alternative<schemas::JobError>(outcome));
  CHECK(std::get<schemas::JobError>(outcome).code == 101);
  CHECK(std::get<schemas::JobError>(outcome).variant == "Cancelled");
}

TEST_CASE("variant 1 VmAlreadyExists: the job's VM id is taken") {
  runtime::MemoryProvider p;
  REQUIRE(p.create("vm-1", {}).ok());
  auto e = error_frame(p, {"true"});
  CHECK(e.variant == "VmAlreadyExists");
  CHECK(e.code == 1);
  CHECK(e.message == "vm 'vm-1' already exists");
  CHECK(e.vm_id == "vm-1");
}

TEST_CASE("variant 2 VmNotFound") {
  runtime::MemoryProvider p;
  auto e = error_frame(p, {"fail", "VmNotFound"});
  CHECK(e.variant == "VmNotFound");
  CHECK(e.code == 2);
  CHECK(e.message == "vm 'vm-1' not found");
  CHECK(e.vm_id == "vm-1");
}

TEST_CASE("variant 3 InvalidTransition") {
  runtime::MemoryProvider p;
  auto e = error_frame(p, {"fail", "InvalidTransition"});
  CHECK(e.variant == "InvalidTransition");
  CHECK(e.code == 3);
  CHECK(e.message == "invalid vm transition for 'vm-1': running -> created");
  CHECK(e.from == "running");
  CHECK(e.to == "created");
}

TEST_CASE("variant 4 SnapshotAlreadyExists") {
  runtime::MemoryProvider p;
  auto e = error_frame(p, {"fail", "SnapshotAlreadyExists", "snap-a"});
  CHECK(e.variant == "SnapshotAlreadyExists");
  CHECK(e.code == 4);
  CHECK(e.message == "snapshot 'snap-a' already exists for vm 'vm-1'");
  CHECK(e.snapshot_id == "snap-a");
}

TEST_CASE("variant 5 SnapshotNotFound") {
  runtime::MemoryProvider p;
  auto e = error_frame(p, {"fail", "SnapshotNotFound", "snap-b"});
  CHECK(e.variant == "SnapshotNotFound");
  CHECK(e.code == 5);
  CHECK(e.message == "snapshot 'snap-b' not found for vm 'vm-1'");
  CHECK(e.snapshot_id == "snap-b");
}

TEST_CASE("variant 6 StatePoisoned: the provider's lock is poisoned by the job") {
  runtime::MemoryProvider p;
  auto e = error_frame(p, {"poison"});
  CHECK(e.variant == "StatePoisoned");
  CHECK(e.code == 6);
  CHECK(e.message == "provider state lock poisoned");
  CHECK_FALSE(e.retryable);
}

TEST_CASE("variants 7-13 from scripted host faults") {
  struct Case {
    const char* name;
    uint32_t code;
    const char* message;
    bool retryable;
  };
  const Case cases[] = {
      {"Unsupported", 7, "backend unsupported: detail text", false},
      {"Metrics", 8, "metrics: detail text", true},
      {"Shutdown", 9, "shutdown failed: detail text", true},
      {"Firewall", 10, "firewall error: detail text", true},
      {"Jailer", 11, "jailer error: detail text", true},
      {"NetworkConfig", 12, "network config invalid: detail text", false},
      {"NetworkSetup", 13, "network setup failed: detail text", true},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    runtime::MemoryProvider p;
    auto e = error_frame(p, {"fail", c.name, "detail", "text"});
    CHECK(e.variant == c.name);
    CHECK(e.code == c.code);
    CHECK(e.message == c.message);
    CHECK(e.retryable == c.retryable);
    CHECK_FALSE(e.vm_id.has_value());
  }
}

TEST_CASE("a JobError's retryable is its runtime error's cause's, whatever the variant") {
  struct Case {
    const char* script;  // `fail VARIANT:CAUSE` of the test double
    const char* variant;
    uint32_t code;
    bool retryable;
  };
  const Case cases[] = {
      {"Unsupported:HostIo", "Unsupported", 7, true},  // a backend's full disk
      {"Unsupported:VmmStartFailed", "Unsupported", 7, true},
      {"Unsupported:NotSupported", "Unsupported", 7, false},
      {"Firewall:InvalidInput", "Firewall", 10, false},  // a bad rule
      {"Firewall:HostIo", "Firewall", 10, true},         // iptables-restore failed
      {"Jailer:Internal", "Jailer", 11, false},
      {"GuestAgent:Timeout", "GuestAgent", 14, true},
      {"GuestAgent:GuestAgent", "GuestAgent", 14, false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.script);
    runtime::MemoryProvider p;
    auto e = error_frame(p, {"fail", c.script, "detail"});
    CHECK(e.variant == c.variant);
    CHECK(e.code == c.code);
    CHECK(e.retryable == c.retryable);
  }
}

namespace {

worker::WarmPoolConfig quick_pool() {
  worker::WarmPoolConfig c;
  c.min_ready = 1;
  c.max_ready = 1;
  c.check_interval = std::chrono::milliseconds(5);
  c.retry_backoff = std::chrono::milliseconds(5);
  c.vm_prefix = "exec-warm";
  return c;
}

}  // namespace

TEST_CASE("executor: a warm job runs in a clone and says so, with its template") {
  runtime::MemoryProvider p;
  {
    worker::WarmPools pools(p, quick_pool());
    pools.prepare(runtime::VmSpec{});
    REQUIRE(pools.find(runtime::VmSpec{})
                ->wait_for([](const worker::WarmPoolStats& s) { return s.ready == 1; },
                           std::chrono::seconds(5)));
    const std::string tpl = pools.find(runtime::VmSpec{})->stats().template_vm;
    auto outcome = worker::execute_job(p, job({"echo", "warm"}), {"w1", "vm-1", &pools}, {});
    REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
    const auto& r = std::get<schemas::JobResult>(outcome);
    CHECK(r.stdout_data == "warm\n");
    CHECK(r.warm);
    CHECK(r.template_vm == tpl);
    CHECK(r.template_vm.rfind("tpl-default-1x128-", 0) == 0);
    CHECK(r.timings.total_us >= r.timings.start_us);
    CHECK_FALSE(p.get("vm-1").ok());  // no cold VM was made
    // On the wire too.
    auto decoded = schemas::decode_job_result(schemas::encode(r));
    REQUIRE(decoded);
    CHECK(decoded->warm);
    CHECK(decoded->template_vm == tpl);
    // A failed job destroys its clone as well.
    auto failed =
        worker::execute_job(p, job({"fail", "Firewall", "x"}), {"w1", "vm-2", &pools}, {});
    CHECK(std::holds_alternative<schemas::JobError>(failed));
  }
  CHECK(p.live_vms() == 0);  // job clones destroyed, ready ones destroyed at shutdown
}

TEST_CASE("executor: without warm pools (--warm off) every job boots cold") {
  runtime::MemoryProvider p;
  auto outcome = worker::execute_job(p, job({"true"}), {"w1", "vm-1", nullptr}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  const auto& r = std::get<schemas::JobResult>(outcome);
  CHECK_FALSE(r.warm);
  CHECK(r.template_vm.empty());
  CHECK(p.get("vm-1").value().state == runtime::VmState::kDestroyed);
  CHECK(p.all_snapshots().value().empty());  // no template either
  CHECK(p.live_vms() == 0);
}

TEST_CASE("executor: a job whose pool has no usable template boots cold") {
  runtime::MemoryProvider p;
  worker::WarmPools pools(p, quick_pool());
  pools.prepare(runtime::VmSpec{});
  auto* pool = pools.find(runtime::VmSpec{});
  REQUIRE(pool->wait_for([](const worker::WarmPoolStats& s) { return s.ready == 1; },
                         std::chrono::seconds(5)));
  pool->stop_refills();
  (void)pool->acquire();  // the only ready clone; none is restored after stop_refills
  auto outcome = worker::execute_job(p, job({"true"}), {"w1", "vm-cold", &pools}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  CHECK_FALSE(std::get<schemas::JobResult>(outcome).warm);
  CHECK(std::get<schemas::JobResult>(outcome).template_vm.empty());
  CHECK(p.get("vm-cold").value().state == runtime::VmState::kDestroyed);
}

TEST_CASE("executor: the job's egress rules reach the provider before the job runs") {
  runtime::MemoryProvider p;
  auto d = job({"true"});
  schemas::EgressRule rule;
  rule.cidr = "198.51.100.0/24";
  rule.protocol = "tcp";
  rule.ports = {{443, 443}, {8000, 8080}};
  d.request.egress = {rule};
  auto outcome = worker::execute_job(p, d, {"w1", "vm-e"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  const auto recorded = p.egress_of("vm-e");
  REQUIRE(recorded.size() == 1);
  CHECK(recorded[0].cidr == "198.51.100.0/24");
  CHECK(recorded[0].protocol == "tcp");
  CHECK(recorded[0].ports == std::vector<runtime::net::PortRange>{{443, 443}, {8000, 8080}});
}

TEST_CASE(
    "executor: egress the runtime would refuse is InvalidRequest naming the rule, never "
    "retryable") {
  // Issue 20, item 7: 10.0.0.1/8 used to reach the runtime, fail as Firewall (10, retryable) and be
  // retried on fresh VMs. A client's mistake is refused before any VM exists, and not retryable.
  runtime::MemoryProvider p;
  auto d = job({"true"});
  schemas::EgressRule rule;
  rule.cidr = "10.0.0.1/8";  // bits set past the prefix: the runtime refuses it
  rule.protocol = "tcp";
  d.request.egress = {rule};
  auto outcome = worker::execute_job(p, d, {"w1", "vm-f"}, {});
  REQUIRE(std::holds_alternative<schemas::JobError>(outcome));
  const auto& e = std::get<schemas::JobError>(outcome);
  CHECK(e.variant == "InvalidRequest");
  CHECK(e.code == 100);
  CHECK_FALSE(e.retryable);
  CHECK(e.attempt == 2);
  CHECK(e.message.rfind("egress[0].cidr: has bits set past its /8 prefix", 0) == 0);
  CHECK(e.message.find("10.0.0.0/8") != std::string::npos);
  CHECK(p.live_vms() == 0);
}

namespace {

// The test double, with every exec's result ended by a signal but exit code 0 (as a backend that
// does not follow the rule would say it).
class SignalZeroProvider final : public testing::DelegatingProvider {
 public:
  runtime::Result<runtime::ExecResult> exec(const std::string& id, const runtime::ExecRequest& r,
                                            std::stop_token cancel) override {
    auto x = p_.exec(id, r, cancel);
    if (x) {
      x.value().exit_code = 0;
      x.value().signal = 15;
    }
    return x;
  }
};

}  // namespace

TEST_CASE("executor: a job ended by a signal has exit code 128 + signal on every backend") {
  SignalZeroProvider p;
  auto outcome = worker::execute_job(p, job({"true"}), {"w1", "vm-1"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  CHECK(std::get<schemas::JobResult>(outcome).signal == 15);
  CHECK(std::get<schemas::JobResult>(outcome).exit_code == 143);
  // The memory double's timeout: signal 9, exit code 137, as the guest agent reports it.
  runtime::MemoryProvider m;
  auto d = job({"sleep", "5000"});
  d.request.timeout_ms = 10;
  auto timed_out = worker::execute_job(m, d, {"w1", "vm-2"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(timed_out));
  const auto& r = std::get<schemas::JobResult>(timed_out);
  CHECK(r.timed_out);
  CHECK(r.signal == 9);
  CHECK(r.exit_code == 137);
}

TEST_CASE("executor: outputs at every cap give a RESULT that fits one frame, cut with flags") {
  // Issue 20, item 2: 8 MiB of stdout at output_cap 8 MiB plus an 8 MiB file out made a RESULT over
  // the frame limit, which the broker dropped. Cut to kMaxResultData: stdout whole, the file cut.
  namespace L = schemas::limits;
  runtime::MemoryProvider p;
  auto d = job({"output", std::to_string(L::kMaxOutputCap)});
  d.request.output_cap = L::kMaxOutputCap;
  d.request.files = {schemas::FileIn{"big", 0644, std::string(L::kMaxFilesTotal, 'f')}};
  d.request.files_out = {"big"};
  REQUIRE_FALSE(schemas::validate(d.request));
  auto outcome = worker::execute_job(p, d, {"w1", "vm-1"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(outcome));
  const auto& r = std::get<schemas::JobResult>(outcome);
  CHECK(r.stdout_data.size() == L::kMaxOutputCap);
  CHECK_FALSE(r.stdout_truncated);
  REQUIRE(r.files.size() == 1);
  CHECK(r.files[0].truncated);
  CHECK(r.stdout_data.size() + r.files[0].data.size() == L::kMaxResultData);
  const std::string body = schemas::encode(r);
  CHECK(body.size() <= L::kMaxFrameBytes);
  CHECK(schemas::decode_job_result(body));
  // A smaller output_cap cuts each file out too, as the guest agent does (files_out_cap).
  d.request.output_cap = 100;
  auto small = worker::execute_job(p, d, {"w1", "vm-2"}, {});
  REQUIRE(std::holds_alternative<schemas::JobResult>(small));
  CHECK(std::get<schemas::JobResult>(small).files.at(0).data.size() == 100);
  CHECK(std::get<schemas::JobResult>(small).files.at(0).truncated);
  CHECK(std::get<schemas::JobResult>(small).stdout_truncated);
}
