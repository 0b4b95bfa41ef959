// FirecrackerProvider against the FAKE Firecracker (a test double: no VM runs; the fake answers
// the API like Firecracker, checks every request against the spec, and on a vsock CONNECT serves
// the guest agent protocol with the real paddock-agent in its host test mode). What needs a real
// Firecracker and KVM is the last test: it runs only where PADDOCK_FIRECRACKER_BIN is set
// (tests/firecracker/real_firecracker.sh), and otherwise ctest reports it SKIPPED, never passed.
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stop_token>

#include "fake_firecracker.h"
#include "paddock/runtime/backends.h"
#include "paddock/runtime/firecracker_provider.h"

using namespace paddock::runtime;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A provider whose "firecracker" is the fake, with a stand-in image and its own directories.
struct FakeBackend {
  fs::path dir = paddock::test::fresh_temp_dir("fcprov-");
  std::unique_ptr<FirecrackerProvider> provider;

  explicit FakeBackend(const paddock::test::FakeKnobs& knobs = {},
                       std::chrono::milliseconds grace = 2s) {
    for (const auto& e : paddock::test::fake_environment(dir, knobs)) {
      const auto eq = e.find('=');
      if (e.rfind("FAKE_FIRECRACKER_", 0) == 0) {
        ::setenv(e.substr(0, eq).c_str(), e.substr(eq + 1).c_str(), 1);
      }
    }
    ::setenv("FAKE_FIRECRACKER_AGENT", PADDOCK_AGENT_BIN, 1);
    fs::create_directories(dir / "image");
    std::ofstream(dir / "image" / "vmlinux") << "not a kernel: the fake boots nothing";
    std::ofstream(dir / "image" / "initramfs.cpio") << "not an initramfs";
    FirecrackerConfig c;
    c.firecracker_binary = PADDOCK_FAKE_FIRECRACKER;
    c.image_dir = (dir / "image").string();
    c.run_dir = (dir / "run").string();
    c.snapshot_dir = (dir / "snapshots").string();
    c.require_kvm = false;  // the fake needs none
    c.boot_timeout = 15s;
    c.api_timeout = 15s;  // the fake is python: its start is slow on a busy host
    c.shutdown_grace = grace;
    auto p = FirecrackerProvider::open(c);
    REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
    provider = std::move(p.value());
  }
  ~FakeBackend() {
    provider.reset();
    for (const char* k : {"FAKE_FIRECRACKER_IGNORE_CTRL_ALT_DEL", "FAKE_FIRECRACKER_IGNORE_SIGTERM",
                          "FAKE_FIRECRACKER_FAIL"}) {
      ::unsetenv(k);
    }
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::end(it); ++it) {
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(dir, ec);
  }
  // Requests every fake of this backend logged (they share one log).
  std::vector<std::string> sequence() const {
    std::vector<std::string> out;
    std::ifstream in(dir / "requests.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto r = nlohmann::json::parse(line);
      out.push_back(r["method"].get<std::string>() + " " + r["path"].get<std::string>());
      CHECK_MESSAGE(r["conforms"].get<bool>(), line);
    }
    return out;
  }
};

bool alive(int pid) { return pid > 0 && ::kill(pid, 0) == 0; }

}  // namespace

TEST_CASE("firecracker provider: lifecycle create start pause snapshot resume destroy") {
  FakeBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{"default", 2, 256}));
  auto started = p.start("vm1");
  REQUIRE_MESSAGE(started, (started ? "" : started.error().message()));
  CHECK(p.get("vm1").value().state == VmState::kRunning);
  const int pid = b.provider->vmm_pid("vm1");
  CHECK(alive(pid));
  // The guest agent answers over the hybrid vsock.
  CHECK(p.ping("vm1", 5s));
  ExecRequest req;
  req.argv = {"/bin/echo", "hello over vsock"};
  auto ran = p.exec("vm1", req, std::stop_token{});
  REQUIRE_MESSAGE(ran, (ran ? "" : ran.error().message()));
  CHECK(ran.value().stdout_data == "hello over vsock\n");
  REQUIRE(p.stop("vm1"));
  CHECK(p.get("vm1").value().state == VmState::kStopped);
  auto snap = p.snapshot("vm1", "s1");
  REQUIRE_MESSAGE(snap, (snap ? "" : snap.error().message()));
  CHECK(snap.value().spec.vcpus == 2);
  CHECK(fs::exists(b.dir / "snapshots" / "vm1" / "s1" / "state"));
  CHECK(fs::exists(b.dir / "snapshots" / "vm1" / "s1" / "memory"));
  REQUIRE(p.resume("vm1"));
  REQUIRE(p.destroy("vm1"));
  CHECK(p.get("vm1").value().state == VmState::kDestroyed);
  CHECK_FALSE(alive(pid));
  const std::vector<std::string> expected = {"PUT /metrics",         "PUT /machine-config",
                                             "PUT /boot-source",     "PUT /vsock",
                                             "PUT /actions",         "PATCH /vm",
                                             "PUT /snapshot/create", "PATCH /vm",
                                             "PUT /actions"};  // InstanceStart ... SendCtrlAltDel
  CHECK(b.sequence() == expected);
  CHECK(fs::is_empty(b.dir / "run"));  // the VM's directory went with it
}

