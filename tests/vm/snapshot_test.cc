// Snapshots, templates and clones on the QEMU backend with real microVMs: a booted VM becomes a
// template on disk; clones restored from it map its RAM copy-on-write, are made unique before they
// run anything, run jobs, and never change the template's files.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "paddock/runtime/qemu_provider.h"
#include "qemu/snapshot_store.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::runtime;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

ExecRequest shell(const std::string& script) {
  ExecRequest r;
  r.argv = {"/bin/sh", "-c", script};
  r.timeout_ms = 20'000;
  return r;
}

struct Dirs {
  std::string run = "/run/paddock-test-" + std::to_string(::getpid());
  std::string snapshots = "/run/paddock-test-snap-" + std::to_string(::getpid());
  ~Dirs() {
    std::error_code ec;
    fs::remove_all(run, ec);
    fs::remove_all(snapshots, ec);
  }
  QemuConfig config() const {
    QemuConfig c = testing::test_qemu_config(run);
    c.snapshot_dir = snapshots;
    return c;
  }
};

std::unique_ptr<QemuProvider> open_provider(const Dirs& d) {
  auto opened = QemuProvider::open(d.config());
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  return std::move(opened.value());
}

// Boots `vm`, snapshots it as "template" (paused) and destroys it: what a warm pool's template is.
void make_template(QemuProvider& p, const std::string& vm) {
  REQUIRE(p.create(vm, VmSpec{"default", 1, 128}).ok());
  auto started = p.start(vm);
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message()));
  REQUIRE(p.stop(vm).ok());
  const auto t0 = Clock::now();
  auto snap = p.snapshot(vm, "template");
  REQUIRE_MESSAGE(snap.ok(), (snap.ok() ? "" : snap.error().message()));
  MESSAGE("snapshot of a paused 128 MiB guest: "
          << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
          << " ms");
  REQUIRE(p.destroy(vm).ok());
}

std::string exec_ok(QemuProvider& p, const std::string& vm, const std::string& script) {
  auto x = p.exec(vm, shell(script), {});
  REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
  INFO("stderr: " << x.value().stderr_data);
  REQUIRE(x.value().exit_code == 0);
  return x.value().stdout_data;
}

// Restores a clone of (tpl, "template"), resumes it, runs `script`, destroys it.
std::string clone_run(QemuProvider& p, const std::string& tpl, const std::string& clone,
                      const std::string& script) {
  auto r = p.restore(tpl, "template", clone);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message()));
  auto resumed = p.resume(clone);
  REQUIRE_MESSAGE(resumed.ok(), (resumed.ok() ? "" : resumed.error().message()));
  std::string out = exec_ok(p, clone, script);
  REQUIRE(p.destroy(clone).ok());
  return out;
}

std::map<std::string, std::string> file_hashes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const char* f : {"memory", "state", "meta.json"}) {
    auto h = qemu::hash_file(dir + "/" + f);
    REQUIRE(h.ok());
    out[f] = h.value();
  }
  return out;
}

}  // namespace

TEST_CASE(
    "qemu snapshots: lifecycle, refusals, corruption, and a store that outlives its provider") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  {
    auto p = open_provider(d);
    REQUIRE(p->create("src", VmSpec{"default", 1, 128}).ok());
    CHECK(p->snapshot("src", "early").error().variant() == Variant::kUnsupported);  // not booted
    REQUIRE(p->start("src").ok());
    REQUIRE(p->resume("src").error().variant() == Variant::kInvalidTransition);
    CHECK(exec_ok(*p, "src", "echo before > /work/mark; cat /work/mark") == "before\n");

    // A snapshot of a running VM pauses it for the save; it runs on afterwards.
    auto snap = p->snapshot("src", "template");
    REQUIRE_MESSAGE(snap.ok(), (snap.ok() ? "" : snap.error().message()));
    CHECK(snap.value().spec.mem_mib == 128);
    CHECK(snap.value().image_id.size() == 64);
    CHECK(exec_ok(*p, "src", "echo after > /work/mark; cat /work/mark") == "after\n");
    auto dup = p->snapshot("src", "template");
    REQUIRE_FALSE(dup.ok());
    CHECK(dup.error().message() == "snapshot 'template' already exists for vm 'src'");
    CHECK(p->snapshot("src", "bad/id").error().variant() == Variant::kUnsupported);

    auto missing = p->restore("src", "nope", "c0");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message() == "snapshot 'nope' not found for vm 'src'");

    // The clone is stopped until resumed, and sees the VM as it was at the snapshot.
    REQUIRE(p->restore("src", "template", "c1").ok());
    CHECK(p->get("c1").value().state == VmState::kStopped);
    CHECK(p->get("c1").value().restored_from_vm == "src");
    CHECK(p->restore("src", "template", "c1").error().variant() == Variant::kVmAlreadyExists);
    CHECK(p->exec("c1", shell("true"), {}).error().variant() == Variant::kInvalidTransition);
    REQUIRE(p->resume("c1").ok());
    CHECK(p->qemu_status("c1").value() == "running");
    CHECK(exec_ok(*p, "c1", "cat /work/mark") == "before\n");
    CHECK(p->ping("c1", std::chrono::seconds(5)).ok());
    auto of_clone = p->snapshot("c1", "again");
    REQUIRE_FALSE(of_clone.ok());
    CHECK(of_clone.error().detail().find("copy-on-write") != std::string::npos);
    REQUIRE(p->destroy("c1").ok());
    REQUIRE(p->destroy("src").ok());
    CHECK(p->list_snapshots("src").value().size() == 1);
  }
  {
    // A new provider (a restarted worker) finds the snapshot on disk; its VM id stays taken.
    auto p = open_provider(d);
    auto all = p->all_snapshots().value();
    REQUIRE(all.size() == 1);
    CHECK(all[0].vm_id == "src");
    CHECK(p->create("src", VmSpec{}).error().variant() == Variant::kVmAlreadyExists);
    CHECK(clone_run(*p, "src", "c2", "cat /work/mark") == "before\n");

    // A corrupted RAM file is refused before any QEMU starts.
    const std::string memory = d.snapshots + "/src/template/memory";
    REQUIRE(::chmod(memory.c_str(), 0644) == 0);
    {
      std::FILE* f = std::fopen(memory.c_str(), "r+b");
      REQUIRE(f != nullptr);
      std::fseek(f, 1 << 20, SEEK_SET);
      const int c = std::fgetc(f);
      std::fseek(f, 1 << 20, SEEK_SET);
      std::fputc(c ^ 0xff, f);
      std::fclose(f);
    }
    auto corrupt = p->restore("src", "template", "c3");
    REQUIRE_FALSE(corrupt.ok());
    CHECK(corrupt.error().variant() == Variant::kUnsupported);
    CHECK_MESSAGE(corrupt.error().detail().find("fails its checksum") != std::string::npos,
                  corrupt.error().detail());
    CHECK(p->get("c3").error().variant() == Variant::kVmNotFound);  // nothing was made
    CHECK(testing::qemu_processes_under(d.run) == 0);

    REQUIRE(p->delete_snapshot("src", "template").ok());
    CHECK(p->delete_snapshot("src", "template").error().variant() == Variant::kSnapshotNotFound);
    CHECK(p->restore("src", "template", "c4").error().variant() == Variant::kSnapshotNotFound);
    CHECK_FALSE(fs::exists(d.snapshots + "/src"));
  }
  CHECK(testing::qemu_processes_under(d.run) == 0);
  CHECK(testing::nothing_left_in(d.run));
}

