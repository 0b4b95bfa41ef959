// The pure half of per-VM networking (network.h, src/net/rules.h): CIDRs, validation of settings
// and egress rules, the intersection of a job's allowlist with the operator's, the iptables text of
// a VM's namespace (checked by iptables-restore in a throwaway namespace when run as root), the
// blocked-packet counter, and the /30 address pool.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "net/rules.h"
#include "paddock/runtime/network.h"

namespace net = paddock::runtime::net;
using net::Cidr;
using net::EgressRule;
using net::PortRange;
using paddock::runtime::Status;
using paddock::runtime::Variant;

namespace {

std::string cidr_reason(std::string_view text) {
  std::string reason;
  CHECK_FALSE(net::parse_cidr(text, &reason).has_value());
  return reason;
}

// The error of `s`, which must have failed with variant `v` and a detail that names `value`. A
// refused setting or rule is the sender's mistake: InvalidInput, never retried.
void check_refused(const Status& s, Variant v, const std::string& value) {
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().variant() == v);
  CHECK(s.error().cause() == paddock::runtime::Cause::kInvalidInput);
  CHECK_FALSE(s.error().retryable());
  INFO("detail: " << s.error().detail());
  CHECK(s.error().detail().find(value) != std::string::npos);
}

Status egress(std::vector<EgressRule> rules) { return net::validate_egress("vm-1", rules); }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

size_t index_of(const std::vector<std::string>& lines, std::string_view needle) {
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find(needle) != std::string::npos) return i;
  }
  return lines.size();
}

// A network namespace that exists for one test, deleted on every path.
class ScratchNetns {
 public:
  ScratchNetns() : name_("pdkt-" + std::to_string(getpid())) {
    ok_ = std::system(("ip netns add " + name_).c_str()) == 0;
  }
  ~ScratchNetns() {
    if (ok_) std::system(("ip netns del " + name_ + " 2>/dev/null").c_str());
  }
  bool ok() const { return ok_; }
  // Runs `command` inside the namespace with `input` on stdin; its exit status and stdout.
  int run(const std::string& command, const std::string& input, std::string* output = nullptr) {
    const std::string in_path = "/tmp/" + name_ + ".in";
    const std::string out_path = "/tmp/" + name_ + ".out";
    std::ofstream(in_path) << input;
    const int rc = std::system(
        ("ip netns exec " + name_ + " " + command + " < " + in_path + " > " + out_path + " 2>&1")
            .c_str());
    std::ifstream out(out_path);
    std::stringstream buffer;
    buffer << out.rdbuf();
    if (output) *output = buffer.str();
    std::remove(in_path.c_str());
    std::remove(out_path.c_str());
    return rc;
  }

 private:
  std::string name_;
  bool ok_ = false;
};

net::RulesetInput sample_input() {
  net::RulesetInput in;
  in.tap = "tap0";
  in.uplink = "pdk-v1";
  in.comment = "pdk:vm-1";
  in.denied = {Cidr{0xA9FE0000, 16}, Cidr{0x0A000001, 32}};  // 169.254.0.0/16, 10.0.0.1/32
  in.allowed = {
      EgressRule{"10.0.0.0/8", "tcp", {{80, 80}, {443, 444}}},
      EgressRule{"1.1.1.1/32", "udp", {{53, 53}}},
      EgressRule{"8.8.8.0/24", "icmp", {}},
      EgressRule{"0.0.0.0/0", "any", {}},
  };
  return in;
}

}  // namespace

TEST_CASE("parse_cidr takes strict dotted quads with an optional prefix") {
  CHECK(net::parse_cidr("10.0.0.0/8") == Cidr{0x0A000000, 8});
  CHECK(net::parse_cidr("1.2.3.4") == Cidr{0x01020304, 32});
  CHECK(net::parse_cidr("0.0.0.0/0") == Cidr{0, 0});
  CHECK(net::parse_cidr("255.255.255.255/32") == Cidr{0xFFFFFFFF, 32});
  CHECK(net::parse_cidr("192.168.0.0/16")->str() == "192.168.0.0/16");
  CHECK(net::ip_str(0xAC1E0002) == "172.30.0.2");
  CHECK(Cidr{0x01020304, 32}.str() == "1.2.3.4/32");
}

