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
    auto p = FirecrackerProvider::open(config.firecracker);
    if (!p) return p.error();
    return std::unique_ptr<Provider>(std::move(p.value()));
  }
  return Error::unsupported("unknown backend '" + std::string(backend) +
                            "'; choose one of: memory, qemu, firecracker");
}

}  // namespace paddock::runtime
