#include "paddock/runtime/backends.h"

#include "paddock/runtime/memory_provider.h"

namespace paddock::runtime {

Result<std::unique_ptr<Provider>> make_provider(std::string_view backend) {
  if (backend == "memory") return std::unique_ptr<Provider>(std::make_unique<MemoryProvider>());
  if (backend == "qemu" || backend == "firecracker") {
    return Error::unsupported("the " + std::string(backend) +
                              " backend is not part of this build yet; use --backend memory "
                              "(the in-memory test double, which executes nothing)");
  }
  return Error::unsupported("unknown backend '" + std::string(backend) +
                            "'; choose one of: memory, qemu, firecracker");
}

}  // namespace paddock::runtime