TEST_CASE("parse_cidr refusals name the text and say what is wrong") {
  CHECK(cidr_reason("10.0.0.1/8") ==
        "'10.0.0.1/8' has bits set past its /8 prefix (did you mean 10.0.0.0/8?)");
  CHECK(cidr_reason("10.0.0.300/32") == "'10.0.0.300/32' is not an IPv4 address");
  CHECK(cidr_reason("10.0.0.0/33") == "'10.0.0.0/33': prefix over 32");
  CHECK(cidr_reason("10.0.0.0/100") == "'10.0.0.0/100': prefix over 32");
  CHECK(cidr_reason("abc") == "'abc' is not <ipv4>/<prefix>");
  CHECK(cidr_reason("010.0.0.0/8") == "'010.0.0.0/8' is not an IPv4 address");
  CHECK(cidr_reason("1.2.3/24") == "'1.2.3/24' is not an IPv4 address");
  CHECK(cidr_reason("1.2.3.4.5") == "'1.2.3.4.5' is not an IPv4 address");
  CHECK(cidr_reason("1.2.3.4/") == "'1.2.3.4/' is not <ipv4>/<prefix>");
  CHECK(cidr_reason("1.2.3.4/08") == "'1.2.3.4/08' is not <ipv4>/<prefix>");
  CHECK(cidr_reason("1.2.3.4/8/8") == "'1.2.3.4/8/8' is not <ipv4>/<prefix>");
  CHECK(cidr_reason("") == "'' is not <ipv4>/<prefix>");
  CHECK(cidr_reason(" 1.2.3.4") == "' 1.2.3.4' is not <ipv4>/<prefix>");
  CHECK(cidr_reason("-1.2.3.4") == "'-1.2.3.4' is not <ipv4>/<prefix>");
  CHECK(cidr_reason(std::string("1.2.3.4\0", 8)) == "'1.2.3.4\\x00' is not <ipv4>/<prefix>");
  CHECK(cidr_reason(std::string(200, '1')).size() < 120);  // a long value is cut in messages
  CHECK_FALSE(net::parse_cidr("1.2.3.4/33").has_value());  // no reason pointer: still refused
}

TEST_CASE("Cidr contains itself and narrower blocks, nothing wider or beside it") {
  const Cidr ten = *net::parse_cidr("10.0.0.0/8");
  CHECK(ten.contains(ten));
  CHECK(ten.contains(*net::parse_cidr("10.20.0.0/16")));
  CHECK(ten.contains(*net::parse_cidr("10.255.255.255")));
  CHECK_FALSE(ten.contains(*net::parse_cidr("11.0.0.0/16")));
  CHECK_FALSE(ten.contains(*net::parse_cidr("0.0.0.0/0")));
  CHECK(net::parse_cidr("0.0.0.0/0")->contains(ten));
}

TEST_CASE("interface_name_problem names empty, long and oddly spelled names") {
  CHECK_FALSE(net::interface_name_problem("tap0").has_value());
  CHECK_FALSE(net::interface_name_problem("pdk-0123456789a").has_value());  // 15 characters
  CHECK(net::interface_name_problem("")->find("empty") != std::string::npos);
  CHECK(net::interface_name_problem("pdk-0123456789ab")->find("'pdk-0123456789ab'") !=
        std::string::npos);
  CHECK(net::interface_name_problem("eth 0")->find("'eth 0'") != std::string::npos);
  CHECK(net::interface_name_problem("a/b")->find("'a/b'") != std::string::npos);
}

TEST_CASE("validate_settings accepts the defaults and names every bad setting") {
  CHECK(net::validate_settings({}).ok());
  auto with = [](auto change) {
    net::NetworkSettings s;
    change(s);
    return net::validate_settings(s);
  };
  check_refused(with([](auto& s) { s.pool = "nope"; }), Variant::kNetworkConfig, "'nope'");
  check_refused(with([](auto& s) { s.pool = "10.0.0.1/16"; }), Variant::kNetworkConfig,
                "'10.0.0.1/16'");
  check_refused(with([](auto& s) { s.pool = "10.0.0.0/31"; }), Variant::kNetworkConfig,
                "'10.0.0.0/31'");
  check_refused(with([](auto& s) { s.pool = "10.0.0.8"; }), Variant::kNetworkConfig, "'10.0.0.8'");
  CHECK(with([](auto& s) { s.pool = "10.0.0.4/30"; }).ok());
  check_refused(with([](auto& s) { s.prefix = ""; }), Variant::kNetworkConfig, "''");
  check_refused(with([](auto& s) { s.prefix = "pdk1234"; }), Variant::kNetworkConfig, "'pdk1234'");
  check_refused(with([](auto& s) { s.prefix = "Pdk"; }), Variant::kNetworkConfig, "'Pdk'");
  check_refused(with([](auto& s) { s.prefix = "p-k"; }), Variant::kNetworkConfig, "'p-k'");
  check_refused(with([](auto& s) { s.host_netns = "a/b"; }), Variant::kNetworkConfig, "'a/b'");
  check_refused(with([](auto& s) { s.host_netns = std::string(65, 'n'); }), Variant::kNetworkConfig,
                std::string(64, 'n'));
  CHECK(with([](auto& s) { s.host_netns = std::string(64, 'n'); }).ok());
  check_refused(with([](auto& s) {
                  s.policy.deny = {"10.0.0.0/8", "10.1.2.3/8"};
                }),
                Variant::kNetworkConfig, "'10.1.2.3/8'");
  check_refused(with([](auto& s) {
                  s.policy.allow = {{"1.2.3.0/24", "sctp", {}}};
                }),
                Variant::kFirewall, "'sctp'");
  check_refused(with([](auto& s) {
                  s.policy.allow = {{"1.2.3.4/24", "tcp", {}}};
                }),
                Variant::kFirewall, "'1.2.3.4/24'");
  check_refused(with([](auto& s) {
                  s.policy.allow = {{"1.2.3.0/24", "tcp", {{90, 80}}}};
                }),
                Variant::kFirewall, "90-80");
}

