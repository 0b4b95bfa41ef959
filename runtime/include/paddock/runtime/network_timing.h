// What one VM's network costs the host, timed without a VM (for benchmarks): a network manager
// over `settings` creates, opens egress for, reads the usage of and tears down `runs` VM
// networks, one after another, and says how long each phase took and how many commands
// (ip, iptables-restore, ...) one VM's network ran. The same code paths as a real job's.
#pragma once

#include <cstdint>
#include <vector>

#include "paddock/runtime/error.h"
#include "paddock/runtime/network.h"

namespace paddock::runtime::net {

struct NetworkTimings {
  std::vector<double> create_ms;    // namespace, TAP, addresses, default-deny firewall
  std::vector<double> egress_ms;    // veth pair, routes, host NAT and forward rules, VM firewall
  std::vector<double> usage_ms;     // counters
  std::vector<double> teardown_ms;  // host rules, namespace (veth and TAP with it), lease
  uint64_t commands_per_vm = 0;
  // CPU time (user + system) of this process's threads and of the commands it waited for, per VM,
  // over all four phases.
  double cpu_ms_per_vm = 0;
};

// Errors: those of NetworkManager::open, create, allow_egress and teardown, unchanged; what was
// made before an error is torn down.
Result<NetworkTimings> time_vm_networks(NetworkSettings settings, int runs,
                                        const std::vector<EgressRule>& egress);

}  // namespace paddock::runtime::net
