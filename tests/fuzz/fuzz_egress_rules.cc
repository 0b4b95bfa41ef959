// libFuzzer target: a job's egress rules (submitted by a client) as the worker's runtime turns
// them into its VM's firewall (runtime/include/paddock/runtime/network.h, runtime/src/net/rules.h):
// validate_egress, intersect with an operator's policy, ruleset_input_problem, vm_ruleset (the
// text fed to iptables-restore). The input is lines "CIDR PROTOCOL [FIRST-LAST ...]", so any
// bytes reach the CIDR and protocol parsers. Nothing may crash or throw; a refusal must name the
// rule; what is accepted must narrow to rules that validate again; and the iptables-restore text
// may only hold lines Paddock writes, of safe characters (no job text can inject a rule).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "net/rules.h"
#include "paddock/runtime/network.h"

namespace net = paddock::runtime::net;

namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

uint16_t number(std::string_view s) {
  uint32_t v = 0;
  for (char c : s.substr(0, 6))
    v = v * 10 + static_cast<uint32_t>(static_cast<unsigned char>(c) % 10);
  return static_cast<uint16_t>(v);
}

std::vector<net::EgressRule> rules_from(std::string_view input) {
  std::vector<net::EgressRule> rules;
  for (std::string_view line : split(input, '\n')) {
    if (rules.size() > net::kMaxEgressRules + 2) break;
    const auto words = split(line, ' ');
    net::EgressRule r;
    r.cidr = std::string(words[0]);
    r.protocol = words.size() > 1 ? std::string(words[1]) : "any";
    for (size_t i = 2; i < words.size() && i < net::kMaxPortRanges + 4; ++i) {
      const auto dash = words[i].find('-');
      r.ports.push_back(
          {number(words[i].substr(0, dash)),
           number(dash == std::string_view::npos ? words[i] : words[i].substr(dash + 1))});
    }
    rules.push_back(std::move(r));
  }
  return rules;
}

bool safe_line(std::string_view line) {
  static constexpr std::string_view kStarts[] = {"*filter", "*nat", ":", "-A ", "COMMIT"};
  bool known = false;
  for (auto s : kStarts) known = known || line.substr(0, s.size()) == s;
  if (!known) return false;
  for (char c : line) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view(" ./:,_-*![]\"").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto rules = rules_from(input);
  for (const auto& r : rules) {
    std::string reason;
    (void)net::parse_cidr(r.cidr, &reason);
  }
  if (auto st = net::validate_egress("vm-1", rules); !st) {
    if (st.error().message().empty()) __builtin_trap();
    return 0;
  }
  const std::vector<net::EgressRule> policy = {{"0.0.0.0/0", "any", {}},
                                               {"10.0.0.0/8", "tcp", {{1, 1024}, {8080, 8080}}},
                                               {"192.168.1.0/24", "udp", {}}};
  const auto narrowed = net::intersect(rules, policy);
  for (const auto& r : narrowed) {
    if (!net::validate_egress("vm-1", {r})) __builtin_trap();
  }
  net::RulesetInput in;
  in.uplink = "pdk-v1";
  in.allowed = narrowed;
  in.denied = {*net::parse_cidr("169.254.0.0/16"), *net::parse_cidr("10.0.0.1")};
  in.comment = "pdk:vm-1";
  if (net::ruleset_input_problem(in)) __builtin_trap();
  const std::string ruleset = net::vm_ruleset(in);
  for (std::string_view line : split(ruleset, '\n')) {
    if (!line.empty() && !safe_line(line)) __builtin_trap();
  }
  return 0;
}