TEST_CASE("validate_egress refuses unusable vm ids as NetworkConfig") {
  CHECK(egress({}).ok());
  check_refused(net::validate_egress("", {}), Variant::kNetworkConfig, "empty vm id");
  check_refused(net::validate_egress(std::string(65, 'v'), {}), Variant::kNetworkConfig,
                std::string(64, 'v'));
  CHECK(net::validate_egress(std::string(64, 'v'), {}).ok());
  check_refused(net::validate_egress("vm 1", {}), Variant::kNetworkConfig, "'vm 1'");
  check_refused(net::validate_egress("vm/1", {}), Variant::kNetworkConfig, "'vm/1'");
}

TEST_CASE("validate_egress names each bad rule by index and value as Firewall") {
  const EgressRule good{"10.0.0.0/8", "tcp", {{80, 80}}};
  CHECK(egress({good, {"1.1.1.1", "icmp", {}}, {"0.0.0.0/0", "any", {}}}).ok());
  CHECK(egress({{"1.1.1.1", "udp", {{1, 65535}}}}).ok());

  check_refused(egress({good, {"10.0.0.1/8", "tcp", {}}}), Variant::kFirewall, "rule 1");
  check_refused(egress({good, {"10.0.0.1/8", "tcp", {}}}), Variant::kFirewall, "'10.0.0.1/8'");
  check_refused(egress({{"abc", "tcp", {}}}), Variant::kFirewall, "'abc'");

  const Status sctp = egress({good, good, {"1.2.3.4", "sctp", {}}});
  check_refused(sctp, Variant::kFirewall, "protocol 'sctp' of rule 2: only tcp, udp, icmp or any");
  check_refused(egress({{"1.2.3.4", "TCP", {}}}), Variant::kFirewall, "'TCP'");

  check_refused(egress({good, {"1.2.3.4", "any", {{80, 80}}}}), Variant::kFirewall,
                "rule 1 restricts ports but its protocol 'any' has none: give tcp or udp");
  check_refused(egress({{"1.2.3.4", "icmp", {{80, 80}}}}), Variant::kFirewall,
                "rule 0 restricts ports but its protocol 'icmp' has none");

  const Status zero = egress({good, {"1.2.3.4", "tcp", {{0, 80}}}});
  check_refused(zero, Variant::kFirewall, "port 0");
  check_refused(zero, Variant::kFirewall, "rule 1");
  check_refused(zero, Variant::kFirewall, "outside 1-65535");
  check_refused(egress({{"1.2.3.4", "udp", {{0, 0}}}}), Variant::kFirewall, "port 0");

  const Status reversed = egress({{"1.2.3.4", "tcp", {{90, 80}}}});
  check_refused(reversed, Variant::kFirewall, "reversed range 90-80");
  check_refused(reversed, Variant::kFirewall, "rule 0");

  std::vector<EgressRule> many(net::kMaxEgressRules, good);
  CHECK(egress(many).ok());
  many.push_back(good);
  check_refused(egress(many), Variant::kFirewall, "65 egress rules: at most 64");

  EgressRule wide{"1.2.3.4", "tcp", {}};
  for (uint16_t p = 1; p <= net::kMaxPortRanges; ++p) wide.ports.push_back({p, p});
  CHECK(egress({wide}).ok());
  wide.ports.push_back({100, 200});
  check_refused(egress({good, wide}), Variant::kFirewall, "rule 1 has 33 port ranges: at most 32");
}

TEST_CASE("intersect narrows CIDRs to the smaller block and drops disjoint pairs") {
  const std::vector<EgressRule> allowed{{"10.0.0.0/8", "any", {}}};
  CHECK(net::intersect({{"10.1.0.0/16", "tcp", {}}}, allowed) ==
        std::vector<EgressRule>{{"10.1.0.0/16", "tcp", {}}});
  // A job asking for more than the operator allows gets the operator's block, not more.
  CHECK(net::intersect({{"0.0.0.0/0", "any", {}}}, allowed) ==
        std::vector<EgressRule>{{"10.0.0.0/8", "any", {}}});
  CHECK(net::intersect({{"11.0.0.0/8", "any", {}}}, allowed).empty());
  CHECK(net::intersect({{"192.168.1.1", "udp", {}}}, allowed).empty());
  CHECK(net::intersect({}, allowed).empty());
  CHECK(net::intersect({{"10.0.0.0/8", "any", {}}}, {}).empty());
  // A bare address comes back in canonical form.
  CHECK(net::intersect({{"10.0.0.5", "icmp", {}}}, allowed) ==
        std::vector<EgressRule>{{"10.0.0.5/32", "icmp", {}}});
}

TEST_CASE("intersect of protocols: any meets anything, others only themselves") {
  auto one = [](std::string job, std::string op) {
    return net::intersect({{"1.2.3.4", job, {}}}, {{"0.0.0.0/0", op, {}}});
  };
  CHECK(one("any", "tcp") == std::vector<EgressRule>{{"1.2.3.4/32", "tcp", {}}});
  CHECK(one("tcp", "any") == std::vector<EgressRule>{{"1.2.3.4/32", "tcp", {}}});
  CHECK(one("any", "any") == std::vector<EgressRule>{{"1.2.3.4/32", "any", {}}});
  CHECK(one("udp", "udp") == std::vector<EgressRule>{{"1.2.3.4/32", "udp", {}}});
  CHECK(one("icmp", "any") == std::vector<EgressRule>{{"1.2.3.4/32", "icmp", {}}});
  CHECK(one("tcp", "udp").empty());
  CHECK(one("icmp", "tcp").empty());
}

