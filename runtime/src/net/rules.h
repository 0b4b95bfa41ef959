// The egress firewall and the address pool of a VM's network, as pure values (DESIGN.md §4
// "Network"): the iptables-restore text for a VM's namespace, the blocked-packet counter read back
// from iptables-save, and the /30 blocks the veth pairs take out of the pool. No system call here.
//
// Thread-safety: the functions are pure; AddressPool's methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/runtime/network.h"

namespace paddock::runtime::net {

// Chains of the VM namespace's filter table (besides the built-in ones).
inline constexpr const char* kEgressChain = "PADDOCK-EGRESS";
inline constexpr const char* kBlockedChain = "PADDOCK-BLOCKED";

struct RulesetInput {
  std::string tap = "tap0";         // the guest's TAP inside the VM namespace
  std::string uplink;               // the VM end of the veth pair; "" = no egress at all
  std::vector<EgressRule> allowed;  // already intersected with the operator's policy
  std::vector<Cidr> denied;         // always denied, checked before the allowlist
  std::string comment;              // "pdk:<vm id>", put on every rule with -m comment
};

// Why `in` cannot be turned into a ruleset (a bad interface name, a comment that is empty, longer
// than 256 characters or outside [A-Za-z0-9._:-], an allowed rule validate_egress would refuse),
// naming the value; nullopt when it can.
std::optional<std::string> ruleset_input_problem(const RulesetInput& in);

// The whole iptables-restore input for a VM's namespace (one call applies it atomically):
//   *filter: INPUT, FORWARD and OUTPUT policy DROP. INPUT and OUTPUT accept lo only, so the guest
//   can never talk to the namespace itself (the gateway 172.30.0.1). FORWARD accepts conntrack
//   ESTABLISHED,RELATED first; then, only with an uplink, `-i tap -o uplink` jumps to
//   PADDOCK-EGRESS: one drop per denied CIDR (before any accept, so the allowlist cannot reopen
//   them), one accept per allowed rule (a rule with more ports than one multiport match holds is
//   split), a final drop. FORWARD ends with `-i tap -j PADDOCK-BLOCKED`, and every drop of
//   PADDOCK-EGRESS jumps there too: PADDOCK-BLOCKED's single DROP rule counts exactly the packets
//   the firewall dropped.
//   *nat, only with an uplink: POSTROUTING -o uplink -j MASQUERADE.
// REQUIRES: ruleset_input_problem(in) is nullopt.
std::string vm_ruleset(const RulesetInput& in);

// Packets dropped by the egress firewall: the sum of the "[packets:bytes]" counters of the rules
// of PADDOCK-BLOCKED in the *filter table of `iptables-save -c` output. nullopt when there is no
// such rule or its counter does not parse.
std::optional<uint64_t> blocked_packets(std::string_view iptables_save_counters);

// One /30 of the pool for a VM's veth pair: host end = base + 1, VM end = base + 2.
struct Lease {
  uint32_t index;  // which /30 of the pool, from 0
  uint32_t host;   // addresses in host byte order
  uint32_t vm;
};

// The /30 blocks of a pool. acquire() returns the lowest free block (nullopt when the pool is
// exhausted); release() is idempotent and ignores indexes it never gave out. Memory grows with the
// blocks in use, not with the pool's size. Thread-safe.
class AddressPool {
 public:
  explicit AddressPool(Cidr pool);  // REQUIRES: pool.prefix <= 30
  AddressPool(const AddressPool&) = delete;
  AddressPool& operator=(const AddressPool&) = delete;

  std::optional<Lease> acquire();
  void release(uint32_t index);
  size_t in_use() const;
  size_t capacity() const;

 private:
  const Cidr pool_;
  const uint64_t capacity_;
  mutable std::mutex mu_;
  uint64_t high_water_ = 0;  // every index below it was given out once
  std::set<uint32_t> free_;  // released indexes below high_water_
};

// The checks validate_egress makes of one rule (CIDR, protocol, ports), without the count limits
// (an intersection may hold more rules and ranges than a job may send);
// a Firewall error names it as `where` + "rule <index>".
Status validate_egress_rule(const EgressRule& rule, size_t index, std::string_view where);

// A value quoted for an error message: '...' with non-printable bytes as \xNN and anything past 80
// characters cut to "...".
std::string quote_value(std::string_view value);

}  // namespace paddock::runtime::net
