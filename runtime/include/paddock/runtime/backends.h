// Chooses a provider by backend name. A backend that is not built or not usable on this host is
// Unsupported, with a reason a person can act on.
#pragma once

#include <memory>
#include <string_view>

#include "paddock/runtime/provider.h"
#include "paddock/runtime/qemu_provider.h"

namespace paddock::runtime {

struct BackendConfig {
  QemuConfig qemu;
};

// "memory" is the in-memory test double (nothing is executed in a VM); "qemu" runs QEMU microvm
// VMs; "firecracker" is not built yet.
Result<std::unique_ptr<Provider>> make_provider(std::string_view backend,
                                                const BackendConfig& config = {});

}  // namespace paddock::runtime