TEST_CASE("intersect of port ranges keeps the overlap, sorted and merged") {
  const std::vector<EgressRule> op{{"0.0.0.0/0", "tcp", {{80, 90}, {443, 443}, {8000, 8100}}}};
  CHECK(net::intersect({{"1.2.3.4", "tcp", {{85, 500}}}}, op) ==
        std::vector<EgressRule>{{"1.2.3.4/32", "tcp", {{85, 90}, {443, 443}}}});
  // The job's empty list means every port: it gets the operator's, merged.
  CHECK(net::intersect({{"1.2.3.4", "any", {}}}, op) ==
        std::vector<EgressRule>{{"1.2.3.4/32", "tcp", {{80, 90}, {443, 443}, {8000, 8100}}}});
  // The operator's empty list: the job's own, sorted and merged (adjacent ranges join).
  CHECK(net::intersect({{"1.2.3.4", "udp", {{53, 53}, {20, 30}, {25, 40}, {41, 41}}}},
                       {{"0.0.0.0/0", "any", {}}}) ==
        std::vector<EgressRule>{{"1.2.3.4/32", "udp", {{20, 41}, {53, 53}}}});
  CHECK(net::intersect({{"1.2.3.4", "tcp", {{1, 79}, {91, 442}}}}, op).empty());
  CHECK(net::intersect({{"1.2.3.4", "tcp", {{65535, 65535}}}},
                       {{"0.0.0.0/0", "tcp", {{65000, 65535}}}}) ==
        std::vector<EgressRule>{{"1.2.3.4/32", "tcp", {{65535, 65535}}}});
  // icmp has no ports, whatever the other side says.
  CHECK(net::intersect({{"1.2.3.4", "icmp", {}}}, {{"0.0.0.0/0", "any", {}}}) ==
        std::vector<EgressRule>{{"1.2.3.4/32", "icmp", {}}});
}

TEST_CASE("intersect never lets a job widen the operator's allowlist") {
  const std::vector<EgressRule> op{{"10.0.0.0/8", "tcp", {{443, 443}}},
                                   {"192.168.0.0/16", "udp", {{53, 53}}}};
  const std::vector<EgressRule> job{{"0.0.0.0/0", "any", {}},
                                    {"10.0.0.0/8", "tcp", {{1, 65535}}},
                                    {"192.168.1.0/24", "any", {}},
                                    {"172.16.0.0/12", "any", {}}};
  const std::vector<EgressRule> got = net::intersect(job, op);
  CHECK(got == std::vector<EgressRule>{{"10.0.0.0/8", "tcp", {{443, 443}}},
                                       {"192.168.0.0/16", "udp", {{53, 53}}},
                                       {"192.168.1.0/24", "udp", {{53, 53}}}});
  // Every result is inside some operator rule: its block, protocol and ports.
  for (const EgressRule& r : got) {
    const Cidr c = *net::parse_cidr(r.cidr);
    const bool inside = std::any_of(op.begin(), op.end(), [&](const EgressRule& o) {
      if (!net::parse_cidr(o.cidr)->contains(c) || o.protocol != r.protocol) return false;
      return std::all_of(r.ports.begin(), r.ports.end(), [&](const PortRange& p) {
        return std::any_of(o.ports.begin(), o.ports.end(), [&](const PortRange& q) {
          return q.first <= p.first && p.last <= q.last;
        });
      });
    });
    CHECK_MESSAGE(inside, r.cidr << " " << r.protocol);
  }
  // Duplicates collapse, and the order is the same on every call.
  CHECK(net::intersect({job[0], job[0]}, op) == net::intersect({job[0]}, op));
  CHECK(net::intersect(job, op) == got);
}

