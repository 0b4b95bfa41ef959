// The one way Paddock code turns errno into a message: "<operation>: <strerror>". Shared by the
// host runtime and the guest agent (a static binary: this header needs the C++ library alone).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace paddock::base {

inline std::string error_message(std::string_view operation, int err = errno) {
  return std::string(operation) + ": " + std::strerror(err);
}

}  // namespace paddock::base
