// Per-VM networks and the egress firewall with real VMs. The test makes its own "internet": a
// namespace W that plays the worker's host, and test hosts A and B in namespaces of their own,
// each running small TCP servers that answer with their name and port. Everything the provider
// does on "the host" happens in W; the machine's own firewall and routes are never touched.
#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/process.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "paddock/runtime/qemu_provider.h"
#include "test_internet.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::runtime;
using paddock::testing::capture;
using paddock::testing::sh;
using paddock::testing::TestInternet;
namespace bp = boost::process;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct Dirs {
  std::string run = "/run/paddock-test-net-" + std::to_string(::getpid());
  std::string snapshots = "/run/paddock-test-netsnap-" + std::to_string(::getpid());
  ~Dirs() {
    std::error_code ec;
    fs::remove_all(run, ec);
    fs::remove_all(snapshots, ec);
  }
};

net::NetworkSettings settings_for(const TestInternet& inet) {
  net::NetworkSettings s;
  s.host_netns = inet.w;
  s.pool = "10.213.0.0/24";
  s.prefix = "t" + inet.tag.substr(0, 5);
  s.policy.deny = {"198.18.2.3/32"};  // "the broker"
  return s;
}

// What the guest gets from host:port through busybox nc ("" when it cannot connect).
// `wait_s` bounds the connect: a blocked attempt waits it out, an allowed one returns at once.
std::string reach(QemuProvider& p, const std::string& vm, const std::string& host, int port,
                  int wait_s = 2) {
  ExecRequest r;
  r.argv = {"/bin/sh", "-c",
            "nc -w " + std::to_string(wait_s) + " " + host + " " + std::to_string(port) +
                " </dev/null 2>/dev/null; true"};
  r.timeout_ms = 15'000;
  auto x = p.exec(vm, r, {});
  REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
  std::string out = x.value().stdout_data;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

size_t namespaces_with(const std::string& prefix) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

// No namespace, host link or host iptables rule named with `prefix` is left (in W).
void check_nothing_left(const TestInternet& inet, const std::string& prefix) {
  CHECK(namespaces_with(prefix + "-") == 0);
  CHECK(capture("ip -n " + inet.w + " -o link show | grep -c ' " + prefix + "h'") == "0\n");
  CHECK(capture("ip netns exec " + inet.w + " iptables-save | grep -c '" + prefix + ":'") == "0\n");
}

}  // namespace

TEST_CASE("qemu network: bad settings and rules are refused before any ip or iptables command") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  TestInternet inet;
  {
    QemuConfig c = testing::test_qemu_config(d.run);
    c.network = settings_for(inet);
    c.network->pool = "10.213.0.0/31";
    auto opened = QemuProvider::open(c);
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.error().variant() == Variant::kNetworkConfig);
    CHECK(opened.error().message().find("10.213.0.0/31") != std::string::npos);
  }
  QemuConfig c = testing::test_qemu_config(d.run);
  c.network = settings_for(inet);
  auto opened = QemuProvider::open(c);
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  auto& p = *opened.value();
  REQUIRE(p.create("vm-v", VmSpec{}).ok());
  const uint64_t before = p.network_commands_run();
  auto bad = [&](std::vector<net::EgressRule> rules, Variant v, const std::string& names) {
    auto st = p.set_egress("vm-v", rules);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().variant() == v);
    CHECK_MESSAGE(st.error().message().find(names) != std::string::npos, st.error().message());
  };
  bad({{"10.0.0.0/33", "tcp", {}}}, Variant::kFirewall, "10.0.0.0/33");
  bad({{"10.0.0.300/32", "tcp", {}}}, Variant::kFirewall, "10.0.0.300");
  bad({{"10.0.0.0/8", "sctp", {}}}, Variant::kFirewall, "sctp");
  bad({{"10.0.0.0/8", "any", {{80, 80}}}}, Variant::kFirewall, "any");
  bad({{"10.0.0.0/8", "tcp", {{90, 80}}}}, Variant::kFirewall, "90-80");
  bad({{"10.0.0.0/8", "tcp", {{0, 80}}}}, Variant::kFirewall, "0");
  auto empty_id = p.set_egress("", {{"10.0.0.0/8", "tcp", {}}});
  CHECK(empty_id.error().variant() == Variant::kNetworkConfig);
  CHECK(p.network_commands_run() == before);  // nothing ran for any of them
  REQUIRE(p.destroy("vm-v").ok());
}