TEST_CASE("vm_ruleset is the exact iptables-restore text for a VM with egress") {
  const net::RulesetInput in = sample_input();
  REQUIRE_FALSE(net::ruleset_input_problem(in).has_value());
  const std::string c = " -m comment --comment \"pdk:vm-1\"";
  const std::string expected =
      "*filter\n"
      ":INPUT DROP [0:0]\n"
      ":FORWARD DROP [0:0]\n"
      ":OUTPUT DROP [0:0]\n"
      ":PADDOCK-BLOCKED - [0:0]\n"
      ":PADDOCK-EGRESS - [0:0]\n"
      "-A INPUT -i lo" +
      c +
      " -j ACCEPT\n"
      "-A OUTPUT -o lo" +
      c +
      " -j ACCEPT\n"
      "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED" +
      c +
      " -j ACCEPT\n"
      "-A FORWARD -i tap0 -o pdk-v1" +
      c +
      " -j PADDOCK-EGRESS\n"
      "-A FORWARD -i tap0" +
      c +
      " -j PADDOCK-BLOCKED\n"
      "-A PADDOCK-EGRESS -d 169.254.0.0/16" +
      c +
      " -j PADDOCK-BLOCKED\n"
      "-A PADDOCK-EGRESS -d 10.0.0.1/32" +
      c +
      " -j PADDOCK-BLOCKED\n"
      "-A PADDOCK-EGRESS -d 10.0.0.0/8 -p tcp -m multiport --dports 80,443:444" +
      c +
      " -j ACCEPT\n"
      "-A PADDOCK-EGRESS -d 1.1.1.1/32 -p udp --dport 53" +
      c +
      " -j ACCEPT\n"
      "-A PADDOCK-EGRESS -d 8.8.8.0/24 -p icmp" +
      c +
      " -j ACCEPT\n"
      "-A PADDOCK-EGRESS -d 0.0.0.0/0" +
      c +
      " -j ACCEPT\n"
      "-A PADDOCK-EGRESS" +
      c +
      " -j PADDOCK-BLOCKED\n"
      "-A PADDOCK-BLOCKED" +
      c +
      " -j DROP\n"
      "COMMIT\n"
      "*nat\n"
      ":PREROUTING ACCEPT [0:0]\n"
      ":INPUT ACCEPT [0:0]\n"
      ":OUTPUT ACCEPT [0:0]\n"
      ":POSTROUTING ACCEPT [0:0]\n"
      "-A POSTROUTING -o pdk-v1" +
      c +
      " -j MASQUERADE\n"
      "COMMIT\n";
  CHECK(net::vm_ruleset(in) == expected);
}

TEST_CASE("vm_ruleset puts every deny before any accept and counts every drop in one chain") {
  const std::vector<std::string> lines = lines_of(net::vm_ruleset(sample_input()));
  const size_t first_accept = index_of(lines, "-A PADDOCK-EGRESS -d 10.0.0.0/8");
  const size_t last_deny = index_of(lines, "-A PADDOCK-EGRESS -d 10.0.0.1/32");
  CHECK(last_deny < first_accept);
  CHECK(first_accept < lines.size());
  size_t drops = 0;
  for (const std::string& line : lines) {
    if (line.starts_with("-A ")) {
      CHECK_MESSAGE(line.find("--comment \"pdk:vm-1\"") != std::string::npos, line);
    }
    if (line.ends_with("-j DROP")) {
      ++drops;
      CHECK(line.starts_with("-A PADDOCK-BLOCKED "));
    }
    if (line.starts_with("-A PADDOCK-EGRESS")) {
      CHECK((line.ends_with("-j ACCEPT") || line.ends_with("-j PADDOCK-BLOCKED")));
    }
  }
  CHECK(drops == 1);
  // The tap's catch-all is FORWARD's last rule, after the jump to the allowlist.
  CHECK(index_of(lines, "-A FORWARD -i tap0 -o pdk-v1") <
        index_of(lines, "-A FORWARD -i tap0 -m comment --comment \"pdk:vm-1\" -j PADDOCK-BLOCKED"));
}

TEST_CASE("vm_ruleset without an uplink has no egress chain, no jump to it and no nat table") {
  net::RulesetInput in = sample_input();
  in.uplink = "";
  REQUIRE_FALSE(net::ruleset_input_problem(in).has_value());
  const std::string text = net::vm_ruleset(in);
  CHECK(text.find("PADDOCK-EGRESS") == std::string::npos);
  CHECK(text.find("*nat") == std::string::npos);
  CHECK(text.find("MASQUERADE") == std::string::npos);
  CHECK(text.find("ACCEPT\n-A FORWARD -i tap0 -m comment --comment \"pdk:vm-1\" -j "
                  "PADDOCK-BLOCKED\n") != std::string::npos);
  CHECK(text.find(" -j ACCEPT") != std::string::npos);  // lo and replies only
  for (const std::string& line : lines_of(text)) {
    if (line.ends_with("-j ACCEPT")) {
      CHECK(
          (line.find(" lo ") != std::string::npos || line.find("conntrack") != std::string::npos));
    }
  }
  CHECK(text.ends_with("COMMIT\n"));
}

TEST_CASE("vm_ruleset splits rules with more ports than a multiport match holds") {
  net::RulesetInput in = sample_input();
  EgressRule wide{"10.0.0.0/8", "tcp", {}};
  for (uint16_t p = 1000; p < 1000 + 64 * 10; p += 10) wide.ports.push_back({p, uint16_t(p + 1)});
  in.allowed = {wide};
  size_t accepts = 0;
  for (const std::string& line : lines_of(net::vm_ruleset(in))) {
    if (!line.ends_with("-j ACCEPT") || line.find("--dports") == std::string::npos) continue;
    ++accepts;
    const std::string list = line.substr(line.find("--dports ") + 9);
    size_t slots = 0;
    for (char ch : list.substr(0, list.find(' '))) slots += (ch == ',' || ch == ':') ? 1 : 0;
    CHECK(slots + 1 <= 15);  // ranges count twice: n items and r ranges use n + r slots
  }
  CHECK(accepts == 10);  // 64 ranges, 7 per match
}

