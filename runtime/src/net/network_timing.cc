#include "paddock/runtime/network_timing.h"

#include <sys/resource.h>

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

// CPU seconds (user + system) used so far by this process and by its waited-for children.
double cpu_seconds() {
  double total = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage u{};
    ::getrusage(who, &u);
    total += static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
             static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  return total;
}

}  // namespace

Result<NetworkTimings> time_vm_networks(NetworkSettings settings, int runs,
                                        const std::vector<EgressRule>& egress) {
  auto m = NetworkManager::open(std::move(settings));
  if (!m) return m.error();
  auto& manager = *m.value();
  NetworkTimings t;
  const uint64_t before = manager.commands_run();
  const double cpu_before = cpu_seconds();
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
  t.cpu_ms_per_vm = (cpu_seconds() - cpu_before) * 1000.0 / std::max(runs, 1);
  t.commands_per_vm = (manager.commands_run() - before) / static_cast<uint64_t>(std::max(runs, 1));
  return t;
}

}  // namespace paddock::runtime::net
