#include "paddock/runtime/jailer.h"

#include <sys/vfs.h>

#include <filesystem>

namespace paddock::runtime::jail {

namespace {

constexpr long kCgroup2SuperMagic = 0x63677270;  // CGROUP2_SUPER_MAGIC
constexpr long kCgroupSuperMagic = 0x27e0eb;     // CGROUP_SUPER_MAGIC: a v1 controller mount

std::string shown(std::string_view v) {
  std::string s = "'";
  for (char c : v.substr(0, 80)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      s += "\\x";
      s += hex[(c >> 4) & 0xf];
      s += hex[c & 0xf];
    } else {
      s += c;
    }
  }
  return s + (v.size() > 80 ? "...'" : "'");
}

}  // namespace

bool valid_jail_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::vector<std::string>> firecracker_jailer_argv(const FirecrackerJailerSpec& s) {
  if (s.id.empty()) return Error::jailer("jailer id: empty");
  if (!valid_jail_id(s.id)) {
    return Error::jailer("jailer id " + shown(s.id) + ": not 1-64 of [A-Za-z0-9_-]");
  }
  if (s.jailer_binary.empty()) return Error::jailer("jailer binary: empty");
  if (s.exec_file.empty() || s.exec_file[0] != '/') {
    return Error::jailer("exec file " + shown(s.exec_file) + ": not an absolute path");
  }
  if (s.chroot_base_dir.empty() || s.chroot_base_dir[0] != '/') {
    return Error::jailer("chroot base dir " + shown(s.chroot_base_dir) + ": not an absolute path");
  }
  if (s.cgroup_version != 1 && s.cgroup_version != 2) {
    return Error::jailer("cgroup version " + std::to_string(s.cgroup_version) + ": only 1 or 2");
  }
  if (s.parent_cgroup.empty() || s.parent_cgroup[0] == '/' ||
      std::filesystem::path(s.parent_cgroup).lexically_normal().string().rfind("..", 0) == 0 ||
      s.parent_cgroup.find("/../") != std::string::npos) {
    return Error::jailer("parent cgroup " + shown(s.parent_cgroup) +
                         ": must be a relative path below the cgroup root");
  }
  if (s.api_sock.empty() || s.api_sock[0] != '/') {
    return Error::jailer("api socket " + shown(s.api_sock) + ": not an absolute path");
  }
  std::vector<std::string> argv = {s.jailer_binary,
                                   "--id",
                                   s.id,
                                   "--exec-file",
                                   s.exec_file,
                                   "--uid",
                                   std::to_string(s.uid),
                                   "--gid",
                                   std::to_string(s.gid),
                                   "--chroot-base-dir",
                                   s.chroot_base_dir,
                                   "--cgroup-version",
                                   std::to_string(s.cgroup_version),
                                   "--parent-cgroup",
                                   s.parent_cgroup};
  if (s.numa_node) argv.insert(argv.end(), {"--numa-node", std::to_string(*s.numa_node)});
  argv.insert(argv.end(), {"--new-pid-ns", "--", "--api-sock", s.api_sock});
  return argv;
}

std::optional<int> cgroup_version(const std::string& root) {
  struct statfs st {};
  if (::statfs(root.c_str(), &st) != 0) return std::nullopt;
  if (static_cast<long>(st.f_type) == kCgroup2SuperMagic) return 2;
  // v1: the root holds one cgroup mount per controller (cpu, memory, pids, ...).
  for (const char* controller : {"memory", "pids", "cpu"}) {
    struct statfs c {};
    if (::statfs((root + "/" + controller).c_str(), &c) == 0 &&
        static_cast<long>(c.f_type) == kCgroupSuperMagic) {
      return 1;
    }
  }
  return std::nullopt;
}

}  // namespace paddock::runtime::jail
