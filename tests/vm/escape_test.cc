// The escape suite (issue 21): from inside real VMs, a job tries, as an attacker would, to reach
// everything a VM must never reach, over TCP, UDP and ICMP (and IPv6), while listeners on the
// other side record every hit. The job's egress is as wide as a job can ask (0.0.0.0/0 any) and
// the operator's policy the default (0.0.0.0/0 any, no deny list, no host, no link-local), so
// only what Paddock builds stands between the guest and the host.
//
// The test's own world, all in namespaces it makes (the machine's own firewall is never touched):
//   W  plays the worker's host (--net-host-netns): 198.18.7.1/24 and 203.0.113.1/24 on its link
//      to X, every VM's host link, and 203.0.113.77/32 added while the VMs' networks are up.
//      Its recorder listens on TCP 5555 (a broker's port), UDP 45353 and raw ICMP.
//   X  an external machine the job may reach (198.18.7.2, the control: the probes can succeed)
//      that also holds the metadata address 169.254.169.254. Same recorder.
//   VM1 runs the probes; a recorder in its namespace (the guest's gateway) listens the same way
//      and sniffs tap0 (IPv6 frames either way).
//   VM2 a sibling VM with egress: a recorder in its namespace sniffs eth1 for anything arriving.
//
// Probes (one shell script in one job, all in parallel)       expected
//   gateway 172.30.0.1                 tcp 5555, udp, icmp     silent, no hit
//   VM1's own uplink 10.213.0.2        tcp 5555, udp, icmp     silent, no hit
//   VM1's host link 10.213.0.1         tcp 5555, udp, icmp     silent, no hit in W
//   W 198.18.7.1 (host address)        tcp 5555, udp, icmp     silent, no hit in W
//   W 203.0.113.1 (host address)       tcp 5555, udp, icmp     silent, no hit in W
//   W 203.0.113.77 (added later)       tcp 5555, udp, icmp     silent, no hit in W
//   198.18.7.255, 203.0.113.255        udp, icmp               silent, no hit in W
//     (the host's subnets' broadcasts)
//   255.255.255.255                    icmp                    silent, no hit
//   224.0.0.1 (multicast)              udp, icmp               silent, no hit in W or VM1's ns
//   169.254.169.254 (metadata, on X)   tcp 5555, udp, icmp     silent, no hit in X
//   VM2 10.213.0.6, its link 10.213.0.5 tcp 5555, udp, icmp    silent, nothing reaches VM2's ns
//   ff02::1 (IPv6 all-nodes)           icmp6                   no answer but the guest's own
//   tap0's link-local (EUI-64)         tcp6 5555, icmp6        silent; the namespace sends no
//                                                              IPv6 frame at all
//   X 198.18.7.2 (allowed, control)    tcp 5555, udp, icmp     open X-5555, answered X-udp,
//                                                              answered; hits in X
// After it: IPv6 is off on tap0, eth1 and the host end, ip6tables drops by policy, and nothing
// of the VMs is left (namespaces, links, host rules, processes).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "paddock/runtime/qemu_provider.h"
#include "test_internet.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::runtime;
using paddock::testing::capture;
using paddock::testing::sh;
namespace bp = boost::process;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string kRecorder = PADDOCK_ESCAPE_RECORDER;

