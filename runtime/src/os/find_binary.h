// Finding a VMM's binary: as given when it has a '/', else on PATH.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace paddock::runtime::os {

// The executable `name` as given (when it contains a '/') or the first one on PATH; nullopt when
// there is none.
inline std::optional<std::string> find_binary(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? std::optional(name) : std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

}  // namespace paddock::runtime::os