TEST_CASE("ruleset_input_problem names bad names, comments and rules") {
  net::RulesetInput in = sample_input();
  in.tap = "tap 0";
  CHECK(net::ruleset_input_problem(in)->find("'tap 0'") != std::string::npos);
  in = sample_input();
  in.uplink = "veth-with-a-long-name";
  CHECK(net::ruleset_input_problem(in)->find("'veth-with-a-long-name'") != std::string::npos);
  in = sample_input();
  in.comment = "pdk:\" -j ACCEPT";
  CHECK(net::ruleset_input_problem(in)->find("pdk:\" -j ACCEPT") != std::string::npos);
  in = sample_input();
  in.comment = "";
  CHECK(net::ruleset_input_problem(in).has_value());
  in = sample_input();
  in.allowed.push_back({"1.2.3.4", "tcp", {{90, 80}}});
  CHECK(net::ruleset_input_problem(in)->find("90-80") != std::string::npos);
}

TEST_CASE("vm_ruleset output is accepted by iptables-restore in a scratch namespace") {
  if (geteuid() != 0) {
    MESSAGE("SKIPPED LOUDLY: not root, so vm_ruleset's output was NOT checked by iptables-restore");
    return;
  }
  ScratchNetns ns;
  REQUIRE_MESSAGE(ns.ok(), "ip netns add failed");
  net::RulesetInput wide = sample_input();
  EgressRule many{"10.0.0.0/8", "udp", {}};
  for (uint16_t p = 1000; p < 1000 + 32 * 10; p += 10) many.ports.push_back({p, uint16_t(p + 3)});
  wide.allowed.push_back(many);
  net::RulesetInput closed = sample_input();
  closed.uplink = "";
  for (const net::RulesetInput& in : {sample_input(), wide, closed}) {
    std::string output;
    const std::string text = net::vm_ruleset(in);
    CHECK_MESSAGE(ns.run("iptables-restore --test", text, &output) == 0, output, "\n", text);
  }
  // Applied for real (the namespace is ours), the counters read back are the firewall's.
  std::string saved;
  REQUIRE(ns.run("iptables-restore", net::vm_ruleset(wide)) == 0);
  REQUIRE(ns.run("iptables-save -c", "", &saved) == 0);
  CHECK(net::blocked_packets(saved) == uint64_t{0});
  CHECK(saved.find(":PADDOCK-BLOCKED - [0:0]") != std::string::npos);
}

net::HostRulesInput host_input() {
  net::HostRulesInput in;
  in.link = "pdkh3";
  in.vm_address = "10.200.0.14";
  in.link_prefix = "pdkh";
  in.comment = "pdk:3";
  return in;
}

TEST_CASE("host_ruleset denies the host and other VMs by interface, then forwards and NATs") {
  const net::HostRulesInput in = host_input();
  REQUIRE_FALSE(net::host_rules_problem(in).has_value());
  const std::string c = " -m comment --comment \"pdk:3\"";
  const std::string expected =
      "*nat\n"
      "-A POSTROUTING -s 10.200.0.14/32" +
      c +
      " -j MASQUERADE\n"
      "COMMIT\n"
      "*filter\n"
      "-I FORWARD -i pdkh3 -m conntrack --ctstate DNAT" +
      c +
      " -j DROP\n"
      "-I FORWARD -i pdkh3 -m addrtype --dst-type BROADCAST,MULTICAST" +
      c +
      " -j DROP\n"
      "-I FORWARD -i pdkh3 -o pdkh+" +
      c +
      " -j DROP\n"
      "-I INPUT -i pdkh3" +
      c +
      " -j DROP\n"
      "-A FORWARD -i pdkh3" +
      c +
      " -j ACCEPT\n"
      "-A FORWARD -o pdkh3 -m conntrack --ctstate RELATED,ESTABLISHED" +
      c +
      " -j ACCEPT\n"
      "COMMIT\n";
  CHECK(net::host_ruleset(in) == expected);
  // No address of the host in it: nothing to go stale when the host gains one.
  CHECK(expected.find(" -d ") == std::string::npos);
}

TEST_CASE("host_ruleset with the operator's allow_host keeps the host open, other VMs closed") {
  net::HostRulesInput in = host_input();
  in.deny_host = false;
  const std::string text = net::host_ruleset(in);
  CHECK(text.find("INPUT") == std::string::npos);
  CHECK(text.find("DNAT") == std::string::npos);
  CHECK(text.find("-I FORWARD -i pdkh3 -o pdkh+") != std::string::npos);
  CHECK(text.find("--dst-type BROADCAST,MULTICAST") != std::string::npos);
}

TEST_CASE("host_rules_removal deletes every rule host_ruleset added, by its spec") {
  const std::string removal = net::host_rules_removal(net::host_ruleset(host_input()));
  size_t deletes = 0;
  for (const std::string& line : lines_of(removal)) {
    CHECK_FALSE(line.starts_with("-A "));
    CHECK_FALSE(line.starts_with("-I "));
    if (line.starts_with("-D ")) ++deletes;
  }
  CHECK(deletes == 7);
  CHECK(removal.find("-D INPUT -i pdkh3 -m comment --comment \"pdk:3\" -j DROP\n") !=
        std::string::npos);
}

