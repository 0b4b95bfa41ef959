// The egress firewall's iptables text, its blocked-packet counter, and the veth address pool.
#include "net/rules.h"

#include <algorithm>
#include <charconv>
#include <string>
#include <utility>

namespace paddock::runtime::net {
namespace {

// A multiport match holds at most 15 ports; a range takes two of them.
constexpr size_t kMultiportSlots = 15;

// " -m comment --comment "pdk:vm-1"" (the comment holds no quote: ruleset_input_problem).
std::string comment_match(const std::string& comment) {
  return " -m comment --comment \"" + comment + "\"";
}

std::string port_text(const PortRange& r) {
  return r.first == r.last ? std::to_string(r.first)
                           : std::to_string(r.first) + ":" + std::to_string(r.last);
}

// The port matches one allowed rule needs: one empty match for every port, one --dport for a
// single range, else multiport matches of at most 15 slots each.
std::vector<std::string> port_matches(const std::vector<PortRange>& ports) {
  if (ports.empty()) return {""};
  if (ports.size() == 1) return {" --dport " + port_text(ports[0])};
  std::vector<std::string> out;
  std::string list;
  size_t slots = 0;
  for (const PortRange& r : ports) {
    const size_t need = r.first == r.last ? 1 : 2;
    if (slots + need > kMultiportSlots) {
      out.push_back(" -m multiport --dports " + list);
      list.clear();
      slots = 0;
    }
    // Appended in two steps: GCC 12 at -O2 warns falsely (-Wrestrict) on `"," + string`.
    if (!list.empty()) list += ',';
    list += port_text(r);
    slots += need;
  }
  out.push_back(" -m multiport --dports " + list);
  return out;
}

bool is_comment_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == ':';
}

// "[123:4567]" at the start of `line`: the packet count; nullopt if it does not parse.
std::optional<uint64_t> packet_counter(std::string_view line) {
  if (line.empty() || line.front() != '[') return std::nullopt;
  const char* begin = line.data() + 1;
  const char* end = line.data() + line.size();
  uint64_t packets = 0;
  const auto [p, ec] = std::from_chars(begin, end, packets);
  if (ec != std::errc() || p == begin || p == end || *p != ':') return std::nullopt;
  uint64_t bytes = 0;
  const auto [q, ec2] = std::from_chars(p + 1, end, bytes);
  if (ec2 != std::errc() || q == p + 1 || q == end || *q != ']') return std::nullopt;
  return packets;
}

}  // namespace

std::optional<std::string> ruleset_input_problem(const RulesetInput& in) {
  if (auto problem = interface_name_problem(in.tap)) return "tap: " + *problem;
  if (!in.uplink.empty()) {
    if (auto problem = interface_name_problem(in.uplink)) return "uplink: " + *problem;
    if (in.uplink == in.tap) return "uplink " + quote_value(in.uplink) + " is the tap itself";
  }
  if (in.comment.empty() || in.comment.size() > 256 ||
      !std::all_of(in.comment.begin(), in.comment.end(), is_comment_char)) {
    return "rule comment " + quote_value(in.comment) + " is not 1-256 of [A-Za-z0-9._:-]";
  }
  for (size_t i = 0; i < in.allowed.size(); ++i) {
    if (Status s = validate_egress_rule(in.allowed[i], i, "allowed "); !s)
      return s.error().detail();
  }
  return std::nullopt;
}

std::string vm_ruleset(const RulesetInput& in) {
  const std::string c = comment_match(in.comment);
  const bool egress = !in.uplink.empty();
  std::string out = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n";
  out += std::string(":") + kBlockedChain + " - [0:0]\n";
  if (egress) out += std::string(":") + kEgressChain + " - [0:0]\n";
  out += "-A INPUT -i lo" + c + " -j ACCEPT\n";
  out += "-A OUTPUT -o lo" + c + " -j ACCEPT\n";
  // Replies first: the only packets that may enter the guest are those of flows it opened.
  out += "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED" + c + " -j ACCEPT\n";
  if (egress)
    out += "-A FORWARD -i " + in.tap + " -o " + in.uplink + c + " -j " + kEgressChain + "\n";
  out += "-A FORWARD -i " + in.tap + c + " -j " + kBlockedChain + "\n";
  if (egress) {
    // Denials before accepts: an allowed 0.0.0.0/0 must not reopen the metadata address.
    for (const Cidr& d : in.denied) {
      out +=
          std::string("-A ") + kEgressChain + " -d " + d.str() + c + " -j " + kBlockedChain + "\n";
    }
    for (const EgressRule& rule : in.allowed) {
      const std::optional<Cidr> cidr = parse_cidr(rule.cidr);
      if (!cidr) continue;  // REQUIRES excludes it; never widen on a bad rule
      std::string match = std::string("-A ") + kEgressChain + " -d " + cidr->str();
      if (rule.protocol == "any") {
        out += match + c + " -j ACCEPT\n";
        continue;
      }
      match += " -p " + rule.protocol;
      if (rule.protocol == "icmp") {
        out += match + c + " -j ACCEPT\n";
        continue;
      }
      for (const std::string& ports : port_matches(rule.ports)) {
        out += match + ports + c + " -j ACCEPT\n";
      }
    }
    out += std::string("-A ") + kEgressChain + c + " -j " + kBlockedChain + "\n";
  }
  out += std::string("-A ") + kBlockedChain + c + " -j DROP\n";
  out += "COMMIT\n";
  if (egress) {
    out +=
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n";
    out += "-A POSTROUTING -o " + in.uplink + c + " -j MASQUERADE\n";
    out += "COMMIT\n";
  }
  return out;
}