std::string slurp_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// A recorder (escape_recorder.py) in a namespace, writing its hits to a file; killed with it.
class Recorder {
 public:
  Recorder(const std::string& ns, const std::string& name, std::vector<std::string> args,
           const std::string& dir)
      : name_(name), out_(dir + "/" + name + ".hits") {
    std::vector<std::string> argv = {"netns", "exec", ns, "/usr/bin/python3", kRecorder, name};
    argv.insert(argv.end(), args.begin(), args.end());
    child_ = std::make_unique<bp::child>("/usr/sbin/ip", argv, bp::std_out > out_,
                                         bp::std_err > out_ + ".err");
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (hits().find("ready\n") == std::string::npos && child_->running() &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    REQUIRE_MESSAGE(
        hits().find("ready\n") != std::string::npos,
        "recorder " << name << " in " << ns << " did not start: " << slurp_file(out_ + ".err"));
  }
  ~Recorder() {
    std::error_code ec;
    child_->terminate(ec);
    child_->wait(ec);
  }
  const std::string& name() const { return name_; }
  std::string hits() const { return slurp_file(out_); }
  // The hit lines (tcp/udp/icmp/icmp6/frame) for which `keep` is true.
  template <class F>
  std::vector<std::string> hits_where(F keep) const {
    std::vector<std::string> out;
    for (const auto& line : lines_of(hits())) {
      const auto w = words_of(line);
      if (w.empty() || w[0] == "ready" || w[0] == "note") continue;
      if (keep(w)) out.push_back(line);
    }
    return out;
  }

 private:
  std::string name_;
  std::string out_;
  std::unique_ptr<bp::child> child_;
};

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// The link-local address the kernel gives an interface with this MAC (modified EUI-64), as
// busybox prints it ("fe80::50:44ff:fe4b:2").
std::string eui64_link_local(const std::string& mac) {
  unsigned b[6] = {};
  REQUIRE(std::sscanf(mac.c_str(), "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) ==
          6);
  char text[64];
  std::snprintf(text, sizeof text, "fe80::%x:%x:%x:%x", ((b[0] ^ 2u) << 8) | b[1],
                (b[2] << 8) | 0xffu, 0xfe00u | b[3], (b[4] << 8) | b[5]);
  return text;
}

struct Probe {
  std::string name, kind, target, port;  // kind: tcp, udp, icmp, tcp6, icmp6
};

// Whether a recorder's hit (its words) is probe `p` arriving: same protocol and destination
// (an ICMPv6 hit has no destination; a zone "%eth0" is not part of one).
bool hit_of(const std::vector<std::string>& h, const Probe& p) {
  if (h.size() < 3) return false;
  const std::string target = p.target.substr(0, p.target.find('%'));
  if (p.kind == "icmp6") return h[0] == "icmp6";
  const std::string proto = p.kind == "tcp6" ? "tcp" : p.kind;
  return h[0] == proto && h[2] == target;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The namespace (named with `prefix`) whose eth1 holds `address`; "" if none.
std::string namespace_with_eth1(const std::string& prefix, const std::string& address) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    const std::string ns = e.path().filename().string();
    if (ns.rfind(prefix + "-vm", 0) != 0) continue;
    if (capture("ip -n " + ns + " -4 -o addr show dev eth1 2>/dev/null")
            .find(" " + address + "/") != std::string::npos)
      return ns;
  }
  return "";
}

// The guest's side: every probe in the background, one result line each ("NAME RESULT ...").
// tcp: busybox nc (open <banner> | refused | silent); udp: busybox tftp, whose request any UDP
// listener receives (answered <text> | refused | silent); icmp: ping (answered | silent).
std::string probe_script(const std::vector<Probe>& probes) {
  std::string s =
      "cd /tmp\n"
      "tcp() { r=$(timeout 8 nc -w 4 $2 $3 </dev/null 2>e.$1)\n"
      "  if [ -n \"$r\" ]; then echo \"$1 open $r\"; elif grep -qi refused e.$1; then echo \"$1 "
      "refused\"; else echo \"$1 silent\"; fi; }\n"
      "udp() { timeout 5 tftp -g -r probe -l t.$1 $2 $3 >o.$1 2>&1\n"
      "  a=$(grep -o '[A-Za-z0-9]*-udp' o.$1 | head -n 1)\n"
      "  if [ -n \"$a\" ]; then echo \"$1 answered $a\"; elif grep -qi refused o.$1; then echo "
      "\"$1 refused\"; else echo \"$1 silent\"; fi; }\n"
      "icmp() { if timeout 8 ping -c 2 -W 4 $2 >o.$1 2>&1; then echo \"$1 answered\"; else echo "
      "\"$1 silent\"; fi; }\n"
      "tcp6() { tcp \"$@\"; }\n"
      "icmp6() { timeout 8 ping6 -c 2 -W 4 -I eth0 $2 >o.$1 2>&1\n"
      "  f=$(grep -o 'from [0-9a-f:]*' o.$1 | sort -u | tr '\\n' ' ')\n"
      "  if [ -n \"$f\" ]; then echo \"$1 answered $f\"; else echo \"$1 silent\"; fi; }\n";
  int i = 0;
  for (const auto& p : probes) {
    s += p.kind + " " + p.name + " " + p.target + (p.port.empty() ? "" : " " + p.port) + " >r." +
         std::to_string(i++) + " &\n";
  }
  s += "wait\ncat r.*\n";
  return s;
}

}  // namespace