TEST_CASE("host_rules_problem names a bad link, prefix, address or comment") {
  net::HostRulesInput in = host_input();
  in.link = "pdkh3; reboot";
  CHECK(net::host_rules_problem(in)->find("'pdkh3; reboot'") != std::string::npos);
  in = host_input();
  in.link = "eth0";
  CHECK(net::host_rules_problem(in)->find("does not start with 'pdkh'") != std::string::npos);
  in = host_input();
  in.vm_address = "10.200.0.0/30";
  CHECK(net::host_rules_problem(in)->find("'10.200.0.0/30'") != std::string::npos);
  in = host_input();
  in.comment = "pdk 3";
  CHECK(net::host_rules_problem(in)->find("'pdk 3'") != std::string::npos);
}

TEST_CASE("host rules and the IPv6 policy are accepted by iptables in a scratch namespace") {
  if (geteuid() != 0) {
    MESSAGE("SKIPPED LOUDLY: not root, so host_ruleset's output was NOT checked by iptables");
    return;
  }
  ScratchNetns ns;
  REQUIRE_MESSAGE(ns.ok(), "ip netns add failed");
  std::string output;
  // Applied for real on top of a rule the host already has, and removed again by its removal.
  REQUIRE(ns.run("iptables -w -A INPUT -j ACCEPT", "") == 0);
  for (bool deny_host : {true, false}) {
    net::HostRulesInput in = host_input();
    in.deny_host = deny_host;
    const std::string text = net::host_ruleset(in);
    REQUIRE_MESSAGE(ns.run("iptables-restore --noflush -w", text, &output) == 0, output, "\n",
                    text);
    REQUIRE(ns.run("iptables -w -S INPUT", "", &output) == 0);
    // The drop is INPUT's first rule, ahead of the host's own accept.
    if (deny_host) CHECK(lines_of(output).at(1).find("-i pdkh3") != std::string::npos);
    REQUIRE(ns.run("iptables -w -S FORWARD", "", &output) == 0);
    CHECK(lines_of(output).at(1).find("-o pdkh+") != std::string::npos);
    CHECK(ns.run("iptables-restore --noflush -w", net::host_rules_removal(text), &output) == 0);
    REQUIRE(ns.run("iptables-save", "", &output) == 0);
    CHECK_MESSAGE(output.find("pdk:3") == std::string::npos, output);
  }
  if (std::system("command -v ip6tables-restore >/dev/null") == 0) {
    CHECK(ns.run("ip6tables-restore -w", net::vm_ipv6_ruleset(), &output) == 0);
    REQUIRE(ns.run("ip6tables -w -S", "", &output) == 0);
    CHECK(output.find("-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT DROP\n") != std::string::npos);
  }
}

TEST_CASE("blocked_packets reads PADDOCK-BLOCKED's counters from iptables-save -c") {
  const std::string saved =
      "# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 19:04:10 2026\n"
      "*filter\n"
      ":INPUT DROP [3:180]\n"
      ":FORWARD DROP [0:0]\n"
      ":OUTPUT DROP [0:0]\n"
      ":PADDOCK-BLOCKED - [0:0]\n"
      ":PADDOCK-EGRESS - [0:0]\n"
      "[12:720] -A INPUT -i lo -m comment --comment pdk:vm-1 -j ACCEPT\n"
      "[5210:4188001] -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment "
      "--comment pdk:vm-1 -j ACCEPT\n"
      "[40:2400] -A FORWARD -i tap0 -o pdk-v1 -m comment --comment pdk:vm-1 -j PADDOCK-EGRESS\n"
      "[7:588] -A FORWARD -i tap0 -m comment --comment pdk:vm-1 -j PADDOCK-BLOCKED\n"
      "[42:2520] -A PADDOCK-BLOCKED -m comment --comment pdk:vm-1 -j DROP\n"
      "[9:540] -A PADDOCK-EGRESS -d 169.254.0.0/16 -m comment --comment pdk:vm-1 -j "
      "PADDOCK-BLOCKED\n"
      "[5:300] -A PADDOCK-EGRESS -d 10.0.0.0/8 -p tcp -m multiport --dports 80,443:444 -m "
      "comment --comment pdk:vm-1 -j ACCEPT\n"
      "[26:1560] -A PADDOCK-EGRESS -m comment --comment pdk:vm-1 -j PADDOCK-BLOCKED\n"
      "COMMIT\n"
      "# Completed on Thu Nov 26 19:04:10 2026\n"
      "*nat\n"
      ":PREROUTING ACCEPT [0:0]\n"
      ":POSTROUTING ACCEPT [0:0]\n"
      "[99:5940] -A POSTROUTING -o pdk-v1 -m comment --comment pdk:vm-1 -j MASQUERADE\n"
      "COMMIT\n";
  CHECK(net::blocked_packets(saved) == uint64_t{42});
  // Outside *filter it is not the firewall's.
  CHECK_FALSE(net::blocked_packets("[18446744073709551615:1] -A PADDOCK-BLOCKED -j DROP\n"));
  CHECK(net::blocked_packets("*filter\n[18446744073709551615:1] -A PADDOCK-BLOCKED -j DROP\n") ==
        uint64_t{18446744073709551615u});
  // Two rules in the chain are summed; CRLF endings are fine.
  CHECK(net::blocked_packets("*filter\r\n[1:2] -A PADDOCK-BLOCKED -j DROP\r\n"
                             "[3:4] -A PADDOCK-BLOCKED -p udp -j DROP\r\nCOMMIT\r\n") ==
        uint64_t{4});
  CHECK_FALSE(net::blocked_packets("").has_value());
  CHECK_FALSE(net::blocked_packets("*filter\n:PADDOCK-BLOCKED - [5:10]\nCOMMIT\n").has_value());
  CHECK_FALSE(net::blocked_packets("*filter\n[1:2] -A PADDOCK-BLOCKEDX -j DROP\n").has_value());
  CHECK_FALSE(net::blocked_packets("*filter\n[x:2] -A PADDOCK-BLOCKED -j DROP\n").has_value());
  CHECK_FALSE(net::blocked_packets("*filter\n[99999999999999999999:2] -A PADDOCK-BLOCKED -j DROP\n")
                  .has_value());
}

