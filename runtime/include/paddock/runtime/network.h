// A VM's network (runtime/README.md, "Networks and egress"): every VM has its own network
// namespace holding the TAP its guest uses (the guest address is the same in every VM, so clones
// of one snapshot keep working) and a default-deny egress firewall. A VM whose job allows egress
// also gets a veth pair to the host namespace, NAT on both sides, and the job's allowlist narrowed
// by the operator's policy. These are the settings, the rules and the pure functions over them;
// the kernel work is in src/net/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/runtime/error.h"
#include "paddock/schemas/job.h"

namespace paddock::runtime::net {

// The job model's rules (paddock/schemas/job.h): an IPv4 CIDR ("a.b.c.d/n"; a bare address means
// /32), a protocol ("tcp", "udp", "icmp" or "any"; "tcp" when not given, as on the wire) and, for
// tcp and udp only, port ranges (inclusive; first <= last; empty: every port).
using schemas::EgressRule;
using schemas::PortRange;

// What the operator of a worker permits. A job's rules are intersected with `allow`: a job can
// only narrow it.
struct OperatorPolicy {
  std::vector<EgressRule> allow = {EgressRule{"0.0.0.0/0", "any", {}}};
  std::vector<std::string> deny;  // CIDRs always denied (the broker's addresses, say)
  bool allow_link_local =
      false;                // 169.254.0.0/16, which holds the metadata address 169.254.169.254
  bool allow_host = false;  // the host namespace's own addresses
};

struct NetworkSettings {
  // Each VM with egress takes one /30 of this pool for its veth pair (host end .1, VM end .2).
  std::string pool = "10.200.0.0/16";
  // The namespace that plays "the host" (the veth host ends, forwarding, NAT); "" is the namespace
  // the provider runs in. Tests give one they created.
  std::string host_netns;
  // Names of Paddock's namespaces, links and iptables comments start with it: 1-6 of [a-z0-9].
  // The startup sweep removes everything with it, so give each worker on a host its own.
  std::string prefix = "pdk";
  OperatorPolicy policy;
};

// The guest side, the same in every VM.
inline constexpr const char* kGuestAddress = "172.30.0.2";
inline constexpr const char* kGatewayAddress = "172.30.0.1";  // the TAP's end in the namespace
inline constexpr int kGuestPrefix = 30;
inline constexpr const char* kGuestMac = "02:50:44:4b:00:02";

struct Cidr {
  uint32_t address = 0;  // host byte order, already masked to the prefix
  uint8_t prefix = 0;
  bool operator==(const Cidr&) const = default;
  std::string str() const;  // "a.b.c.d/n"
  bool contains(const Cidr& other) const;
};

// "a.b.c.d/n" or "a.b.c.d" (/32). Bits set past the prefix are refused ("10.0.0.1/8"), so that a
// rule means what it says. The reason names the text.
std::optional<Cidr> parse_cidr(std::string_view text, std::string* reason = nullptr);
std::string ip_str(uint32_t address);

// Interface names: 1-15 of [A-Za-z0-9._-]. The reason names the value.
std::optional<std::string> interface_name_problem(std::string_view name);

// A job's egress limits, as a JobRequest's (schemas/PROTOCOL.md).
inline constexpr size_t kMaxEgressRules = 64;
inline constexpr size_t kMaxPortRanges = 32;  // per rule

// NetworkConfig errors for bad settings (pool not a CIDR or smaller than /30, bad prefix, bad
// deny CIDR); Firewall errors for bad operator allow rules. Nothing is touched.
Status validate_settings(const NetworkSettings& settings);
// NetworkConfig for an empty or unusable vm id; Firewall for a bad rule (CIDR, protocol other
// than tcp/udp/icmp/any, ports with a protocol that has none, ports outside 1-65535, first >
// last, too many rules or ranges). Rules are named by their index in the list, from 0. Nothing
// is touched.
Status validate_egress(std::string_view vm_id, const std::vector<EgressRule>& rules);

// The job's rules narrowed by the operator's: every pairwise intersection that is not empty, in
// the order (job rule, allowed rule), without duplicates; CIDRs in canonical "a.b.c.d/n" form,
// port ranges sorted and merged. REQUIRES: both lists pass validation (invalid rules are skipped).
std::vector<EgressRule> intersect(const std::vector<EgressRule>& job,
                                  const std::vector<EgressRule>& allowed);

}  // namespace paddock::runtime::net
