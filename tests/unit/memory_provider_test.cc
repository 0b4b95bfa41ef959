// The in-memory test double: same lifecycle as a real backend, and its scripted behaviours.
#include <doctest/doctest.h>

#include <thread>

#include "paddock/runtime/memory_provider.h"

using namespace paddock::runtime;
using namespace std::chrono_literals;

namespace {

ExecRequest script(std::vector<std::string> argv) {
  ExecRequest r;
  r.argv = std::move(argv);
  return r;
}

void running_vm(MemoryProvider& p, const std::string& id) {
  REQUIRE(p.create(id, VmSpec{}).ok());
  REQUIRE(p.start(id).ok());
}

}  // namespace

TEST_CASE("memory provider: lifecycle follows the state machine") {
  MemoryProvider p;
  REQUIRE(p.create("a", VmSpec{"default", 2, 256}).ok());
  CHECK(p.get("a").value().state == VmState::kCreated);
  CHECK(p.get("a").value().spec.vcpus == 2);
  CHECK(p.start("a").ok());
  CHECK(p.stop("a").ok());
  CHECK(p.get("a").value().state == VmState::kStopped);
  CHECK(p.resume("a").ok());
  CHECK(p.get("a").value().state == VmState::kRunning);
  auto bad = p.start("a");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message() == "invalid vm transition for 'a': running -> running");
  CHECK(p.destroy("a").ok());
  CHECK(p.get("a").value().state == VmState::kDestroyed);
  CHECK(p.list().value().empty());
  CHECK(p.live_vms() == 0);
}

TEST_CASE("memory provider: VmAlreadyExists for a live id and for a destroyed one") {
  MemoryProvider p;
  REQUIRE(p.create("a", VmSpec{}).ok());
  auto dup = p.create("a", VmSpec{});
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().variant() == Variant::kVmAlreadyExists);
  CHECK(dup.error().message() == "vm 'a' already exists");
  REQUIRE(p.destroy("a").ok());
  auto reuse = p.create("a", VmSpec{});
  REQUIRE_FALSE(reuse.ok());
  CHECK(reuse.error().variant() == Variant::kVmAlreadyExists);
}

TEST_CASE("memory provider: destroyed VMs are remembered up to a bound, oldest forgotten first") {
  // A load test runs millions of jobs through one provider: its memory must not grow with them.
  MemoryProvider p;
  const size_t n = MemoryProvider::kTombstones + 10;
  for (size_t i = 0; i < n; ++i) {
    const std::string id = "vm-" + std::to_string(i);
    REQUIRE(p.create(id, VmSpec{}).ok());
    REQUIRE(p.destroy(id).ok());
  }
  REQUIRE(p.create("live", VmSpec{}).ok());
  CHECK(p.live_vms() == 1);
  REQUIRE(p.list().value().size() == 1);
  CHECK(p.list().value()[0].id == "live");
  // The oldest ten are forgotten: unknown ids now.
  for (size_t i = 0; i < 10; ++i) {
    auto old = p.get("vm-" + std::to_string(i));
    REQUIRE_FALSE(old.ok());
    CHECK(old.error().variant() == Variant::kVmNotFound);
  }
  // The newest are still tombstones: an operation on one is an invalid transition, its id taken.
  const std::string last = "vm-" + std::to_string(n - 1);
  CHECK(p.get(last).value().state == VmState::kDestroyed);
  auto again = p.start(last);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().variant() == Variant::kInvalidTransition);
  CHECK(p.create(last, VmSpec{}).error().variant() == Variant::kVmAlreadyExists);
}

TEST_CASE("memory provider: VmNotFound for every operation on an unknown id") {
  MemoryProvider p;
  for (auto st : {p.start("x"), p.stop("x"), p.resume("x"), p.destroy("x")}) {
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message() == "vm 'x' not found");
  }
  CHECK(p.get("x").error().variant() == Variant::kVmNotFound);
  CHECK(p.list_snapshots("x").error().variant() == Variant::kVmNotFound);
  CHECK(p.snapshot("x", "s").error().variant() == Variant::kVmNotFound);
  CHECK(p.exec("x", script({"true"}), {}).error().variant() == Variant::kVmNotFound);
}