TEST_CASE("AddressPool hands out the lowest free /30 with host .1 and VM .2") {
  net::AddressPool pool(*net::parse_cidr("10.200.0.0/16"));
  CHECK(pool.capacity() == 16384);
  CHECK(pool.in_use() == 0);
  const auto a = pool.acquire();
  const auto b = pool.acquire();
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->index == 0);
  CHECK(net::ip_str(a->host) == "10.200.0.1");
  CHECK(net::ip_str(a->vm) == "10.200.0.2");
  CHECK(b->index == 1);
  CHECK(net::ip_str(b->host) == "10.200.0.5");
  CHECK(net::ip_str(b->vm) == "10.200.0.6");
  pool.release(a->index);
  pool.release(a->index);  // idempotent
  CHECK(pool.in_use() == 1);
  CHECK(pool.acquire()->index == 0);
  pool.release(0);
  pool.release(1);
  CHECK(pool.in_use() == 0);
  CHECK(pool.acquire()->index == 0);
}

TEST_CASE("AddressPool of a /28 runs out after four leases and ignores unknown indexes") {
  net::AddressPool pool(*net::parse_cidr("192.168.7.16/28"));
  CHECK(pool.capacity() == 4);
  std::vector<net::Lease> leases;
  for (int i = 0; i < 4; ++i) {
    auto lease = pool.acquire();
    REQUIRE(lease.has_value());
    leases.push_back(*lease);
  }
  CHECK(net::ip_str(leases[3].host) == "192.168.7.29");
  CHECK(net::ip_str(leases[3].vm) == "192.168.7.30");
  CHECK_FALSE(pool.acquire().has_value());
  pool.release(4);
  pool.release(1000000);
  pool.release(UINT32_MAX);
  CHECK(pool.in_use() == 4);
  CHECK_FALSE(pool.acquire().has_value());
  pool.release(2);
  CHECK(pool.acquire()->index == 2);
  for (const auto& l : leases) pool.release(l.index);
  CHECK(pool.in_use() == 0);
  pool.release(7);  // never given out, even now that nothing is
  CHECK(pool.in_use() == 0);

  net::AddressPool single(*net::parse_cidr("10.0.0.4/30"));
  CHECK(single.capacity() == 1);
  CHECK(single.acquire()->index == 0);
  CHECK_FALSE(single.acquire().has_value());
}

TEST_CASE(
    "AddressPool under 4 threads of random acquire and release never hands out a lease twice") {
  net::AddressPool pool(*net::parse_cidr("10.200.0.0/24"));  // 64 blocks: threads compete for them
  std::mutex mu;
  std::set<uint32_t> outstanding;
  std::atomic<int> duplicates{0};
  std::atomic<int> bad_addresses{0};
  constexpr int kCycles = 10000;
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<net::Lease> mine;
    for (int i = 0; i < kCycles / 4; ++i) {
      if (mine.empty() || (rng() % 2 == 0 && mine.size() < 20)) {
        auto lease = pool.acquire();
        if (!lease) continue;
        if (lease->host != 0x0AC80000 + lease->index * 4 + 1 || lease->vm != lease->host + 1) {
          ++bad_addresses;
        }
        std::lock_guard lock(mu);
        if (!outstanding.insert(lease->index).second) ++duplicates;
        mine.push_back(*lease);
      } else {
        const size_t pick = rng() % mine.size();
        const uint32_t index = mine[pick].index;
        mine.erase(mine.begin() + static_cast<long>(pick));
        {
          std::lock_guard lock(mu);
          outstanding.erase(index);
        }
        pool.release(index);
      }
    }
    for (const auto& l : mine) {
      {
        std::lock_guard lock(mu);
        outstanding.erase(l.index);
      }
      pool.release(l.index);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 1234 + t);
  for (auto& t : threads) t.join();
  CHECK(duplicates == 0);
  CHECK(bad_addresses == 0);
  CHECK(outstanding.empty());
  CHECK(pool.in_use() == 0);
  CHECK(pool.acquire()->index == 0);
}
