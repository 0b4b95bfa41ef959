#include "load/job_names.h"

#include <charconv>

namespace paddock::load {

std::optional<uint64_t> JobNames::number(std::string_view id) const {
  if (id.size() <= prefix_.size() || id.substr(0, prefix_.size()) != prefix_) return std::nullopt;
  const std::string_view digits = id.substr(prefix_.size());
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;  // ids never have leading zeros
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return n;
}

}  // namespace paddock::load
