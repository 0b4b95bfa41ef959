// Firecracker VMs get the QEMU backend's per-VM network (runtime/README.md, "Networks and
// egress"): a namespace with a TAP, the default-deny firewall, and egress by the job's rules.
// Against the FAKE jailer and FAKE Firecracker (test doubles): the fake Firecracker opens the TAP
// by name as the jail's user inside the namespace, as Firecracker does, so a TAP it may not open
// fails the start. No guest runs, so no packet crosses the TAP here: that the firewall filters a
// guest's traffic is tested with QEMU VMs (tests/vm/network_test.cc). Needs root; the "host" is a
// namespace the test makes.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "firecracker_test_util.h"
#include "paddock/runtime/firecracker_provider.h"

using namespace paddock::runtime;
namespace fs = std::filesystem;
using paddock::test::JailedBackend;
using paddock::test::run_capture;
using paddock::test::ScratchHost;

namespace {

bool skip_unless_root() {
  if (::geteuid() == 0) return false;
  MESSAGE(
      "SKIPPED LOUDLY: the Firecracker network tests need root (namespaces, TAPs, "
      "iptables, the jailer); they were NOT run");
  return true;
}

net::NetworkSettings settings_for(const ScratchHost& host) {
  net::NetworkSettings s;
  s.host_netns = host.name;
  s.pool = "10.214.0.0/24";
  s.prefix = "f" + host.tag.substr(0, 5);
  return s;
}

std::string in_ns(const std::string& ns, const std::string& command) {
  return run_capture("ip netns exec " + ns + " " + command).output;
}

bool netns_exists(const std::string& ns) { return fs::exists("/run/netns/" + ns); }

// The host namespace's interfaces (read only): a TAP must never end up there.
std::string host_links() { return run_capture("ls /sys/class/net").output; }

// Nothing named with the prefix is left: namespaces, host links or host rules (in the scratch
// host).
void check_nothing_left(const ScratchHost& host, const std::string& prefix) {
  for (const auto& e : fs::directory_iterator("/run/netns")) {
    CHECK_MESSAGE(e.path().filename().string().rfind(prefix + "-", 0) != 0, e.path());
  }
  CHECK(run_capture("ip -n " + host.name + " -o link show").output.find(" " + prefix + "h") ==
        std::string::npos);
  CHECK(in_ns(host.name, "iptables-save").find(prefix + ":") == std::string::npos);
}

// The PUT /network-interfaces requests the fakes logged.
std::vector<nlohmann::json> interface_requests(const JailedBackend& b) {
  std::vector<nlohmann::json> out;
  std::ifstream in(b.dir / "log" / "requests.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto r = nlohmann::json::parse(line);
    if (r["path"].get<std::string>().rfind("/network-interfaces/", 0) == 0) out.push_back(r);
  }
  return out;
}

}  // namespace

