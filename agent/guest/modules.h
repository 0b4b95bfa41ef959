// Kernel modules the agent needs before it can talk: it is PID 1 and there is no modprobe. Reads
// /lib/modules/$(uname -r)/modules.dep (and modules.builtin), resolves the dependencies of the
// modules wanted, and loads them in dependency order with finit_module(2). Compressed modules
// (.ko.xz, .ko.zst, .ko.gz) are handed to the kernel to decompress (MODULE_INIT_COMPRESSED_FILE,
// Linux >= 5.17 with CONFIG_MODULE_DECOMPRESS); a kernel that cannot is reported as such.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace paddock::guest {

// Always wanted: the virtio-serial driver that carries the agent's channel.
inline constexpr std::string_view kRequiredModules[] = {"virtio_console"};
// Loaded when the kernel has them as modules: the virtio transports (microvm: MMIO; pc/q35: PCI)
// and vsock over virtio (the agent's channel under Firecracker, paddock.channel=vsock).
inline constexpr std::string_view kOptionalModules[] = {"virtio_mmio", "virtio_pci",
                                                        "vmw_vsock_virtio_transport"};
// One module name a line ('#' starts a comment): more modules to load, required.
inline constexpr const char* kExtraModulesFile = "/etc/paddock/modules";

// "kernel/drivers/char/virtio_console.ko.xz" -> "virtio_console" ('-' and '_' are the same in
// module names; '_' is kept).
std::string module_name(std::string_view path);

struct ModuleIndex {
  struct Entry {
    std::string path;               // relative to the modules directory
    std::vector<std::string> deps;  // names
  };
  std::map<std::string, Entry> modules;  // by name
  std::set<std::string> builtin;         // names of the modules built into the kernel
};

// Parses modules.dep ("path: dep-path dep-path ...") and modules.builtin (one path a line).
ModuleIndex parse_module_index(std::string_view modules_dep, std::string_view modules_builtin);

struct LoadPlan {
  std::vector<std::string> paths;    // in load order: every module after its dependencies
  std::vector<std::string> missing;  // required names neither in modules.dep nor built in
};

LoadPlan plan_modules(const ModuleIndex& index, const std::vector<std::string>& required,
                      const std::vector<std::string>& optional);

// Reads the index of `dir` (a /lib/modules/<release> directory). Empty on success, else why not.
std::string read_module_index(const std::string& dir, ModuleIndex& index);

// finit_module(2) for each path under `dir`, in order. A module already loaded is fine. One
// message per failure; `loaded` gets the names loaded.
std::vector<std::string> load_modules(const std::string& dir, const std::vector<std::string>& paths,
                                      std::vector<std::string>& loaded);

// As PID 1: the required, optional and /etc/paddock/modules modules of the running kernel.
// Messages for what failed; `loaded` gets the names loaded.
std::vector<std::string> load_needed_modules(std::vector<std::string>& loaded);

}  // namespace paddock::guest