TEST_CASE(
    "qemu clones: unique entropy, boot id, hostname and clock, 50 in sequence and 4 in "
    "parallel, the template's files never change") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  auto p = open_provider(d);
  make_template(*p, "tpl");
  const auto before = file_hashes(d.snapshots + "/tpl/template");

  {
    INFO("two clones of one template differ in what must be unique");
    const std::string probe =
        "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; "
        "cat /proc/sys/kernel/random/boot_id; hostname; date +%s";
    auto run = [&](const std::string& id) {
      REQUIRE(p->restore("tpl", "template", id).ok());
      auto resumed = p->resume(id);
      REQUIRE_MESSAGE(resumed.ok(), (resumed.ok() ? "" : resumed.error().message()));
      auto unix_s = [] {
        return static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
      };
      // The guest reads its clock somewhere during the exec: bracket it with the host's.
      const long long host_before = unix_s();
      std::string out = exec_ok(*p, id, probe);
      const long long host_after = unix_s();
      REQUIRE(p->destroy(id).ok());
      std::vector<std::string> lines;
      for (size_t at = 0; at < out.size();) {
        size_t nl = out.find('\n', at);
        lines.push_back(out.substr(at, nl - at));
        at = nl == std::string::npos ? out.size() : nl + 1;
      }
      REQUIRE(lines.size() == 4);
      const long long guest_now = std::stoll(lines[3]);
      INFO("guest clock " << guest_now << ", host clock " << host_before << ".." << host_after);
      CHECK(guest_now >= host_before - 1);
      CHECK(guest_now <= host_after + 1);
      return lines;
    };
    auto a = run("clone-a");
    auto b = run("clone-b");
    CHECK(a[0].size() == 32);
    CHECK(a[0] != b[0]);  // /dev/urandom
    CHECK(a[1].size() == 36);
    CHECK(a[1] != b[1]);  // boot_id
    CHECK(a[2] == "paddock-clone-a");
    CHECK(b[2] == "paddock-clone-b");
  }

  {
    INFO("50 clones in sequence, each running a job that writes to its guest");
    std::vector<double> ms;
    for (int i = 0; i < 50; ++i) {
      const auto t0 = Clock::now();
      const std::string id = "seq-" + std::to_string(i);
      CHECK(clone_run(*p, "tpl", id,
                      "dd if=/dev/zero of=/work/blob bs=1M count=4 2>/dev/null; echo " +
                          std::to_string(i)) == std::to_string(i) + "\n");
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    MESSAGE("50 sequential clones, restore+resume+job+destroy: median " << ms[25] << " ms, max "
                                                                        << ms.back() << " ms");
  }

  {
    INFO("4 clones in parallel");
    std::vector<std::future<std::string>> runs;
    for (int i = 0; i < 4; ++i) {
      runs.push_back(std::async(std::launch::async, [&, i] {
        const std::string id = "par-" + std::to_string(i);
        auto r = p->restore("tpl", "template", id);
        if (!r.ok()) return "restore: " + r.error().message();
        auto resumed = p->resume(id);
        if (!resumed.ok()) return "resume: " + resumed.error().message();
        auto x = p->exec(id, shell("echo par " + std::to_string(i)), {});
        auto down = p->destroy(id);
        if (!x) return "exec: " + x.error().message();
        if (!down.ok()) return "destroy: " + down.error().message();
        return x.value().stdout_data;
      }));
    }
    for (int i = 0; i < 4; ++i)
      CHECK(runs[static_cast<size_t>(i)].get() == "par " + std::to_string(i) + "\n");
  }

  CHECK(file_hashes(d.snapshots + "/tpl/template") == before);
  CHECK(p->list().value().empty());
  CHECK(testing::qemu_processes_under(d.run) == 0);
  CHECK(testing::nothing_left_in(d.run));
}