TEST_CASE("firecracker provider: a snapshot of a running VM pauses and resumes it") {
  FakeBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{}));
  REQUIRE(p.start("vm1"));
  REQUIRE(p.snapshot("vm1", "s1"));
  CHECK(p.get("vm1").value().state == VmState::kRunning);
  CHECK(p.ping("vm1", 5s));
  auto seq = b.sequence();
  REQUIRE(seq.size() >= 3);
  CHECK(std::vector<std::string>(seq.end() - 3, seq.end()) ==
        std::vector<std::string>{"PATCH /vm", "PUT /snapshot/create", "PATCH /vm"});
}

TEST_CASE("firecracker provider: restore gives a new vm id loaded from the snapshot") {
  FakeBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("tmpl", VmSpec{"default", 1, 128}));
  REQUIRE(p.start("tmpl"));
  REQUIRE(p.stop("tmpl"));
  REQUIRE(p.snapshot("tmpl", "warm"));
  REQUIRE(p.destroy("tmpl"));
  auto restored = p.restore("tmpl", "warm", "clone1");
  REQUIRE_MESSAGE(restored, (restored ? "" : restored.error().message()));
  auto info = p.get("clone1");
  REQUIRE(info);
  CHECK(info.value().state == VmState::kStopped);
  CHECK(info.value().restored_from_vm == "tmpl");
  CHECK(info.value().restored_from_snapshot == "warm");
  CHECK(p.restore("tmpl", "warm", "clone1").error().variant() == Variant::kVmAlreadyExists);
  CHECK(b.sequence().back() == "PUT /snapshot/load");
  // The clone's first resume makes it unique; the agent in its host test mode applies nothing,
  // which the provider refuses rather than run a job in a clone that shares its template's state.
  auto resumed = p.resume("clone1");
  REQUIRE_FALSE(resumed);
  CHECK(resumed.error().variant() == Variant::kGuestAgent);
  CHECK(resumed.error().detail().find("applied nothing") != std::string::npos);
  CHECK(p.get("clone1").value().state == VmState::kStopped);
  REQUIRE(p.destroy("clone1"));
}

TEST_CASE("firecracker provider: restoring a missing snapshot is SnapshotNotFound") {
  FakeBackend b;
  auto st = b.provider->restore("nope", "nothing", "clone");
  REQUIRE_FALSE(st);
  CHECK(st.error().variant() == Variant::kSnapshotNotFound);
  CHECK(b.provider->get("clone").error().variant() == Variant::kVmNotFound);
}

TEST_CASE("firecracker provider: invalid transitions are refused without calling the API") {
  FakeBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{}));
  CHECK(p.stop("vm1").error().variant() == Variant::kInvalidTransition);
  CHECK(p.resume("vm1").error().variant() == Variant::kInvalidTransition);
  CHECK(p.create("vm1", VmSpec{}).error().variant() == Variant::kVmAlreadyExists);
  CHECK(p.start("nope").error().variant() == Variant::kVmNotFound);
  CHECK(b.sequence().empty());
}

TEST_CASE("firecracker provider: an API error at boot is Unsupported and leaves nothing behind") {
  FakeBackend b(paddock::test::FakeKnobs{
      {"FAKE_FIRECRACKER_FAIL", "PUT /boot-source 400 Invalid kernel image"}});
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{}));
  auto st = p.start("vm1");
  REQUIRE_FALSE(st);
  CHECK(st.error().variant() == Variant::kUnsupported);
  CHECK(st.error().detail() == "firecracker API PUT /boot-source: 400: Invalid kernel image");
  CHECK(p.get("vm1").value().state == VmState::kCreated);
  CHECK(fs::is_empty(b.dir / "run"));
}

