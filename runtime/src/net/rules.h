// The egress firewall and the address pool of a VM's network, as pure values (runtime/README.md,
// "Networks and egress"): the iptables-restore text for a VM's namespace, the blocked-packet
// counter read back from iptables-save, and the /30 blocks the veth pairs take out of the pool. No
// system call here.
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

// The rules a VM with egress adds in the host namespace (one `iptables-restore --noflush`; its
// teardown deletes the same lines, host_rules_removal; the startup sweep finds them by comment).
struct HostRulesInput {
  std::string link;         // the veth's host end, "<prefix>h<n>"
  std::string vm_address;   // the VM end's address, masqueraded behind the host's on the way out
  std::string link_prefix;  // what every VM's host end starts with, "<prefix>h"
  bool deny_host = true;    // false only with the operator's allow_host
  std::string comment;      // "<prefix>:<n>", put on every rule with -m comment
};

// Why `in` cannot be turned into host rules (a bad link name or prefix, an address that is not a
// bare IPv4 address, a comment as ruleset_input_problem refuses it); nullopt when it can.
std::optional<std::string> host_rules_problem(const HostRulesInput& in);

// The host namespace's rules for one VM. The host is denied by interface and direction, not by a
// list of its addresses, so no address added later, no broadcast and no multicast escapes it:
//   *nat: POSTROUTING -s <vm>/32 MASQUERADE.
//   *filter, inserted at the top (-I, so the host's own earlier rules cannot accept first):
//     INPUT  -i link DROP                      (deny_host) whatever the VM sends to the host
//     itself:
//                                              any local address, present or added later, its
//                                              subnets' broadcasts, multicast it receives;
//     FORWARD -i link -o <link_prefix>+ DROP   never to another VM's link (sibling VMs);
//     FORWARD -i link addrtype BROADCAST,MULTICAST DROP   no broadcast or multicast forwarded on
//                                              (a host with bc_forwarding or a multicast router);
//     FORWARD -i link ctstate DNAT DROP        (deny_host) nothing the host's own DNAT rules send
//                                              on (its published container ports, cluster service
//                                              addresses): those are the host's services too.
//   *filter, appended: FORWARD -i link ACCEPT, and -o link RELATED,ESTABLISHED ACCEPT (replies).
// Replies to the VM come back through FORWARD (conntrack undoes the NAT), never through INPUT, so
// the INPUT drop costs allowed egress nothing. REQUIRES: host_rules_problem(in) is nullopt.
std::string host_ruleset(const HostRulesInput& in);

// The iptables-restore --noflush input that deletes what `rules` (host_ruleset's text) added:
// every "-A CHAIN spec" and "-I CHAIN spec" line becomes "-D CHAIN spec".
std::string host_rules_removal(const std::string& rules);

// The iptables-restore input that closes IPv6 in a VM's namespace: policy DROP on INPUT, FORWARD
// and OUTPUT of ip6tables' filter table, no rule. (IPv6 is also switched off there by sysctl;
// this holds if something switches it back on.)
std::string vm_ipv6_ruleset();

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
