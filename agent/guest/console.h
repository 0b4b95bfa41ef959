// The agent's only log: short lines on stderr, which is /dev/console in a VM (the host keeps the
// serial console's tail for its error messages). One write() per line, so lines do not interleave.
#pragma once

#include <unistd.h>

#include <string>
#include <string_view>

namespace paddock::guest {

inline void say(std::string_view line) {
  std::string out = "paddock-agent: ";
  out.append(line).push_back('\n');
  [[maybe_unused]] ssize_t n = ::write(2, out.data(), out.size());
}

}  // namespace paddock::guest