TEST_CASE(
    "qemu network: a job reaches only what its rules and the operator allow, VMs never "
    "reach each other, and nothing is left behind") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  TestInternet inet;
  const auto settings = settings_for(inet);
  {
    QemuConfig c = testing::test_qemu_config(d.run);
    c.network = settings;
    auto opened = QemuProvider::open(c);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
    auto& p = *opened.value();
    auto boot = [&](const std::string& id, std::vector<net::EgressRule> rules) {
      REQUIRE(p.create(id, VmSpec{}).ok());
      auto st = p.start(id);
      REQUIRE_MESSAGE(st.ok(), (st.ok() ? "" : st.error().message()));
      auto eg = p.set_egress(id, rules);
      REQUIRE_MESSAGE(eg.ok(), (eg.ok() ? "" : eg.error().message()));
    };
    // Two VMs at once: one narrow (A port 8001 only), one as wide as a job can ask.
    boot("narrow", {{"198.18.1.2/32", "tcp", {{8001, 8001}}}});
    boot("wide", {{"0.0.0.0/0", "any", {}}});
    boot("none", {});

    CHECK(reach(p, "narrow", "198.18.1.2", 8001) == "A-8001");
    CHECK(reach(p, "narrow", "198.18.1.2", 8002) == "");
    CHECK(reach(p, "narrow", "198.18.2.2", 8001) == "");

    CHECK(reach(p, "wide", "198.18.2.2", 8001) == "B-8001");  // the rule works when allowed
    CHECK(reach(p, "wide", "198.18.1.2", 8002) == "A-8002");
    CHECK(reach(p, "wide", "169.254.169.254", 80) == "");  // metadata: always denied
    CHECK(reach(p, "wide", "198.18.1.1", 8003) == "");     // the host's own address
    CHECK(reach(p, "wide", "198.18.2.3", 5556) == "");     // the broker (operator deny list)
    CHECK(reach(p, "wide", "10.213.0.2", 8001) == "");     // the other VM's address

    CHECK(reach(p, "none", "198.18.1.2", 8001) == "");
    CHECK(reach(p, "none", "198.18.2.2", 8001) == "");

    auto wide = p.network_usage("wide");
    REQUIRE(wide.ok());
    CHECK(wide.value().egress_blocked >= 4);  // one SYN at least per blocked attempt
    CHECK(wide.value().bytes_out > 0);
    CHECK(wide.value().bytes_in > 0);
    auto none = p.network_usage("none");
    REQUIRE(none.ok());
    CHECK(none.value().egress_blocked >= 2);
    for (const char* id : {"narrow", "wide", "none"}) REQUIRE(p.destroy(id).ok());
    CHECK(namespaces_with(settings.prefix + "-") == 0);
  }
  // No namespace, host link or host rule of ours is left in W.
  check_nothing_left(inet, settings.prefix);
  CHECK(testing::qemu_processes_under(d.run) == 0);
}

TEST_CASE("qemu network: 100 clones with egress leave no namespace, veth, TAP, rule or lease") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  TestInternet inet;
  const auto settings = settings_for(inet);
  QemuConfig c = testing::test_qemu_config(d.run);
  c.network = settings;
  c.snapshot_dir = d.snapshots;
  auto opened = QemuProvider::open(c);
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  auto& p = *opened.value();
  REQUIRE(p.create("tpl", VmSpec{}).ok());
  REQUIRE(p.start("tpl").ok());
  REQUIRE(p.stop("tpl").ok());
  REQUIRE(p.snapshot("tpl", "template").ok());
  REQUIRE(p.destroy("tpl").ok());
  for (int i = 0; i < 100; ++i) {
    const std::string id = "job-" + std::to_string(i);
    REQUIRE(p.restore("tpl", "template", id).ok());
    auto resumed = p.resume(id);
    REQUIRE_MESSAGE(resumed.ok(), (resumed.ok() ? "" : resumed.error().message()));
    auto eg = p.set_egress(id, {{"198.18.1.2/32", "tcp", {{8001, 8001}}}});
    REQUIRE_MESSAGE(eg.ok(), (eg.ok() ? "" : eg.error().message()));
    // Every tenth job proves its egress works (a clone's network, like its template's).
    // (An allowed connect may take its time on a loaded machine: give it 10 s.)
    if (i % 10 == 0) CHECK(reach(p, id, "198.18.1.2", 8001, 10) == "A-8001");
    REQUIRE(p.network_usage(id).ok());
    REQUIRE(p.destroy(id).ok());
  }
  check_nothing_left(inet, settings.prefix);
  CHECK(testing::qemu_processes_under(d.run) == 0);
  REQUIRE(p.delete_snapshot("tpl", "template").ok());
}

TEST_CASE("qemu network: the startup sweep removes what a crashed provider left") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  TestInternet inet;
  const auto settings = settings_for(inet);
  // What a crash leaves: a VM namespace, a host veth end with a NAT rule in W.
  REQUIRE(sh("ip netns add " + settings.prefix + "-vm7") == 0);
  REQUIRE(sh("ip -n " + inet.w + " link add " + settings.prefix +
             "h7 type veth peer name eth1 netns " + settings.prefix + "-vm7") == 0);
  REQUIRE(sh("ip netns exec " + inet.w +
             " iptables -t nat -A POSTROUTING -s 10.213.0.2/32 -m "
             "comment --comment " +
             settings.prefix + ":7 -j MASQUERADE") == 0);
  QemuConfig c = testing::test_qemu_config(d.run);
  c.network = settings;
  auto opened = QemuProvider::open(c);
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  check_nothing_left(inet, settings.prefix);
}
