#include "rootfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "modules.h"
#include "paddock/base/os_error.h"

namespace paddock::guest {
namespace {

// Where the pieces are mounted in the initramfs before the switch.
constexpr const char* kLower = "/rootfs/lower";  // the image, read-only
constexpr const char* kRw = "/rootfs/rw";        // tmpfs: upper and work dirs of the overlay
constexpr const char* kRoot = "/rootfs/root";    // the overlay: the jobs' root
// Moved from the initramfs into the new root, with what is mounted below them (/dev/pts, ...).
constexpr const char* kMoved[] = {"/proc", "/sys", "/dev", "/tmp", "/work"};
constexpr auto kDeviceWait = std::chrono::seconds(10);

bool valid_name(std::string_view k) {
  if (k.empty() || (k[0] >= '0' && k[0] <= '9')) return false;
  for (char c : k) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string mkdirs(const std::string& path) {
  for (size_t at = 1; at != std::string::npos;) {
    at = path.find('/', at + 1);
    const std::string part = path.substr(0, at);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      return base::error_message("mkdir " + part);
    }
  }
  return {};
}

std::string load_rootfs_modules(std::vector<std::string>& loaded) {
  std::ifstream in(kRootfsModulesFile);
  if (!in)
    return std::string("no ") + kRootfsModulesFile +
           " in the initramfs: build it with "
           "tools/build-guest-image.sh --rootfs-modules (tools/build-image.sh does)";
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  utsname u{};
  ::uname(&u);
  const std::string dir = std::string("/lib/modules/") + u.release;
  ModuleIndex index;
  if (auto err = read_module_index(dir, index); !err.empty()) return err;
  const LoadPlan plan = plan_modules(index, names, {});
  if (!plan.missing.empty()) return "module " + plan.missing.front() + ": not in " + dir;
  const auto errors = load_modules(dir, plan.paths, loaded);
  return errors.empty() ? std::string() : errors.front();
}

std::string mount_one(const char* source, const std::string& target, const char* type,
                      unsigned long flags, const char* data) {
  if (auto err = mkdirs(target); !err.empty()) return err;
  if (::mount(source, target.c_str(), type, flags, data) != 0) {
    return base::error_message(std::string("mount ") + type + " " + source + " on " + target);
  }
  return {};
}

}  // namespace

std::string rootfs_device(std::string_view cmdline) {
  constexpr std::string_view kKey = "paddock.rootfs=";
  size_t at = 0;
  while (at < cmdline.size()) {
    const size_t end = std::min(cmdline.find_first_of(" \t\n", at), cmdline.size());
    const std::string_view word = cmdline.substr(at, end - at);
    if (word.substr(0, kKey.size()) == kKey) return std::string(word.substr(kKey.size()));
    at = end + 1;
  }
  return {};
}

std::map<std::string, std::string> parse_env(std::string_view text,
                                             std::vector<std::string>& errors) {
  std::map<std::string, std::string> env;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos || !valid_name(std::string_view(line).substr(0, eq))) {
      errors.push_back("image environment: bad line '" + line + "'");
      continue;
    }
    env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

std::string enter_rootfs(const std::string& device, std::vector<std::string>& loaded,
                         std::map<std::string, std::string>& env) {
  if (auto err = load_rootfs_modules(loaded); !err.empty()) return err;
  // The disk appears when virtio_blk has probed it; devtmpfs then makes the node.
  const auto deadline = std::chrono::steady_clock::now() + kDeviceWait;
  struct stat st {};
  while (::stat(device.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return device + ": no such block device after 10 s (is the drive attached?)";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Read-only, as the disk is.
  if (auto err = mount_one(device.c_str(), kLower, "ext4", MS_RDONLY, nullptr); !err.empty())
    return err;
  if (auto err = mount_one("tmpfs", kRw, "tmpfs", 0, "mode=0755"); !err.empty()) return err;
  for (const char* d : {"/rootfs/rw/upper", "/rootfs/rw/work"}) {
    if (auto err = mkdirs(d); !err.empty()) return err;
  }
  if (auto err =
          mount_one("overlay", kRoot, "overlay", 0,
                    "lowerdir=/rootfs/lower,upperdir=/rootfs/rw/upper,workdir=/rootfs/rw/work");
      !err.empty()) {
    return err;
  }
  for (const char* m : kMoved) {
    const std::string target = std::string(kRoot) + m;
    if (auto err = mkdirs(target); !err.empty()) return err;
    if (::mount(m, target.c_str(), nullptr, MS_MOVE, nullptr) != 0) {
      return base::error_message(std::string("move ") + m + " to " + target);
    }
  }
  // switch_root's way: the initramfs cannot be unmounted or pivoted away, so the new root is
  // moved over it and chrooted into. The initramfs stays below, unreachable by path.
  if (::chdir(kRoot) != 0) return base::error_message(std::string("chdir ") + kRoot);
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) {
    return base::error_message(std::string("move ") + kRoot + " to /");
  }
  if (::chroot(".") != 0) return base::error_message("chroot into the root filesystem");
  if (::chdir("/") != 0) return base::error_message("chdir / in the root filesystem");
  std::ifstream in(kImageEnvFile);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    std::vector<std::string> errors;
    env = parse_env(text.str(), errors);
    if (!errors.empty()) return errors.front();
  }
  return {};
}

}  // namespace paddock::guest
