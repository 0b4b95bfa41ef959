// Chooses a provider by backend name. A backend that is not built or not usable on this host is
// Unsupported, with a reason a person can act on.
#pragma once

#include <memory>
#include <string_view>

#include "paddock/runtime/provider.h"

namespace paddock::runtime {

// "memory" is the in-memory test double (nothing is executed in a VM). "qemu" and "firecracker"
// are the VM backends.
Result<std::unique_ptr<Provider>> make_provider(std::string_view backend);

}  // namespace paddock::runtime
