#include "paddock/runtime/backends.h"

#include "paddock/runtime/memory_provider.h"

namespace paddock::runtime {

Result<std::unique_ptr<Provider>> make_provider(std::string_view backend,
                                                const BackendConfig& config) {
  if (backend == "memory") return std::unique_ptr<Provider>(std::make_unique<MemoryProvider>());
  if (backend == "qemu") {
    auto p = QemuProvider::open(config.qemu);
    if (!p) return p.error();
    return std::unique_ptr<Provider>(std::move(p.value()));
  }
  if (backend == "firecracker") {
    return Error::unsupported("the firecracker backend is not part of this build yet; use "
                              "--backend qemu");
  }
  return Error::unsupported("unknown backend '" + std::string(backend) +
                            "'; choose one of: memory, qemu, firecracker");
}

}  // namespace paddock::runtime