TEST_CASE("memory provider: snapshots belong to a VM, are unique, and restore makes a new VM") {
  MemoryProvider p;
  running_vm(p, "src");
  REQUIRE(p.snapshot("src", "s1").ok());
  auto dup = p.snapshot("src", "s1");
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().message() == "snapshot 's1' already exists for vm 'src'");
  REQUIRE(p.snapshot("src", "s2").ok());
  CHECK(p.list_snapshots("src").value().size() == 2);

  auto missing = p.restore("src", "nope", "clone");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message() == "snapshot 'nope' not found for vm 'src'");

  REQUIRE(p.restore("src", "s1", "clone").ok());
  auto clone = p.get("clone").value();
  CHECK(clone.state == VmState::kStopped);
  CHECK(clone.restored_from_vm == "src");
  CHECK(clone.restored_from_snapshot == "s1");
  CHECK(p.restore("src", "s1", "clone").error().variant() == Variant::kVmAlreadyExists);
  REQUIRE(p.resume("clone").ok());

  // A snapshot outlives its VM; a destroyed VM takes no new snapshot.
  REQUIRE(p.destroy("src").ok());
  CHECK(p.restore("src", "s2", "clone2").ok());
  auto after = p.snapshot("src", "s3");
  REQUIRE_FALSE(after.ok());
  CHECK(after.error().message() == "invalid vm transition for 'src': destroyed -> snapshot");
}

TEST_CASE("memory provider: snapshots are listed across VMs and deleted one by one") {
  MemoryProvider p;
  running_vm(p, "a");
  running_vm(p, "b");
  REQUIRE(p.snapshot("b", "s").ok());
  REQUIRE(p.snapshot("a", "s").ok());
  auto all = p.all_snapshots().value();
  REQUIRE(all.size() == 2);
  CHECK(all[0].vm_id == "a");
  CHECK(all[1].vm_id == "b");
  REQUIRE(p.delete_snapshot("a", "s").ok());
  auto again = p.delete_snapshot("a", "s");
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().variant() == Variant::kSnapshotNotFound);
  CHECK(p.restore("a", "s", "c").error().variant() == Variant::kSnapshotNotFound);
  CHECK(p.all_snapshots().value().size() == 1);
}

TEST_CASE("memory provider: ping answers for a running VM only") {
  MemoryProvider p;
  CHECK(p.ping("x", std::chrono::milliseconds(10)).error().variant() == Variant::kVmNotFound);
  REQUIRE(p.create("x", VmSpec{}).ok());
  auto created = p.ping("x", std::chrono::milliseconds(10));
  REQUIRE_FALSE(created.ok());
  CHECK(created.error().message() == "invalid vm transition for 'x': created -> ping");
  REQUIRE(p.start("x").ok());
  CHECK(p.ping("x", std::chrono::milliseconds(10)).ok());
}

