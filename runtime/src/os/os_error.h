// The one way runtime code turns errno into a message: "<operation>: <strerror>".
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace paddock::runtime::os {

inline std::string error_message(std::string_view operation, int err = errno) {
  return std::string(operation) + ": " + std::strerror(err);
}

}  // namespace paddock::runtime::os