std::optional<std::string> host_rules_problem(const HostRulesInput& in) {
  if (auto problem = interface_name_problem(in.link)) return "link: " + *problem;
  if (auto problem = interface_name_problem(in.link_prefix)) return "link prefix: " + *problem;
  if (in.link.rfind(in.link_prefix, 0) != 0) {
    return "link " + quote_value(in.link) + " does not start with " + quote_value(in.link_prefix);
  }
  const std::optional<Cidr> vm = parse_cidr(in.vm_address);
  if (!vm || vm->prefix != 32 || in.vm_address.find('/') != std::string::npos) {
    return "vm address " + quote_value(in.vm_address) + " is not an IPv4 address";
  }
  RulesetInput comment_only;
  comment_only.comment = in.comment;
  return ruleset_input_problem(comment_only);
}

std::string host_ruleset(const HostRulesInput& in) {
  const std::string c = comment_match(in.comment);
  const std::string from = " -i " + in.link;
  std::string out = "*nat\n-A POSTROUTING -s " + in.vm_address + "/32" + c + " -j MASQUERADE\n";
  out += "COMMIT\n*filter\n";
  // Each -I goes to the top, so the last line inserted is the chain's first rule; they all drop.
  if (in.deny_host) {
    out += "-I FORWARD" + from + " -m conntrack --ctstate DNAT" + c + " -j DROP\n";
  }
  out += "-I FORWARD" + from + " -m addrtype --dst-type BROADCAST,MULTICAST" + c + " -j DROP\n";
  out += "-I FORWARD" + from + " -o " + in.link_prefix + "+" + c + " -j DROP\n";
  if (in.deny_host) out += "-I INPUT" + from + c + " -j DROP\n";
  out += "-A FORWARD" + from + c + " -j ACCEPT\n";
  out += "-A FORWARD -o " + in.link + " -m conntrack --ctstate RELATED,ESTABLISHED" + c +
         " -j ACCEPT\n";
  out += "COMMIT\n";
  return out;
}

std::string host_rules_removal(const std::string& rules) {
  std::string out;
  size_t start = 0;
  while (start < rules.size()) {
    size_t end = rules.find('\n', start);
    if (end == std::string::npos) end = rules.size();
    const std::string_view line(rules.data() + start, end - start);
    if (line.starts_with("-A ") || line.starts_with("-I ")) {
      out += "-D ";
      out += line.substr(3);
    } else {
      out += line;
    }
    out += '\n';
    start = end + 1;
  }
  return out;
}

std::string vm_ipv6_ruleset() {
  return "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\nCOMMIT\n";
}

std::optional<uint64_t> blocked_packets(std::string_view text) {
  const std::string rule_prefix = std::string("-A ") + kBlockedChain + " ";
  bool in_filter = false;
  bool found = false;
  uint64_t total = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.starts_with('*')) {
      in_filter = line == "*filter";
      continue;
    }
    if (line == "COMMIT") {
      in_filter = false;
      continue;
    }
    if (!in_filter || !line.starts_with('[')) continue;
    const size_t close = line.find("] ");
    if (close == std::string_view::npos) continue;
    if (!line.substr(close + 2).starts_with(rule_prefix)) continue;
    const std::optional<uint64_t> packets = packet_counter(line);
    if (!packets) return std::nullopt;
    total += *packets;
    found = true;
  }
  if (!found) return std::nullopt;
  return total;
}

AddressPool::AddressPool(Cidr pool)
    : pool_(pool), capacity_(pool.prefix <= 30 ? uint64_t{1} << (30 - pool.prefix) : 0) {}

std::optional<Lease> AddressPool::acquire() {
  std::lock_guard lock(mu_);
  uint32_t index = 0;
  if (!free_.empty()) {
    index = *free_.begin();
    free_.erase(free_.begin());
  } else if (high_water_ < capacity_) {
    index = static_cast<uint32_t>(high_water_++);
  } else {
    return std::nullopt;
  }
  const uint32_t base = pool_.address + index * 4;
  return Lease{index, base + 1, base + 2};
}

void AddressPool::release(uint32_t index) {
  std::lock_guard lock(mu_);
  if (index >= high_water_ || !free_.insert(index).second) return;
  // Keep free_ to the holes below the highest block in use.
  while (high_water_ > 0 && free_.count(static_cast<uint32_t>(high_water_ - 1)) > 0) {
    free_.erase(static_cast<uint32_t>(high_water_ - 1));
    --high_water_;
  }
}

size_t AddressPool::in_use() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(high_water_ - free_.size());
}

size_t AddressPool::capacity() const { return static_cast<size_t>(capacity_); }

}  // namespace paddock::runtime::net