TEST_CASE("firecracker network: a jailed VM gets a namespace and a TAP its jail user opens") {
  if (skip_unless_root()) return;
  ScratchHost host;
  const auto settings = settings_for(host);
  const std::string links_before = host_links();
  {
    JailedBackend b(settings);
    Provider& p = *b.provider;
    REQUIRE(p.create("vm1", VmSpec{}));
    auto started = p.start("vm1");
    REQUIRE_MESSAGE(started, (started ? "" : started.error().message()));
    const std::string ns = b.provider->netns("vm1");
    REQUIRE(netns_exists(ns));
    // The configuration named the TAP and the guest MAC, and conformed to the spec; the fake
    // opened the TAP (a 400 otherwise, and no start).
    const auto puts = interface_requests(b);
    REQUIRE(puts.size() == 1);
    CHECK(puts[0]["path"] == "/network-interfaces/eth0");
    CHECK(puts[0]["status"] == 204);
    CHECK(puts[0]["conforms"] == true);
    CHECK(puts[0]["body"] == nlohmann::json{{"iface_id", "eth0"},
                                            {"host_dev_name", "tap0"},
                                            {"guest_mac", net::kGuestMac}});
    // The TAP is in the VM's namespace, owned by the jail's uid and gid.
    CHECK(in_ns(ns, "cat /sys/class/net/tap0/owner") == std::to_string(b.uid_base) + "\n");
    CHECK(in_ns(ns, "cat /sys/class/net/tap0/group") == std::to_string(b.uid_base) + "\n");
    // Firecracker runs in that namespace.
    const int pid = b.provider->vmm_pid("vm1");
    CHECK(fs::equivalent("/proc/" + std::to_string(pid) + "/ns/net", "/run/netns/" + ns));
    // Default deny: no way out until the job's rules come.
    CHECK(in_ns(ns, "iptables-save").find(":FORWARD DROP") != std::string::npos);
    CHECK(in_ns(ns, "iptables-save").find("-o eth1") == std::string::npos);
    // Egress by the job's rules: the allow line in the VM's firewall, NAT in the host's.
    REQUIRE(p.set_egress("vm1", {net::EgressRule{"198.18.1.0/24", "tcp", {{80, 80}}}}));
    const std::string rules = in_ns(ns, "iptables-save");
    CHECK(rules.find("-d 198.18.1.0/24") != std::string::npos);
    CHECK(rules.find("--dport 80") != std::string::npos);
    CHECK(in_ns(host.name, "iptables-save").find(settings.prefix + ":") != std::string::npos);
    auto usage = p.network_usage("vm1");
    REQUIRE_MESSAGE(usage, (usage ? "" : usage.error().message()));
    CHECK(usage.value().egress_blocked == 0);
    // A bad rule is refused before any command runs.
    auto bad = p.set_egress("vm1", {net::EgressRule{"10.0.0.1/8", "tcp", {}}});
    REQUIRE_FALSE(bad);
    CHECK(bad.error().variant() == Variant::kFirewall);
    REQUIRE(p.destroy("vm1"));
    CHECK_FALSE(netns_exists(ns));
    check_nothing_left(host, settings.prefix);
  }
  CHECK(host_links() == links_before);
}

TEST_CASE("firecracker network: a clone gets its own namespace and TAP and both go with it") {
  if (skip_unless_root()) return;
  ScratchHost host;
  const auto settings = settings_for(host);
  JailedBackend b(settings);
  Provider& p = *b.provider;
  REQUIRE(p.create("tmpl", VmSpec{}));
  auto started = p.start("tmpl");
  REQUIRE_MESSAGE(started, (started ? "" : started.error().message()));
  const std::string tmpl_ns = b.provider->netns("tmpl");
  REQUIRE(p.stop("tmpl"));
  REQUIRE(p.snapshot("tmpl", "s"));
  auto restored = p.restore("tmpl", "s", "clone");
  REQUIRE_MESSAGE(restored, (restored ? "" : restored.error().message()));
  const std::string clone_ns = b.provider->netns("clone");
  REQUIRE(netns_exists(clone_ns));
  CHECK(clone_ns != tmpl_ns);
  // The clone runs as the next jail uid; its TAP is its own.
  CHECK(in_ns(clone_ns, "cat /sys/class/net/tap0/owner") == std::to_string(b.uid_base + 1) + "\n");
  REQUIRE(p.destroy("clone"));
  REQUIRE(p.destroy("tmpl"));
  CHECK_FALSE(netns_exists(clone_ns));
  CHECK_FALSE(netns_exists(tmpl_ns));
  check_nothing_left(host, settings.prefix);
}

TEST_CASE("firecracker network: not jailed Firecracker runs in the VM's namespace") {
  if (skip_unless_root()) return;
  ScratchHost host;
  const auto settings = settings_for(host);
  JailedBackend b(settings, /*jailed=*/false);
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{}));
  auto started = p.start("vm1");
  REQUIRE_MESSAGE(started, (started ? "" : started.error().message()));
  const std::string ns = b.provider->netns("vm1");
  const int pid = b.provider->vmm_pid("vm1");
  CHECK(fs::equivalent("/proc/" + std::to_string(pid) + "/ns/net", "/run/netns/" + ns));
  CHECK(in_ns(ns, "cat /sys/class/net/tap0/owner") == "0\n");
  REQUIRE(p.destroy("vm1"));
  check_nothing_left(host, settings.prefix);
}

TEST_CASE(
    "firecracker network: without networks egress rules are Unsupported and empty ones fine") {
  if (skip_unless_root()) return;
  JailedBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{}));
  CHECK(p.set_egress("vm1", {}));
  auto st = p.set_egress("vm1", {net::EgressRule{"198.18.1.0/24", "tcp", {}}});
  REQUIRE_FALSE(st);
  CHECK(st.error().variant() == Variant::kUnsupported);
  CHECK(st.error().detail().find("without networks") != std::string::npos);
}
