#include "firecracker/jail.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <spdlog/spdlog.h>

namespace paddock::runtime::firecracker {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kCpuPeriodUs = 100'000;

bool mount_below(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, devno, root, point;
    f >> id >> parent >> devno >> root >> point;
    if (point == dir || point.rfind(dir + "/", 0) == 0) return true;
  }
  return false;
}

}  // namespace

std::string jail_prefix(const std::string& run_dir) {
  // "/a/b/" and "/a/./b" are "/a/b": the same directory must give the same prefix, or a restarted
  // worker would not sweep its predecessor's jails.
  std::string normal = fs::absolute(run_dir).lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  uint32_t h = 2166136261u;
  for (unsigned char c : normal) {
    h = (h ^ c) * 16777619u;
  }
  char buf[11];
  std::snprintf(buf, sizeof buf, "pf%08x", h);
  return buf;
}

std::vector<std::string> cgroup_limits(int version, uint32_t vcpus, uint64_t memory_bytes,
                                       uint64_t pids_max) {
  const uint64_t quota = vcpus * kCpuPeriodUs + kCpuPeriodUs / 2;
  if (version == 2) {
    return {"cpu.max=" + std::to_string(quota) + " " + std::to_string(kCpuPeriodUs),
            "memory.max=" + std::to_string(memory_bytes), "pids.max=" + std::to_string(pids_max)};
  }
  return {"cpu.cfs_period_us=" + std::to_string(kCpuPeriodUs),
          "cpu.cfs_quota_us=" + std::to_string(quota),
          "memory.limit_in_bytes=" + std::to_string(memory_bytes),
          "pids.max=" + std::to_string(pids_max)};
}

jail::JailSpec cgroup_spec(const FirecrackerJailConfig& config, int version,
                           const std::string& id) {
  jail::JailSpec s;
  s.id = id;
  s.cgroup_root = config.cgroup_root;
  s.cgroup_parent = config.parent_cgroup;
  s.cgroup_version = version;
  return s;
}

std::string jail_dir(const FirecrackerJailConfig& config, const std::string& exec_name,
                     const std::string& id) {
  return config.chroot_base_dir + "/" + exec_name + "/" + id;
}

size_t sweep_jails(const FirecrackerJailConfig& config, int version, const std::string& exec_name,
                   const std::string& prefix) {
  std::set<std::string> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(config.chroot_base_dir + "/" + exec_name, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix + "-", 0) == 0) ids.insert(name);
  }
  const jail::JailSpec like = cgroup_spec(config, version, "");
  for (const auto& parent : jail::cgroup_parent_dirs(like, version)) {
    for (const auto& e : fs::directory_iterator(parent, ec)) {
      if (e.is_directory()) ids.insert(e.path().filename().string());
    }
  }
  size_t removed = 0;
  for (const auto& id : ids) {
    if (!jail::valid_jail_id(id)) continue;
    // The cgroups first: killing what is in them ends the jail's Firecracker (and, as it is
    // pid 1 of its namespace, everything it started).
    if (auto st = jail::remove_jail_cgroups(cgroup_spec(config, version, id)); !st) {
      spdlog::warn("firecracker backend: sweep: {}", st.error().detail());
      continue;
    }
    const std::string dir = jail_dir(config, exec_name, id);
    if (mount_below(dir)) {
      spdlog::warn("firecracker backend: sweep: {} has a mount below it; not removing", dir);
      continue;
    }
    fs::remove_all(dir, ec);
    if (ec) {
      spdlog::warn("firecracker backend: sweep: remove {}: {}", dir, ec.message());
      continue;
    }
    ++removed;
  }
  return removed;
}

}  // namespace paddock::runtime::firecracker
