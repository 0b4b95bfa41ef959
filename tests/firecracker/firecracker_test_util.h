// Helpers of the Firecracker backend's tests: a provider whose Firecracker is the FAKE one,
// started through the FAKE jailer (both test doubles), and small process and file helpers.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "fake_firecracker.h"
#include "firecracker/jail.h"
#include "paddock/runtime/firecracker_provider.h"
#include "paddock/runtime/jailer.h"

namespace paddock::test {

inline constexpr std::chrono::milliseconds kSlowStart{20'000};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A process that exists and is not a zombie.
inline bool running(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'Z';
}

struct Captured {
  int status = -1;     // the exit code; -1 if it did not exit normally
  std::string output;  // stdout and stderr
};

inline Captured run_capture(const std::string& command) {
  Captured c;
  FILE* f = ::popen((command + " 2>&1").c_str(), "r");
  if (!f) return c;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) c.output.append(buf, n);
  const int st = ::pclose(f);
  c.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return c;
}

// A jailed FirecrackerProvider (or, with jailed = false, the same without the jailer): the fake
// jailer starts the fake Firecracker in a chroot below the test's directory, with cgroups below a
// parent of the test's own. REQUIRES: root.
struct JailedBackend {
  std::filesystem::path dir = fresh_temp_dir("fcjail-");
  runtime::FirecrackerConfig config;
  std::unique_ptr<runtime::FirecrackerProvider> provider;
  uint32_t uid_base = 1'100'000;
  int cgroup_version = runtime::jail::cgroup_version().value_or(0);

  explicit JailedBackend(std::optional<runtime::net::NetworkSettings> network = std::nullopt,
                         bool jailed = true) {
    namespace fs = std::filesystem;
    // The fake Firecracker runs as the jail's user in the chroot: its request log must be
    // writable by it, and what it reads (the spec, the agent) is bound in by the fake jailer.
    fs::create_directories(dir / "log");
    fs::permissions(dir / "log", fs::perms::all);
    std::ofstream(dir / "log" / "requests.jsonl").close();
    fs::permissions(dir / "log" / "requests.jsonl",
                    fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                        fs::perms::group_write | fs::perms::others_read | fs::perms::others_write);
    ::setenv("FAKE_FIRECRACKER_SPEC", PADDOCK_FIRECRACKER_SPEC, 1);
    ::setenv("FAKE_FIRECRACKER_LOG", (dir / "log" / "requests.jsonl").c_str(), 1);
    ::setenv("FAKE_FIRECRACKER_AGENT", PADDOCK_AGENT_BIN, 1);
    const std::string binds = fs::path(PADDOCK_FIRECRACKER_SPEC).parent_path().string() + ":" +
                              (dir / "log").string() + ":" + PADDOCK_AGENT_BIN;
    ::setenv("FAKE_JAILER_BIND", binds.c_str(), 1);
    fs::create_directories(dir / "image");
    std::ofstream(dir / "image" / "vmlinux") << "not a kernel: the fake boots nothing";
    std::ofstream(dir / "image" / "initramfs.cpio") << "not an initramfs";
    for (const char* f : {"vmlinux", "initramfs.cpio"}) {
      fs::permissions(dir / "image" / f, fs::perms::owner_read | fs::perms::owner_write |
                                             fs::perms::group_read | fs::perms::others_read);
    }
    config.firecracker_binary = PADDOCK_FAKE_FIRECRACKER;
    config.image_dir = (dir / "image").string();
    config.run_dir = (dir / "run").string();
    config.snapshot_dir = (dir / "snapshots").string();
    config.require_kvm = false;  // the fake needs none
    config.boot_timeout = kSlowStart;
    config.api_timeout = kSlowStart;  // python in a jail: its start is slow on a busy host
    runtime::FirecrackerJailConfig j;
    j.jailer_binary = PADDOCK_FAKE_JAILER;
    j.chroot_base_dir = (dir / "jail").string();
    j.uid_base = uid_base;
    j.uid_count = 16;
    j.vmm_allowance_mib = 128;
    if (jailed) config.jail = j;
    config.network = std::move(network);
    reopen();
  }

  void reopen() {
    provider.reset();
    auto p = runtime::FirecrackerProvider::open(config);
    REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
    provider = std::move(p.value());
  }

  ~JailedBackend() {
    provider.reset();
    for (const char* k : {"FAKE_FIRECRACKER_SPEC", "FAKE_FIRECRACKER_LOG", "FAKE_FIRECRACKER_AGENT",
                          "FAKE_JAILER_BIND"}) {
      ::unsetenv(k);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // The cgroup directories of jail `id` (below the provider's parent).
  std::vector<std::string> cgroup_dirs(const std::string& id) const {
    runtime::jail::JailSpec s;
    s.id = id;
    s.cgroup_root = "/sys/fs/cgroup";
    s.cgroup_parent = "paddock-fc/" + runtime::firecracker::jail_prefix(config.run_dir);
    return runtime::jail::cgroup_dirs(s, cgroup_version);
  }

  // Every request the fakes logged conformed to the spec.
  bool sequence_conforms() const {
    std::ifstream in(dir / "log" / "requests.jsonl");
    std::string line;
    bool all = true;
    while (std::getline(in, line)) {
      const bool ok = nlohmann::json::parse(line)["conforms"].get<bool>();
      CHECK_MESSAGE(ok, line);
      all = all && ok;
    }
    return all;
  }
};

// A network namespace the test makes to play the worker's host, so that the machine's own
// firewall and routes are never touched; deleted (with whatever is left in it) when it goes.
struct ScratchHost {
  std::string tag = std::to_string(::getpid() % 100000);
  std::string name = "pfw" + tag;
  ScratchHost() {
    REQUIRE(run_capture("ip netns add " + name).status == 0);
    REQUIRE(run_capture("ip -n " + name + " link set lo up").status == 0);
  }
  ~ScratchHost() { (void)run_capture("ip netns delete " + name); }
  ScratchHost(const ScratchHost&) = delete;
  ScratchHost& operator=(const ScratchHost&) = delete;
};

}  // namespace paddock::test