TEST_CASE("firecracker provider: shutdown escalates to SIGTERM then SIGKILL") {
  FakeBackend b(paddock::test::FakeKnobs{{"FAKE_FIRECRACKER_IGNORE_CTRL_ALT_DEL", "1"},
                                         {"FAKE_FIRECRACKER_IGNORE_SIGTERM", "1"}},
                200ms);
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{}));
  REQUIRE(p.start("vm1"));
  const int pid = b.provider->vmm_pid("vm1");
  REQUIRE(alive(pid));
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(p.destroy("vm1"));
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK_FALSE(alive(pid));
  CHECK(took >= 400ms);  // one grace after Ctrl+Alt+Del, one after SIGTERM
  CHECK(took < 5s);
  CHECK(b.sequence().back() == "PUT /actions");  // SendCtrlAltDel came first
}

TEST_CASE("firecracker provider: network usage comes from the metrics FIFO") {
  FakeBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{}));
  CHECK(p.network_usage("vm1").value().bytes_in == 0);  // not started: zeros
  REQUIRE(p.start("vm1"));
  // The fake writes no metrics: the FIFO has no line, which is a Metrics error, not zeros.
  auto usage = p.network_usage("vm1");
  REQUIRE_FALSE(usage);
  CHECK(usage.error().variant() == Variant::kMetrics);
  CHECK(p.set_egress("vm1", {}).ok());
  REQUIRE(p.destroy("vm1"));
}

TEST_CASE(
    "firecracker backend: on a host without Firecracker it is Unsupported saying what is missing") {
  BackendConfig config;
  config.firecracker.firecracker_binary = "/nonexistent/firecracker";
  auto p = make_provider("firecracker", config);
  REQUIRE_FALSE(p);
  CHECK(p.error().variant() == Variant::kUnsupported);
  CHECK(p.error().detail().find("/nonexistent/firecracker not found") != std::string::npos);
  CHECK(p.error().detail().find("not packaged in Debian") != std::string::npos);
  // With a binary but without KVM (this test's host may have /dev/kvm: then it gets further and
  // fails on the image, which must also say what is missing).
  config.firecracker.firecracker_binary = PADDOCK_FAKE_FIRECRACKER;
  auto q = make_provider("firecracker", config);
  REQUIRE_FALSE(q);
  CHECK(q.error().variant() == Variant::kUnsupported);
  const bool kvm = ::access("/dev/kvm", R_OK | W_OK) == 0;
  CHECK(q.error().detail().find(kvm ? "no vmlinux" : "/dev/kvm") != std::string::npos);
}

TEST_CASE("firecracker real: boots a guest and runs a job" * doctest::skip()) {
  // Run by tests/firecracker/real_firecracker.sh only when PADDOCK_FIRECRACKER_BIN is set; a
  // broken setup then fails here, loudly.
  const char* bin = std::getenv("PADDOCK_FIRECRACKER_BIN");
  const char* image = std::getenv("PADDOCK_FIRECRACKER_IMAGE");
  REQUIRE_MESSAGE(bin, "PADDOCK_FIRECRACKER_BIN is not set");
  REQUIRE_MESSAGE(image,
                  "PADDOCK_FIRECRACKER_IMAGE (a directory with vmlinux and an initramfs) "
                  "is not set");
  const auto dir = paddock::test::fresh_temp_dir("fcreal-");
  FirecrackerConfig c;
  c.firecracker_binary = bin;
  c.image_dir = image;
  c.run_dir = (dir / "run").string();
  c.snapshot_dir = (dir / "snapshots").string();
  auto opened = FirecrackerProvider::open(c);
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  Provider& p = *opened.value();
  REQUIRE(p.create("real1", VmSpec{}));
  auto st = p.start("real1");
  REQUIRE_MESSAGE(st, (st ? "" : st.error().message()));
  ExecRequest req;
  req.argv = {"/bin/echo", "hi"};
  auto ran = p.exec("real1", req, std::stop_token{});
  REQUIRE_MESSAGE(ran, (ran ? "" : ran.error().message()));
  CHECK(ran.value().stdout_data == "hi\n");
  REQUIRE(p.destroy("real1"));
  fs::remove_all(dir);
}
