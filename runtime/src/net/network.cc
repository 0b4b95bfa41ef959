// The pure half of network.h: addresses, validation and the intersection of allowlists. No system
// call here; the kernel work is elsewhere in src/net/.
#include "paddock/runtime/network.h"

#include <algorithm>
#include <string>
#include <utility>

#include "net/rules.h"
#include "paddock/schemas/cidr.h"

namespace paddock::runtime::net {
namespace {

uint32_t mask_of(uint8_t prefix) { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool is_protocol(std::string_view p) {
  return p == "tcp" || p == "udp" || p == "icmp" || p == "any";
}

Status validate_rules(const std::vector<EgressRule>& rules, std::string_view where) {
  if (rules.size() > kMaxEgressRules) {
    return Error::firewall(std::string(where) + std::to_string(rules.size()) +
                           " egress rules: at most " + std::to_string(kMaxEgressRules));
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    if (Status s = validate_egress_rule(rules[i], i, where); !s) return s;
    if (rules[i].ports.size() > kMaxPortRanges) {
      return Error::firewall(std::string(where) + "rule " + std::to_string(i) + " has " +
                             std::to_string(rules[i].ports.size()) + " port ranges: at most " +
                             std::to_string(kMaxPortRanges));
    }
  }
  return {};
}

// Sorted, with overlapping and adjacent ranges merged.
std::vector<PortRange> normalized(std::vector<PortRange> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const PortRange& a, const PortRange& b) {
    return a.first != b.first ? a.first < b.first : a.last < b.last;
  });
  std::vector<PortRange> out;
  for (const PortRange& r : ranges) {
    if (!out.empty() && uint32_t{r.first} <= uint32_t{out.back().last} + 1) {
      out.back().last = std::max(out.back().last, r.last);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

// Empty means every port. nullopt when the two have no port in common.
std::optional<std::vector<PortRange>> intersect_ports(const std::vector<PortRange>& a,
                                                      const std::vector<PortRange>& b) {
  if (a.empty()) return normalized(b);
  if (b.empty()) return normalized(a);
  const std::vector<PortRange> x = normalized(a);
  const std::vector<PortRange> y = normalized(b);
  std::vector<PortRange> out;
  size_t i = 0;
  size_t j = 0;
  while (i < x.size() && j < y.size()) {
    const uint16_t first = std::max(x[i].first, y[j].first);
    const uint16_t last = std::min(x[i].last, y[j].last);
    if (first <= last) out.push_back({first, last});
    if (x[i].last < y[j].last) {
      ++i;
    } else {
      ++j;
    }
  }
  if (out.empty()) return std::nullopt;
  return normalized(std::move(out));
}

std::optional<std::string> intersect_protocol(const std::string& a, const std::string& b) {
  if (a == "any") return b;
  if (b == "any" || a == b) return a;
  return std::nullopt;
}

}  // namespace

std::string quote_value(std::string_view value) {
  constexpr size_t kShown = 80;
  std::string out = "'";
  for (size_t i = 0; i < value.size() && i < kShown; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (value.size() > kShown) out += "...";
  return out + "'";
}

Status validate_egress_rule(const EgressRule& rule, size_t index, std::string_view where) {
  const std::string name = std::string(where) + "rule " + std::to_string(index);
  std::string reason;
  if (!parse_cidr(rule.cidr, &reason)) return Error::firewall(name + ": " + reason);
  if (!is_protocol(rule.protocol)) {
    return Error::firewall("protocol " + quote_value(rule.protocol) + " of " + name +
                           ": only tcp, udp, icmp or any");
  }
  if (rule.ports.empty()) return {};
  if (rule.protocol == "icmp" || rule.protocol == "any") {
    return Error::firewall(name + " restricts ports but its protocol " +
                           quote_value(rule.protocol) + " has none: give tcp or udp");
  }
  for (const PortRange& r : rule.ports) {
    if (r.first == 0 || r.last == 0) {
      return Error::firewall("port 0 in range " + std::to_string(r.first) + "-" +
                             std::to_string(r.last) + " of " + name + " is outside 1-65535");
    }
    if (r.first > r.last) {
      return Error::firewall(name + ": reversed range " + std::to_string(r.first) + "-" +
                             std::to_string(r.last));
    }
  }
  return {};
}

std::string ip_str(uint32_t address) {
  return std::to_string(address >> 24) + "." + std::to_string(address >> 16 & 255) + "." +
         std::to_string(address >> 8 & 255) + "." + std::to_string(address & 255);
}

std::string Cidr::str() const { return ip_str(address) + "/" + std::to_string(prefix); }

bool Cidr::contains(const Cidr& other) const {
  return prefix <= other.prefix && (other.address & mask_of(prefix)) == address;
}

std::optional<Cidr> parse_cidr(std::string_view text, std::string* reason) {
  // The codec's reading (schemas/cidr.h), so that SUBMIT refuses exactly what this refuses.
  const schemas::CidrParse parsed = schemas::parse_ipv4_cidr(text);
  auto fail = [&](std::string why) -> std::optional<Cidr> {
    if (reason) *reason = quote_value(text) + why;
    return std::nullopt;
  };
  switch (parsed.problem) {
    case schemas::CidrProblem::kNone:
      return Cidr{parsed.cidr.address, parsed.cidr.prefix};
    case schemas::CidrProblem::kShape:
      return fail(" is not <ipv4>/<prefix>");
    case schemas::CidrProblem::kAddress:
      return fail(" is not an IPv4 address");
    case schemas::CidrProblem::kPrefix:
      return fail(": prefix over 32");
    case schemas::CidrProblem::kHostBits: {
      const Cidr masked{parsed.cidr.address, parsed.cidr.prefix};
      return fail(" has bits set past its /" + std::to_string(masked.prefix) +
                  " prefix (did you mean " + masked.str() + "?)");
    }
  }
  return fail(" is not <ipv4>/<prefix>");
}

std::optional<std::string> interface_name_problem(std::string_view name) {
  if (name.empty()) return "empty interface name";
  if (name.size() > 15) {
    return "interface name " + quote_value(name) + " is longer than 15 characters";
  }
  if (!std::all_of(name.begin(), name.end(), is_name_char)) {
    return "interface name " + quote_value(name) + " has characters outside [A-Za-z0-9._-]";
  }
  return std::nullopt;
}

Status validate_settings(const NetworkSettings& settings) {
  std::string reason;
  const std::optional<Cidr> pool = parse_cidr(settings.pool, &reason);
  if (!pool) return Error::network_config("pool " + reason);
  if (pool->prefix > 30) {
    return Error::network_config("pool " + quote_value(settings.pool) +
                                 " is smaller than a /30 (each VM takes one /30)");
  }
  const std::string& prefix = settings.prefix;
  if (prefix.empty() || prefix.size() > 6 || !std::all_of(prefix.begin(), prefix.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      })) {
    return Error::network_config("prefix " + quote_value(prefix) + " is not 1-6 of [a-z0-9]");
  }
  const std::string& ns = settings.host_netns;
  if (ns.size() > 64 || ns.find('/') != std::string::npos || ns.find('\0') != std::string::npos ||
      ns == "." || ns == "..") {
    return Error::network_config("host_netns " + quote_value(ns) +
                                 " is not a namespace name (at most 64 characters, no '/')");
  }
  for (size_t i = 0; i < settings.policy.deny.size(); ++i) {
    if (!parse_cidr(settings.policy.deny[i], &reason)) {
      return Error::network_config("policy.deny entry " + std::to_string(i) + ": " + reason);
    }
  }
  return validate_rules(settings.policy.allow, "policy.allow ");
}

Status validate_egress(std::string_view vm_id, const std::vector<EgressRule>& rules) {
  if (vm_id.empty()) return Error::network_config("empty vm id");
  if (vm_id.size() > 64) {
    return Error::network_config("vm id " + quote_value(vm_id) + " is longer than 64 characters");
  }
  if (!std::all_of(vm_id.begin(), vm_id.end(), is_name_char)) {
    return Error::network_config("vm id " + quote_value(vm_id) +
                                 " has characters outside [A-Za-z0-9._-]");
  }
  return validate_rules(rules, "");
}

std::vector<EgressRule> intersect(const std::vector<EgressRule>& job,
                                  const std::vector<EgressRule>& allowed) {
  std::vector<EgressRule> out;
  for (const EgressRule& j : job) {
    const std::optional<Cidr> jc = parse_cidr(j.cidr);
    if (!jc || !is_protocol(j.protocol)) continue;
    for (const EgressRule& a : allowed) {
      const std::optional<Cidr> ac = parse_cidr(a.cidr);
      if (!ac || !is_protocol(a.protocol)) continue;
      Cidr cidr;
      if (ac->contains(*jc)) {
        cidr = *jc;
      } else if (jc->contains(*ac)) {
        cidr = *ac;
      } else {
        continue;
      }
      std::optional<std::string> protocol = intersect_protocol(j.protocol, a.protocol);
      if (!protocol) continue;
      EgressRule rule{cidr.str(), *protocol, {}};
      if (*protocol == "tcp" || *protocol == "udp") {
        // A job's "any" carries no ports: it takes the operator's (and the reverse).
        std::optional<std::vector<PortRange>> ports = intersect_ports(j.ports, a.ports);
        if (!ports) continue;
        rule.ports = std::move(*ports);
      }
      if (std::find(out.begin(), out.end(), rule) == out.end()) out.push_back(std::move(rule));
    }
  }
  return out;
}

}  // namespace paddock::runtime::net
