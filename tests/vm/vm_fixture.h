// Shared by the VM tests: the guest image built by the ctest fixture, and a QemuProvider on it.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <doctest/doctest.h>

#include "paddock/runtime/qemu_provider.h"

namespace paddock::testing {

// The first line of a file (a path a fixture wrote down); "" if there is none.
inline std::string first_line(const char* file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// The image directory the "vm: build guest image" fixture wrote down.
inline std::string guest_image_dir() {
  std::ifstream in(PADDOCK_GUEST_IMAGE_FILE);
  std::string dir;
  std::getline(in, dir);
  return dir;
}

// Fails (never skips silently) when the host cannot run the VM tests; skipping is only for a
// non-root developer run, and says so.
inline bool vm_tests_can_run() {
  if (::geteuid() != 0 && std::getenv("CI") == nullptr) {
    MESSAGE("SKIPPED LOUDLY: VM tests need root (run as root; CI does)");
    return false;
  }
  REQUIRE_MESSAGE(!guest_image_dir().empty(),
                  "no guest image: the 'vm: build guest image' fixture did not run or failed");
  return true;
}

inline runtime::QemuConfig test_qemu_config(const std::string& run_dir) {
  runtime::QemuConfig c;
  c.image_dir = guest_image_dir();
  c.run_dir = run_dir;
  c.accel = "auto";
  // Every VM in the tests runs jailed, as in production.
  c.jail = runtime::JailConfig{};
  return c;
}

// Nothing is left in a provider's run directory but the (empty) base of its jails, `qemu/`, and
// the image it staged for them (`.image/`, when the image is on another filesystem).
inline bool nothing_left_in(const std::string& run_dir) {
  for (const auto& e : std::filesystem::directory_iterator(run_dir)) {
    if (e.path().filename() == "qemu" && e.is_directory() && std::filesystem::is_empty(e.path()))
      continue;
    if (e.path().filename() == ".image" && e.is_directory()) continue;
    MESSAGE("left in " << run_dir << ": " << e.path().filename().string());
    return false;
  }
  return true;
}

// QEMU processes whose command line names `run_dir` (read from /proc, so the check cannot
// match itself as a pgrep pattern would).
inline int qemu_processes_under(const std::string& run_dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find("qemu-system") != std::string::npos && cmd.find(run_dir) != std::string::npos) ++n;
  }
  return n;
}

}  // namespace paddock::testing