TEST_CASE(
    "escape suite: a job with egress 0.0.0.0/0 reaches no host address (not even one added "
    "later), broadcast, multicast, metadata, sibling VM or IPv6 neighbour, while an external host "
    "it "
    "may reach answers") {
  if (!testing::vm_tests_can_run()) return;
  const auto t0 = std::chrono::steady_clock::now();
  std::string timings;  // where the time goes, printed at the end
  auto mark = [&, last = t0](const char* what) mutable {
    const auto now = std::chrono::steady_clock::now();
    timings +=
        std::string(" ") + what + " " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - last).count()) +
        " ms;";
    last = now;
  };
  const std::string tag = std::to_string(::getpid() % 100000);
  const std::string w = "ptew" + tag, x = "ptex" + tag;
  const std::string prefix = "t" + tag;
  const std::string run_dir = "/run/paddock-test-escape-" + std::to_string(::getpid());
  const std::string rec_dir = run_dir + "-rec";
  fs::create_directories(rec_dir);
  struct Cleanup {
    std::string w, x, rec_dir, run_dir;
    ~Cleanup() {
      for (const auto& ns : {x, w}) sh("ip netns delete " + ns + " 2>/dev/null");
      std::error_code ec;
      fs::remove_all(rec_dir, ec);
      fs::remove_all(run_dir, ec);
    }
  } cleanup{w, x, rec_dir, run_dir};

  // W and X, joined by one link.
  for (const auto& ns : {w, x}) {
    REQUIRE(sh("ip netns add " + ns) == 0);
    REQUIRE(sh("ip -n " + ns + " link set lo up") == 0);
  }
  const std::string wx = "wx" + tag;
  REQUIRE(sh("ip -n " + w + " link add " + wx + " type veth peer name eth0 netns " + x) == 0);
  REQUIRE(sh("ip -n " + w + " addr add 198.18.7.1/24 dev " + wx) == 0);
  REQUIRE(sh("ip -n " + w + " addr add 203.0.113.1/24 dev " + wx) == 0);
  REQUIRE(sh("ip -n " + w + " link set " + wx + " up") == 0);
  REQUIRE(sh("ip -n " + x + " addr add 198.18.7.2/24 dev eth0") == 0);
  REQUIRE(sh("ip -n " + x + " addr add 169.254.169.254/32 dev eth0") == 0);
  REQUIRE(sh("ip -n " + x + " link set eth0 up") == 0);
  REQUIRE(sh("ip -n " + x + " route add default via 198.18.7.1") == 0);
  REQUIRE(sh("ip -n " + w + " route add 169.254.169.254/32 via 198.18.7.2") == 0);

  const std::vector<std::string> listen = {"--tcp", "5555", "--udp", "45353", "--icmp"};
  Recorder rec_w(w, "W", listen, rec_dir);
  Recorder rec_x(x, "X", listen, rec_dir);
  // W's recorder hears what X sends it (so its silence later means something).
  REQUIRE(sh("ip netns exec " + x + " /usr/bin/python3 " + kRecorder +
             " --probe 198.18.7.1 5555 45353") == 0);

  net::NetworkSettings settings;
  settings.host_netns = w;
  settings.pool = "10.213.0.0/24";
  settings.prefix = prefix;  // the default policy: 0.0.0.0/0 any, no deny, no host, no link-local
  QemuConfig c = testing::test_qemu_config(run_dir);
  c.network = settings;
  std::map<std::string, std::string> observed;  // probe -> what the guest saw
  std::vector<Probe> probes;
  {
    auto opened = QemuProvider::open(c);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
    auto& p = *opened.value();
    // Two VMs booted at once (a TCG boot takes seconds).
    for (const char* id : {"vm1", "vm2"}) REQUIRE(p.create(id, VmSpec{}).ok());
    Status started[2];
    {
      std::jthread a([&] { started[0] = p.start("vm1"); });
      std::jthread b([&] { started[1] = p.start("vm2"); });
    }
    for (const auto& st : started) REQUIRE_MESSAGE(st.ok(), (st.ok() ? "" : st.error().message()));
    mark("namespaces, recorders, two VM boots:");
    // VM1 first: it takes the pool's first /30 (10.213.0.0/30), VM2 the second.
    auto eg1 = p.set_egress("vm1", {{"0.0.0.0/0", "any", {}}});
    REQUIRE_MESSAGE(eg1.ok(), (eg1.ok() ? "" : eg1.error().message()));
    auto eg2 = p.set_egress("vm2", {{"198.18.7.2/32", "icmp", {}}});
    REQUIRE_MESSAGE(eg2.ok(), (eg2.ok() ? "" : eg2.error().message()));
    const std::string ns1 = namespace_with_eth1(prefix, "10.213.0.2");
    const std::string ns2 = namespace_with_eth1(prefix, "10.213.0.6");
    REQUIRE(!ns1.empty());
    REQUIRE(!ns2.empty());
    const std::string link1 = trimmed(capture("ip -n " + w +
                                              " -o -4 addr show to 10.213.0.1 | "
                                              "awk '{print $2}'"));
    REQUIRE(!link1.empty());

    // IPv6 is off where the guest's packets arrive and leave, and ip6tables drops by policy.
    for (const auto& [ns, dev] : {std::pair{ns1, std::string("tap0")},
                                  {ns1, std::string("eth1")},
                                  {ns1, std::string("lo")},
                                  {w, link1}}) {
      CHECK_MESSAGE(capture("ip netns exec " + ns + " sysctl -n net.ipv6.conf." + dev +
                            ".disable_ipv6") == "1\n",
                    ns << " " << dev);
      CHECK_MESSAGE(capture("ip -n " + ns + " -6 -o addr show dev " + dev) == "", ns << " " << dev);
    }
    if (std::system("command -v ip6tables >/dev/null") == 0) {
      CHECK(capture("ip netns exec " + ns1 + " ip6tables -w -S")
                .find("-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT DROP\n") != std::string::npos);
    }

    // The gateway's and the sibling's side: recorders in the VMs' own namespaces.
    // (Ended before the VMs are destroyed: a process in a namespace keeps it alive.)
    std::optional<Recorder> gw_holder, vm2_holder;
    gw_holder.emplace(
        ns1, "GW",
        std::vector<std::string>{"--tcp", "5555", "--udp", "45353", "--icmp", "--sniff", "tap0"},
        rec_dir);
    vm2_holder.emplace(
        ns2, "VM2",
        std::vector<std::string>{"--tcp", "5555", "--udp", "45353", "--icmp", "--sniff", "eth1"},
        rec_dir);
    const Recorder& rec_gw = *gw_holder;
    const Recorder& rec_vm2 = *vm2_holder;
    // The sibling's sniffer sees its own VM's traffic (so its silence later means something).
    ExecRequest ping2;
    ping2.script = "ping -c 1 -W 5 198.18.7.2";
    auto pinged = p.exec("vm2", ping2, {});
    REQUIRE_MESSAGE(pinged.ok(), (pinged.ok() ? "" : pinged.error().message()));
    CHECK_MESSAGE(pinged.value().exit_code == 0, pinged.value().stdout_data);

    // An address the host gains while the VMs' networks are up.
    REQUIRE(sh("ip -n " + w + " addr add 203.0.113.77/32 dev " + wx) == 0);

    const std::string tap_mac =
        trimmed(capture("ip -n " + ns1 +
                        " -o link show tap0 | grep -o 'link/ether [0-9a-f:]*' | "
                        "cut -d' ' -f2"));
    const std::string tap_ll = eui64_link_local(tap_mac);
    const std::string guest_ll = eui64_link_local(net::kGuestMac);
    auto all3 = [&](const std::string& name, const std::string& addr) {
      probes.push_back({name + " tcp", "tcp", addr, "5555"});
      probes.push_back({name + " udp", "udp", addr, "45353"});
      probes.push_back({name + " icmp", "icmp", addr, ""});
    };
    all3("gateway", "172.30.0.1");
    all3("own-uplink", "10.213.0.2");
    all3("host-link", "10.213.0.1");
    all3("host-addr", "198.18.7.1");
    all3("host-addr2", "203.0.113.1");
    all3("host-added-later", "203.0.113.77");
    for (const char* b : {"198.18.7.255", "203.0.113.255"}) {
      probes.push_back({std::string("broadcast-") + b + " udp", "udp", b, "45353"});
      probes.push_back({std::string("broadcast-") + b + " icmp", "icmp", b, ""});
    }
    probes.push_back({"broadcast-255.255.255.255 icmp", "icmp", "255.255.255.255", ""});
    probes.push_back({"multicast-224.0.0.1 udp", "udp", "224.0.0.1", "45353"});
    probes.push_back({"multicast-224.0.0.1 icmp", "icmp", "224.0.0.1", ""});
    all3("metadata", "169.254.169.254");
    all3("vm2", "10.213.0.6");
    all3("vm2-host-link", "10.213.0.5");
    probes.push_back({"ipv6-ff02::1 icmp6", "icmp6", "ff02::1", ""});
    probes.push_back({"ipv6-tap0-ll tcp6", "tcp6", tap_ll + "%eth0", "5555"});
    probes.push_back({"ipv6-tap0-ll icmp6", "icmp6", tap_ll, ""});
    all3("control-X", "198.18.7.2");
    for (auto& pr : probes) {
      // Names without spaces for the shell; the table prints them with one.
      std::replace(pr.name.begin(), pr.name.end(), ' ', '_');
    }

    ExecRequest r;
    r.script = probe_script(probes);
    r.timeout_ms = 90'000;
    mark("egress, IPv6 checks, sibling's ping:");
    auto x = p.exec("vm1", r, {});
    REQUIRE_MESSAGE(x.ok(), (x.ok() ? "" : x.error().message()));
    mark("probe job:");
    CHECK_MESSAGE(x.value().stderr_data.empty(), x.value().stderr_data);
    for (const auto& line : lines_of(x.value().stdout_data)) {
      const size_t sp = line.find(' ');
      if (sp != std::string::npos) observed[line.substr(0, sp)] = line.substr(sp + 1);
    }

    // What the guest saw.
    std::string table = "\nprobe | expected | observed\n";
    for (const auto& pr : probes) {
      const bool control = pr.name.rfind("control-X", 0) == 0;
      std::string expected = "silent";
      if (control && pr.kind == "tcp") expected = "open X-5555";
      if (control && pr.kind == "udp") expected = "answered X-udp";
      if (control && pr.kind == "icmp") expected = "answered";
      std::string got = observed.count(pr.name) ? observed[pr.name] : "(no result)";
      if (pr.name == "ipv6-ff02::1_icmp6" && got.rfind("answered", 0) == 0) {
        // The guest answering its own multicast ping is no escape: only other answerers count.
        std::string others;
        for (auto word : words_of(got.substr(8))) {
          while (!word.empty() && word.back() == ':') word.pop_back();  // "from ADDR: seq=0"
          if (word != "from" && word != guest_ll) others += " " + word;
        }
        got = others.empty() ? "silent (only the guest itself: " + guest_ll + ")"
                             : "answered by" + others;
        CHECK_MESSAGE(others.empty(), pr.name << ": " << got);
      } else {
        CHECK_MESSAGE(got == expected, pr.name << ": expected " << expected << ", got " << got);
      }
      std::string heard;
      for (const Recorder* rec : std::vector<const Recorder*>{&rec_w, &rec_x, &rec_gw, &rec_vm2}) {
        // (Not X's own self-check hits on W.)
        const size_t n =
            rec->hits_where([&](const auto& h) { return h[1] != "198.18.7.2" && hit_of(h, pr); })
                .size();
        if (n > 0) heard += " " + rec->name() + "×" + std::to_string(n);
      }
      if (!heard.empty()) got += "; heard by" + heard;
      table += pr.name + " -> " + pr.target + (pr.port.empty() ? "" : ":" + pr.port) + " | " +
               expected + " | " + got + "\n";
    }

    // What the listeners saw.
    const auto w_hits = rec_w.hits_where([](const auto& h) { return h[1] != "198.18.7.2"; });
    CHECK_MESSAGE(w_hits.empty(), "W (the host) was reached:\n" << joined(w_hits));
    const auto x_meta = rec_x.hits_where([](const auto& h) { return h[2] == "169.254.169.254"; });
    CHECK_MESSAGE(x_meta.empty(), "the metadata address was reached:\n" << joined(x_meta));
    for (const char* proto : {"tcp", "udp", "icmp"}) {
      const std::string pr = proto;
      CHECK_MESSAGE(
          !rec_x.hits_where([&](const auto& h) { return h[0] == pr && h[2] == "198.18.7.2"; })
               .empty(),
          "the control host X heard no " << pr);
    }
    const auto gw_hits = rec_gw.hits_where([](const auto& h) {
      return h[0] == "tcp" || h[0] == "udp" || h[0] == "icmp" || h[0] == "icmp6";
    });
    CHECK_MESSAGE(gw_hits.empty(), "the gateway (VM1's namespace) was reached:\n"
                                       << joined(gw_hits));
    const auto v6_out = rec_gw.hits_where(
        [](const auto& h) { return h[0] == "frame" && h[2] == "out" && h[3] == "ipv6"; });
    CHECK_MESSAGE(v6_out.empty(), "VM1's namespace sent IPv6 to the guest:\n" << joined(v6_out));
    const auto v6_in = rec_gw.hits_where(
        [](const auto& h) { return h[0] == "frame" && h[2] == "in" && h[3] == "ipv6"; });
    CHECK_MESSAGE(!v6_in.empty(), "the guest sent no IPv6 at all: the IPv6 probes proved nothing");
    const auto vm2_own =
        rec_vm2.hits_where([](const auto& h) { return h[0] == "frame" && h[4] == "198.18.7.2"; });
    CHECK_MESSAGE(!vm2_own.empty(), "VM2's sniffer did not see VM2's own ping's reply");
    const auto vm2_hits = rec_vm2.hits_where([](const auto& h) {
      return !(h[0] == "frame" && (h[4] == "198.18.7.2" || h[2] == "out"));
    });
    CHECK_MESSAGE(vm2_hits.empty(), "the sibling VM's namespace was reached:\n"
                                        << joined(vm2_hits));
    table += "listeners: W " + std::to_string(w_hits.size()) + " hit(s) from VMs, gateway " +
             std::to_string(gw_hits.size()) + ", VM2's namespace " +
             std::to_string(vm2_hits.size()) + ", metadata " + std::to_string(x_meta.size()) +
             ", IPv6 frames from VM1's namespace " + std::to_string(v6_out.size()) +
             " (guest sent " + std::to_string(v6_in.size()) + ")\n";
    MESSAGE(table);

    gw_holder.reset();
    vm2_holder.reset();
    for (const char* id : {"vm1", "vm2"}) REQUIRE(p.destroy(id).ok());
  }
  mark("destroy:");
  // Leak census: no namespace, host link, host rule or QEMU of the VMs is left.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    CHECK_MESSAGE(e.path().filename().string().rfind(prefix + "-", 0) != 0, e.path());
  }
  CHECK(capture("ip -n " + w + " -o link show | grep -c ' " + prefix + "h' || true") == "0\n");
  CHECK(capture("ip netns exec " + w + " iptables-save | grep -c '" + prefix + ":' || true") ==
        "0\n");
  CHECK(testing::qemu_processes_under(run_dir) == 0);
  CHECK(testing::nothing_left_in(run_dir));
  MESSAGE("escape suite took " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - t0)
                                      .count()
                               << " ms:" << timings);
}
