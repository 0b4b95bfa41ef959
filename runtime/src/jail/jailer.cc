#include "paddock/runtime/jailer.h"

#include <signal.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "paddock/base/os_error.h"

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

bool absolute(const std::string& p) { return !p.empty() && p[0] == '/'; }

bool relative_below(const std::string& p) {
  if (p.empty() || p[0] == '/') return false;
  for (const auto& part : std::filesystem::path(p)) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

// The first component of an absolute path: "/usr/lib" -> "usr".
std::string top_of(const std::string& path) {
  const auto end = path.find('/', 1);
  return path.substr(1, end == std::string::npos ? std::string::npos : end - 1);
}

// A file name inside the chroot: no '/' or '=' (the argv joins name=source), not "." or "..",
// not "dev", and not the top directory of a bind or of the VMM binary (they are made there).
bool plain_name(const std::string& n, const JailSpec& s) {
  if (n.empty() || n.size() > 64 || n.find_first_of("/=") != std::string::npos || n == "." ||
      n == ".." || n == "dev" || n.find('\0') != std::string::npos) {
    return false;
  }
  for (const auto& bind : s.ro_binds) {
    if (absolute(bind) && top_of(bind) == n) return false;
  }
  return !absolute(s.exec_file) || top_of(s.exec_file) != n;
}

template <typename T>
std::optional<T> number(const std::string& s) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

constexpr const char* kV1Controllers[] = {"cpu", "memory", "pids"};

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
  for (const auto* list : {&s.cgroups, &s.resource_limits}) {
    for (const auto& kv : *list) {
      const auto eq = kv.find('=');
      if (eq == 0 || eq == std::string::npos || eq + 1 == kv.size() ||
          kv.find('\n') != std::string::npos) {
        return Error::jailer((list == &s.cgroups ? "cgroup " : "resource limit ") + shown(kv) +
                             ": not <name>=<value>");
      }
    }
  }
  if (!s.netns.empty() && s.netns[0] != '/') {
    return Error::jailer("network namespace " + shown(s.netns) + ": not an absolute path");
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
  for (const auto& c : s.cgroups) argv.insert(argv.end(), {"--cgroup", c});
  for (const auto& r : s.resource_limits) argv.insert(argv.end(), {"--resource-limit", r});
  if (!s.netns.empty()) argv.insert(argv.end(), {"--netns", s.netns});
  argv.insert(argv.end(), {"--new-pid-ns", "--", "--api-sock", s.api_sock});
  return argv;
}

Result<std::vector<std::string>> numa_node_cgroups(uint32_t node,
                                                   const std::string& sysfs_node_dir) {
  const std::string file = sysfs_node_dir + "/node" + std::to_string(node) + "/cpulist";
  std::ifstream in(file);
  std::string cpus;
  if (!in || !std::getline(in, cpus)) {
    return Error::jailer("NUMA node " + std::to_string(node) + ": cannot read " + file +
                         " (no such node on this host?)");
  }
  while (!cpus.empty() && (cpus.back() == ' ' || cpus.back() == '\r')) cpus.pop_back();
  const bool list = !cpus.empty() && cpus.find_first_not_of("0123456789,-") == std::string::npos;
  if (!list) {
    return Error::jailer("NUMA node " + std::to_string(node) + ": " + file + " lists no CPU (" +
                         shown(cpus) + ")");
  }
  return std::vector<std::string>{"cpuset.mems=" + std::to_string(node), "cpuset.cpus=" + cpus};
}

std::string jail_dir(const JailSpec& s) { return s.chroot_base + "/qemu/" + s.id; }
std::string jail_root(const JailSpec& s) { return jail_dir(s) + "/root"; }

Status validate(const JailSpec& s) {
  if (s.id.empty()) return Error::jailer("step validate: jail id: empty");
  if (!valid_jail_id(s.id)) {
    return Error::jailer("step validate: jail id " + shown(s.id) + ": not 1-64 of [A-Za-z0-9_-]");
  }
  if (!absolute(s.exec_file)) {
    return Error::jailer("step validate: exec file " + shown(s.exec_file) +
                         ": not an absolute path");
  }
  if (!absolute(s.chroot_base)) {
    return Error::jailer("step validate: chroot base " + shown(s.chroot_base) +
                         ": not an absolute path");
  }
  if (s.uid == 0 || s.gid == 0) {
    return Error::jailer("step validate: uid " + std::to_string(s.uid) + " gid " +
                         std::to_string(s.gid) + ": the VMM never runs as root");
  }
  if (!absolute(s.cgroup_root)) {
    return Error::jailer("step validate: cgroup root " + shown(s.cgroup_root) +
                         ": not an absolute path");
  }
  if (!relative_below(s.cgroup_parent)) {
    return Error::jailer("step validate: cgroup parent " + shown(s.cgroup_parent) +
                         ": must be a relative path below the cgroup root, without . or ..");
  }
  if (s.cgroup_version < 0 || s.cgroup_version > 2) {
    return Error::jailer("step validate: cgroup version " + std::to_string(s.cgroup_version) +
                         ": 1, 2 or 0 (detect)");
  }
  if (s.cpu_quota_us != 0 && (s.cpu_period_us < 1000 || s.cpu_period_us > 1'000'000)) {
    return Error::jailer("step validate: cpu period " + std::to_string(s.cpu_period_us) +
                         " us: not within 1000-1000000");
  }
  if (!s.netns.empty() && !absolute(s.netns)) {
    return Error::jailer("step validate: network namespace " + shown(s.netns) +
                         ": not an absolute path");
  }
  for (const auto& [name, source] : s.files) {
    if (!plain_name(name, s)) {
      return Error::jailer("step validate: file name " + shown(name) +
                           ": not a plain file name in the chroot");
    }
    if (!absolute(source)) {
      return Error::jailer("step validate: file " + shown(source) + ": not an absolute path");
    }
  }
  for (const auto& dir : s.ro_binds) {
    if (!absolute(dir) || dir == "/" || dir.back() == '/' ||
        std::filesystem::path(dir).lexically_normal() != dir) {
      return Error::jailer("step validate: read-only bind " + shown(dir) +
                           ": not a normal absolute path below /");
    }
  }
  for (int fd : s.keep_fds) {
    if (fd < 3) return Error::jailer("step validate: keep fd " + std::to_string(fd) + ": below 3");
  }
  if (s.lifeline_fd >= 0 && s.lifeline_fd < 3) {
    return Error::jailer("step validate: lifeline fd " + std::to_string(s.lifeline_fd) +
                         ": below 3");
  }
  if (s.rlimit_nofile < 16) {
    return Error::jailer("step validate: open files limit " + std::to_string(s.rlimit_nofile) +
                         ": below 16");
  }
  return {};
}

Result<std::vector<std::string>> paddock_jailer_argv(const std::string& jailer_binary,
                                                     const JailSpec& s) {
  if (auto st = validate(s); !st) return st.error();
  std::vector<std::string> a = {jailer_binary,
                                "--id",
                                s.id,
                                "--exec-file",
                                s.exec_file,
                                "--uid",
                                std::to_string(s.uid),
                                "--gid",
                                std::to_string(s.gid),
                                "--chroot-base-dir",
                                s.chroot_base,
                                "--cgroup-root",
                                s.cgroup_root,
                                "--parent-cgroup",
                                s.cgroup_parent,
                                "--cgroup-version",
                                std::to_string(s.cgroup_version),
                                "--cpu-quota-us",
                                std::to_string(s.cpu_quota_us),
                                "--cpu-period-us",
                                std::to_string(s.cpu_period_us),
                                "--memory-bytes",
                                std::to_string(s.memory_bytes),
                                "--pids-max",
                                std::to_string(s.pids_max),
                                "--rlimit-nofile",
                                std::to_string(s.rlimit_nofile),
                                "--rlimit-fsize",
                                std::to_string(s.rlimit_fsize)};
  if (!s.netns.empty()) a.insert(a.end(), {"--netns", s.netns});
  for (const auto& [name, source] : s.files) a.insert(a.end(), {"--file", name + "=" + source});
  if (s.kvm) a.push_back("--kvm");
  for (const auto& dir : s.ro_binds) a.insert(a.end(), {"--ro-bind", dir});
  for (int fd : s.keep_fds) a.insert(a.end(), {"--keep-fd", std::to_string(fd)});
  if (s.lifeline_fd >= 0) a.insert(a.end(), {"--lifeline-fd", std::to_string(s.lifeline_fd)});
  a.push_back("--");
  a.insert(a.end(), s.args.begin(), s.args.end());
  return a;
}

Result<JailSpec> parse_paddock_jailer_args(const std::vector<std::string>& args) {
  JailSpec s;
  s.ro_binds.clear();
  bool binds_given = false;
  size_t i = 0;
  auto bad = [](const std::string& flag, const std::string& value) {
    return Error::jailer("step arguments: " + flag + " " + shown(value) + ": not valid");
  };
  for (; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--") {
      ++i;
      break;
    }
    if (flag == "--kvm") {
      s.kvm = true;
      continue;
    }
    static const std::set<std::string> kValued = {"--id",
                                                  "--exec-file",
                                                  "--uid",
                                                  "--gid",
                                                  "--chroot-base-dir",
                                                  "--cgroup-root",
                                                  "--parent-cgroup",
                                                  "--cgroup-version",
                                                  "--cpu-quota-us",
                                                  "--cpu-period-us",
                                                  "--memory-bytes",
                                                  "--pids-max",
                                                  "--rlimit-nofile",
                                                  "--rlimit-fsize",
                                                  "--netns",
                                                  "--file",
                                                  "--ro-bind",
                                                  "--keep-fd",
                                                  "--lifeline-fd"};
    if (kValued.count(flag) == 0)
      return Error::jailer("step arguments: unknown flag " + shown(flag));
    if (i + 1 >= args.size()) return Error::jailer("step arguments: " + flag + ": needs a value");
    const std::string& v = args[++i];
    auto u64 = [&](uint64_t& out) -> Status {
      auto n = number<uint64_t>(v);
      if (!n) return bad(flag, v);
      out = *n;
      return {};
    };
    auto u32 = [&](uint32_t& out) -> Status {
      auto n = number<uint32_t>(v);
      if (!n) return bad(flag, v);
      out = *n;
      return {};
    };
    Status st;
    if (flag == "--id")
      s.id = v;
    else if (flag == "--exec-file")
      s.exec_file = v;
    else if (flag == "--uid")
      st = u32(s.uid);
    else if (flag == "--gid")
      st = u32(s.gid);
    else if (flag == "--chroot-base-dir")
      s.chroot_base = v;
    else if (flag == "--cgroup-root")
      s.cgroup_root = v;
    else if (flag == "--parent-cgroup")
      s.cgroup_parent = v;
    else if (flag == "--cgroup-version") {
      auto n = number<int>(v);
      if (!n) return bad(flag, v);
      s.cgroup_version = *n;
    } else if (flag == "--cpu-quota-us")
      st = u64(s.cpu_quota_us);
    else if (flag == "--cpu-period-us")
      st = u64(s.cpu_period_us);
    else if (flag == "--memory-bytes")
      st = u64(s.memory_bytes);
    else if (flag == "--pids-max")
      st = u64(s.pids_max);
    else if (flag == "--rlimit-nofile")
      st = u64(s.rlimit_nofile);
    else if (flag == "--rlimit-fsize")
      st = u64(s.rlimit_fsize);
    else if (flag == "--netns")
      s.netns = v;
    else if (flag == "--file") {
      const auto eq = v.find('=');
      if (eq == std::string::npos) return bad(flag, v);
      s.files.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (flag == "--ro-bind") {
      s.ro_binds.push_back(v);
      binds_given = true;
    } else if (flag == "--keep-fd") {
      auto n = number<int>(v);
      if (!n) return bad(flag, v);
      s.keep_fds.push_back(*n);
    } else if (flag == "--lifeline-fd") {
      auto n = number<int>(v);
      if (!n) return bad(flag, v);
      s.lifeline_fd = *n;
    } else {
      return Error::jailer("step arguments: unknown flag " + shown(flag));
    }
    if (!st) return st.error();
  }
  if (!binds_given) s.ro_binds = JailSpec{}.ro_binds;
  s.args.assign(args.begin() + static_cast<std::ptrdiff_t>(std::min(i, args.size())), args.end());
  if (auto st = validate(s); !st) return st.error();
  return s;
}

std::vector<std::string> cgroup_parent_dirs(const JailSpec& s, int version) {
  if (version == 2) return {s.cgroup_root + "/" + s.cgroup_parent};
  std::vector<std::string> dirs;
  for (const char* c : kV1Controllers)
    dirs.push_back(s.cgroup_root + "/" + c + "/" + s.cgroup_parent);
  return dirs;
}

std::vector<std::string> cgroup_dirs(const JailSpec& s, int version) {
  auto dirs = cgroup_parent_dirs(s, version);
  for (auto& d : dirs) d += "/" + s.id;
  return dirs;
}

namespace {

// Kills what is left in a cgroup and removes it, waiting (up to 2 s) for killed processes to
// leave. Gone already: fine.
Status remove_cgroup(const std::string& dir) {
  using namespace std::chrono_literals;
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  auto pause = 1ms;
  while (true) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
      return Error::jailer("step teardown: " + base::error_message("rmdir " + dir));
    }
    std::ifstream procs(dir + "/cgroup.procs");
    for (pid_t pid; procs >> pid;) {
      if (pid > 0) ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

// A mount point at or below `dir` in this process's mount namespace.
std::optional<std::string> mount_below(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, devno, root, point;
    f >> id >> parent >> devno >> root >> point;
    if (point == dir || point.rfind(dir + "/", 0) == 0) return point;
  }
  return std::nullopt;
}

int version_of(const JailSpec& s) {
  if (s.cgroup_version != 0) return s.cgroup_version;
  return cgroup_version(s.cgroup_root).value_or(0);
}

}  // namespace

uint64_t oom_kills(const JailSpec& s) {
  const int version = version_of(s);
  if (version == 0) return 0;
  const auto dirs = cgroup_dirs(s, version);
  // v1: cgroup_dirs gives cpu, memory, pids, in that order.
  const std::string file =
      version == 2 ? dirs.front() + "/memory.events" : dirs[1] + "/memory.oom_control";
  std::ifstream in(file);
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
}

Status remove_jail_cgroups(const JailSpec& s) {
  std::string errors;
  const int version = version_of(s);
  if (version != 0) {
    for (const auto& dir : cgroup_dirs(s, version)) {
      if (auto st = remove_cgroup(dir); !st) errors += st.error().detail() + "; ";
    }
  }
  if (!errors.empty()) return Error::jailer(errors.substr(0, errors.size() - 2));
  return {};
}

Status teardown_jail(const JailSpec& s) {
  std::string errors;
  if (auto st = remove_jail_cgroups(s); !st) errors += st.error().detail() + "; ";
  const std::string dir = jail_dir(s);
  if (auto m = mount_below(dir)) {
    return Error::jailer("step teardown: " + dir + ": a mount below it (" + *m +
                         ") is visible to the host; not removing");
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) errors += "step teardown: remove " + dir + ": " + ec.message() + "; ";
  if (!errors.empty()) return Error::jailer(errors.substr(0, errors.size() - 2));
  return {};
}

size_t sweep_jails(const JailSpec& like) {
  namespace fs = std::filesystem;
  size_t removed = 0;
  std::error_code ec;
  const int version = version_of(like);
  std::vector<std::string> ids;
  for (const auto& e : fs::directory_iterator(like.chroot_base + "/qemu", ec)) {
    ids.push_back(e.path().filename().string());
  }
  // Cgroups whose chroot went some other way.
  if (version != 0) {
    for (const auto& parent : cgroup_parent_dirs(like, version)) {
      for (const auto& e : fs::directory_iterator(parent, ec)) {
        if (e.is_directory()) ids.push_back(e.path().filename().string());
      }
    }
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (const auto& id : ids) {
    if (!valid_jail_id(id)) continue;
    JailSpec s = like;
    s.id = id;
    if (auto st = teardown_jail(s); !st) continue;
    ++removed;
  }
  return removed;
}

std::string default_jailer_binary() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto next = self.parent_path() / "paddock-jailer";
    if (::access(next.c_str(), X_OK) == 0) return next.string();
  }
#ifdef PADDOCK_JAILER_BUILD_PATH
  return PADDOCK_JAILER_BUILD_PATH;
#else
  return "paddock-jailer";
#endif
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
