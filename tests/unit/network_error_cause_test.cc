// The causes of a per-VM network's errors with the real kernel half (src/net/vm_network.h): an
// iptables-restore that fails is the host's fault (Firewall, HostIo: retryable), a rule that is
// invalid is the submitter's (Firewall, InvalidInput: final). Root only, in namespaces this test
// makes and removes; the machine's own firewall is never touched.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "net/vm_network.h"

namespace net = paddock::runtime::net;
namespace fs = std::filesystem;
using paddock::runtime::Cause;
using paddock::runtime::Variant;

namespace {

int sh(const std::string& command) { return std::system(command.c_str()); }

// A namespace that plays the worker's host, and a directory whose `iptables-restore` refuses
// everything, first on PATH while the test runs (the real one stays for the rest).
struct FakeHost {
  std::string tag = std::to_string(::getpid() % 100000);
  std::string netns = "pdkc-" + tag;
  fs::path bin =
      fs::temp_directory_path() / ("paddock-fakebin-" + std::to_string(std::random_device{}()));
  std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  bool ok = false;

  FakeHost() {
    ok = sh("ip netns add " + netns) == 0;
    fs::create_directories(bin);
    {
      std::ofstream script(bin / "iptables-restore");
      script << "#!/bin/sh\necho 'fake iptables-restore: the host refused' >&2\nexit 4\n";
    }
    fs::permissions(bin / "iptables-restore", fs::perms::owner_all);
  }
  void shadow() const { ::setenv("PATH", (bin.string() + ":" + old_path).c_str(), 1); }
  ~FakeHost() {
    ::setenv("PATH", old_path.c_str(), 1);
    if (ok) sh("ip netns del " + netns + " 2>/dev/null");
    std::error_code ec;
    fs::remove_all(bin, ec);
  }
};

size_t namespaces_with(const std::string& prefix) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("network: a failing iptables-restore is a retryable Firewall error, a bad rule is not") {
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED LOUDLY: not root, so a failing iptables-restore was NOT checked");
    return;
  }
  FakeHost host;
  REQUIRE_MESSAGE(host.ok, "ip netns add failed");
  net::NetworkSettings s;
  s.host_netns = host.netns;
  s.pool = "10.214.0.0/24";
  s.prefix = "c" + host.tag;
  auto opened = net::NetworkManager::open(s);
  REQUIRE_MESSAGE(opened.ok(), (opened.ok() ? "" : opened.error().message()));
  auto& manager = *opened.value();
  {
    // A network made with the real tools: a rule the submitter got wrong is final.
    auto made = manager.create("vm-ok");
    REQUIRE_MESSAGE(made.ok(), (made.ok() ? "" : made.error().message()));
    auto bad = made.value()->allow_egress({{"10.0.0.0/8", "tcp", {{90, 80}}}});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().variant() == Variant::kFirewall);
    CHECK(bad.error().cause() == Cause::kInvalidInput);
    CHECK_FALSE(bad.error().retryable());
  }
  // The host's iptables-restore fails: the same variant, the host's fault, worth another attempt.
  host.shadow();
  auto failed = manager.create("vm-f");
  REQUIRE_FALSE(failed.ok());
  INFO("message: " << failed.error().message());
  CHECK(failed.error().variant() == Variant::kFirewall);
  CHECK(failed.error().code() == 10);
  CHECK(failed.error().cause() == Cause::kHostIo);
  CHECK(failed.error().retryable());
  CHECK(failed.error().detail().find("fake iptables-restore: the host refused") !=
        std::string::npos);
  // Nothing of either VM is left (the failed one was torn down at once).
  CHECK(namespaces_with(s.prefix + "-") == 0);
}
