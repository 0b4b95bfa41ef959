// The jail defaults a QEMU provider derives from its run directory
// (QemuProvider::jail_defaults): one per directory, whatever its spelling, so that a restarted
// worker given "/srv/run/" sweeps the cgroups it made as "/srv/run".
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "paddock/runtime/qemu_provider.h"

namespace fs = std::filesystem;
using paddock::runtime::QemuProvider;

TEST_CASE(
    "qemu jail defaults: one run directory in any spelling gets one uid range and cgroup parent") {
  char tmpl[] = "/tmp/paddock-jail-defaults-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string base = tmpl;
  fs::create_directories(base + "/run");
  fs::create_symlink(base + "/run", base + "/link");
  const auto plain = QemuProvider::jail_defaults(base + "/run");
  for (const std::string& other :
       {base + "/run/", base + "/run//", base + "/./run", base + "/x/../run", base + "/link"}) {
    CAPTURE(other);
    const auto d = QemuProvider::jail_defaults(other);
    CHECK(d.uid_base == plain.uid_base);
    CHECK(d.cgroup_parent == plain.cgroup_parent);
  }
  // A run directory that does not exist yet has the same defaults once it does.
  const auto before = QemuProvider::jail_defaults(base + "/later/");
  fs::create_directories(base + "/later");
  CHECK(QemuProvider::jail_defaults(base + "/later").cgroup_parent == before.cgroup_parent);
  // Another directory: another range and parent (the hash of these two differs).
  const auto other = QemuProvider::jail_defaults(base + "/run2");
  CHECK(other.cgroup_parent != plain.cgroup_parent);
  CHECK(plain.uid_base >= 1'000'000u);
  CHECK((plain.uid_base - 1'000'000u) % 4096 == 0);
  CHECK(plain.cgroup_parent.rfind("paddock/", 0) == 0);
  CHECK(plain.cgroup_parent.size() == std::string("paddock/").size() + 8);
  fs::remove_all(base);
}
