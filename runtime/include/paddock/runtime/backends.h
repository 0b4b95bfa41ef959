// Chooses a provider by backend name. A backend that is not built or not usable on this host is
// Unsupported, with a reason a person can act on.
#pragma once

#include <memory>
#include <string_view>

#include "paddock/runtime/firecracker_provider.h"
#include "paddock/runtime/provider.h"
#include "paddock/runtime/qemu_provider.h"

namespace paddock::runtime {

struct BackendConfig {
  QemuConfig qemu;
  FirecrackerConfig firecracker;
};

// "memory" is the in-memory test double (nothing is executed in a VM); "qemu" runs QEMU microvm
// VMs; "firecracker" runs Firecracker microVMs (Unsupported, saying what is missing, on a host
// without the firecracker binary or /dev/kvm).
Result<std::unique_ptr<Provider>> make_provider(std::string_view backend,
                                                const BackendConfig& config = {});

}  // namespace paddock::runtime