TEST_CASE("memory provider: exec needs a running VM") {
  MemoryProvider p;
  REQUIRE(p.create("a", VmSpec{}).ok());
  auto r = p.exec("a", script({"true"}), {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "invalid vm transition for 'a': created -> exec");
}

TEST_CASE("memory provider: scripted behaviours") {
  MemoryProvider p;
  running_vm(p, "a");
  CHECK(p.exec("a", script({"echo", "hello", "world"}), {}).value().stdout_data == "hello world\n");
  auto cat = script({"cat"});
  cat.stdin_data = std::string("in\0put", 6);
  CHECK(p.exec("a", cat, {}).value().stdout_data == std::string("in\0put", 6));
  auto env = script({"env", "NAME"});
  env.env["NAME"] = "value";
  CHECK(p.exec("a", env, {}).value().stdout_data == "value\n");
  CHECK(p.exec("a", script({"stderr", "oops"}), {}).value().stderr_data == "oops\n");
  CHECK(p.exec("a", script({"exit", "42"}), {}).value().exit_code == 42);
  CHECK(p.exec("a", script({"false"}), {}).value().exit_code == 1);
  auto unknown = p.exec("a", script({"rm", "-rf", "/"}), {}).value();
  CHECK(unknown.exit_code == 127);
  CHECK(unknown.stderr_data.find("nothing is executed") != std::string::npos);
}

TEST_CASE("memory provider: output is capped and flagged as truncated") {
  MemoryProvider p;
  running_vm(p, "a");
  auto req = script({"output", "1000"});
  req.output_cap = 100;
  auto r = p.exec("a", req, {}).value();
  CHECK(r.stdout_data.size() == 100);
  CHECK(r.stdout_truncated);
  req.output_cap = 1000;
  r = p.exec("a", req, {}).value();
  CHECK(r.stdout_data.size() == 1000);
  CHECK_FALSE(r.stdout_truncated);
}

TEST_CASE("memory provider: sleep past the timeout is timed out, killed by 9 with exit code 137") {
  MemoryProvider p;
  running_vm(p, "a");
  auto req = script({"sleep", "5000"});
  req.timeout_ms = 20;
  auto r = p.exec("a", req, {}).value();
  CHECK(r.timed_out);
  CHECK(r.signal == 9);
  CHECK(r.exit_code == 137);  // as the guest agent says it (PROTOCOL.md, JobResult)
  req.timeout_ms = 5000;
  req.argv = {"sleep", "1"};
  CHECK_FALSE(p.exec("a", req, {}).value().timed_out);
}

TEST_CASE("memory provider: a stop request cancels a sleeping job") {
  MemoryProvider p;
  running_vm(p, "a");
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto r = p.exec("a", script({"sleep", "10000"}), stop.get_token()).value();
  canceller.join();
  CHECK(r.cancelled);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("memory provider: files in are kept, files out are returned") {
  MemoryProvider p;
  running_vm(p, "a");
  auto req = script({"true"});
  req.files.push_back({"data/in.txt", 0600, "abc"});
  req.files_out = {"data/in.txt", "missing.txt"};
  auto r = p.exec("a", req, {}).value();
  REQUIRE(r.files.size() == 1);
  CHECK(r.files[0].path == "data/in.txt");
  CHECK(r.files[0].data == "abc");
}

TEST_CASE("memory provider: scripted failures return the named variant") {
  MemoryProvider p;
  running_vm(p, "a");
  auto e = p.exec("a", script({"fail", "NetworkSetup", "no", "tap"}), {});
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().variant() == Variant::kNetworkSetup);
  CHECK(e.error().message() == "network setup failed: no tap");
  auto unknown = p.exec("a", script({"fail", "Bogus"}), {});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().variant() == Variant::kUnsupported);
}

TEST_CASE("memory provider: an exception inside the state lock poisons the provider") {
  MemoryProvider p;
  running_vm(p, "a");
  auto r = p.exec("a", script({"poison"}), {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().variant() == Variant::kStatePoisoned);
  CHECK(r.error().message() == "provider state lock poisoned");
  // Every later call refuses to trust the state.
  CHECK(p.get("a").error().variant() == Variant::kStatePoisoned);
  CHECK(p.create("b", VmSpec{}).error().variant() == Variant::kStatePoisoned);
  CHECK(p.destroy("a").error().variant() == Variant::kStatePoisoned);
  CHECK(p.list().error().variant() == Variant::kStatePoisoned);
}

TEST_CASE("memory provider: concurrent jobs on distinct VMs leave nothing behind") {
  MemoryProvider p;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string id = "vm-" + std::to_string(t) + "-" + std::to_string(i);
        REQUIRE(p.create(id, VmSpec{}).ok());
        REQUIRE(p.start(id).ok());
        REQUIRE(p.exec(id, script({"echo", id}), {}).value().stdout_data == id + "\n");
        REQUIRE(p.destroy(id).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(p.live_vms() == 0);
}
