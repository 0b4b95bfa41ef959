#include "modules.h"

#include <fcntl.h>
#include <linux/module.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <functional>
#include <sstream>

#include "paddock/base/os_error.h"

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

namespace paddock::guest {
namespace {

constexpr std::string_view kSuffixes[] = {".ko.xz", ".ko.zst", ".ko.gz", ".ko"};

bool compressed(std::string_view path) { return !path.ends_with(".ko"); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Calls fn on each line of `text`.
void each_line(std::string_view text, const std::function<void(std::string_view)>& fn) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    fn(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  out = s.str();
  return true;
}

}  // namespace

std::string module_name(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  for (std::string_view suffix : kSuffixes) {
    if (path.ends_with(suffix)) {
      path.remove_suffix(suffix.size());
      break;
    }
  }
  std::string name(path);
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

ModuleIndex parse_module_index(std::string_view modules_dep, std::string_view modules_builtin) {
  ModuleIndex index;
  each_line(modules_dep, [&](std::string_view line) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return;
    ModuleIndex::Entry entry;
    entry.path = std::string(trim(line.substr(0, colon)));
    if (entry.path.empty()) return;
    std::string_view rest = line.substr(colon + 1);
    while (!(rest = trim(rest)).empty()) {
      const size_t space = rest.find_first_of(" \t");
      entry.deps.push_back(module_name(rest.substr(0, space)));
      if (space == std::string_view::npos) break;
      rest.remove_prefix(space);
    }
    index.modules.emplace(module_name(entry.path), std::move(entry));
  });
  each_line(modules_builtin, [&](std::string_view line) {
    if (!trim(line).empty()) index.builtin.insert(module_name(trim(line)));
  });
  return index;
}

LoadPlan plan_modules(const ModuleIndex& index, const std::vector<std::string>& required,
                      const std::vector<std::string>& optional) {
  LoadPlan plan;
  std::set<std::string> done;      // planned, or built in
  std::set<std::string> visiting;  // on the current path (modules.dep has no cycles; be safe)
  std::function<bool(const std::string&)> visit = [&](const std::string& name) {
    if (done.count(name) != 0 || index.builtin.count(name) != 0) return true;
    const auto it = index.modules.find(name);
    if (it == index.modules.end()) return false;
    if (!visiting.insert(name).second) return true;
    for (const auto& dep : it->second.deps) {
      if (!visit(dep)) plan.missing.push_back(dep + " (needed by " + name + ")");
    }
    visiting.erase(name);
    done.insert(name);
    plan.paths.push_back(it->second.path);
    return true;
  };
  for (const auto& raw : required) {
    const std::string name = module_name(raw);
    if (!visit(name)) plan.missing.push_back(name);
  }
  for (const auto& raw : optional) visit(module_name(raw));
  return plan;
}

std::string read_module_index(const std::string& dir, ModuleIndex& index) {
  std::string dep;
  std::string builtin;
  if (!read_file(dir + "/modules.dep", dep))
    return base::error_message("read " + dir + "/modules.dep");
  read_file(dir + "/modules.builtin", builtin);  // optional: older trees may lack it
  index = parse_module_index(dep, builtin);
  return {};
}

std::vector<std::string> load_modules(const std::string& dir, const std::vector<std::string>& paths,
                                      std::vector<std::string>& loaded) {
  std::vector<std::string> errors;
  for (const auto& rel : paths) {
    const std::string path = dir + "/" + rel;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      errors.push_back(base::error_message("open " + path));
      continue;
    }
    const int flags = compressed(rel) ? MODULE_INIT_COMPRESSED_FILE : 0;
    const long rc = ::syscall(SYS_finit_module, fd, "", flags);
    const int err = errno;
    ::close(fd);
    if (rc == 0) {
      loaded.push_back(module_name(rel));
    } else if (err != EEXIST) {
      std::string msg = base::error_message("finit_module " + path, err);
      if (flags != 0 && (err == EINVAL || err == EOPNOTSUPP)) {
        msg +=
            " (this kernel may not decompress modules itself: that needs Linux >= 5.17 with "
            "CONFIG_MODULE_DECOMPRESS; put the module in the image uncompressed)";
      }
      errors.push_back(std::move(msg));
    }
  }
  return errors;
}

std::vector<std::string> load_needed_modules(std::vector<std::string>& loaded) {
  utsname u{};
  ::uname(&u);
  const std::string dir = std::string("/lib/modules/") + u.release;
  // The image's list first, in its order (it may name transports before drivers), then ours.
  std::vector<std::string> required;
  std::string extra;
  if (read_file(kExtraModulesFile, extra)) {
    each_line(extra, [&](std::string_view line) {
      line = trim(line.substr(0, line.find('#')));
      if (!line.empty()) required.emplace_back(line);
    });
  }
  required.insert(required.end(), std::begin(kRequiredModules), std::end(kRequiredModules));
  ModuleIndex index;
  if (auto err = read_module_index(dir, index); !err.empty()) {
    return {err + " (no modules: " + std::string(kRequiredModules[0]) +
            " must then be built into the kernel)"};
  }
  const LoadPlan plan = plan_modules(
      index, required,
      std::vector<std::string>(std::begin(kOptionalModules), std::end(kOptionalModules)));
  std::vector<std::string> errors;
  for (const auto& m : plan.missing) {
    errors.push_back("module " + m + ": not in " + dir + "/modules.dep nor built into the kernel");
  }
  auto load_errors = load_modules(dir, plan.paths, loaded);
  errors.insert(errors.end(), load_errors.begin(), load_errors.end());
  return errors;
}

}  // namespace paddock::guest
