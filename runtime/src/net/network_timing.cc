#include "paddock/runtime/network_timing.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "net/vm_network.h"

namespace paddock::runtime::net {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

Result<NetworkTimings> time_vm_networks(NetworkSettings settings, int runs,
                                        const std::vector<EgressRule>& egress) {
  auto m = NetworkManager::open(std::move(settings));
  if (!m) return m.error();
  auto& manager = *m.value();
  NetworkTimings t;
  const uint64_t before = manager.commands_run();
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    auto vm = manager.create("timing-" + std::to_string(i));
    if (!vm) return vm.error();
    t.create_ms.push_back(ms_since(t0));
    t0 = Clock::now();
    if (auto st = vm.value()->allow_egress(egress); !st.ok()) return st.error();
    t.egress_ms.push_back(ms_since(t0));
    t0 = Clock::now();
    if (auto usage = vm.value()->usage(); !usage) return usage.error();
    t.usage_ms.push_back(ms_since(t0));
    t0 = Clock::now();
    if (auto st = vm.value()->teardown(); !st.ok()) return st.error();
    t.teardown_ms.push_back(ms_since(t0));
  }
  t.commands_per_vm = (manager.commands_run() - before) / static_cast<uint64_t>(std::max(runs, 1));
  return t;
}

}  // namespace paddock::runtime::net
