// The job ids of one paddock-load run: "<prefix>-<n>", n counting from 0. The number indexes the
// run's own bookkeeping, so an answer is matched to its job without a table of strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace paddock::load {

class JobNames {
 public:
  explicit JobNames(std::string prefix) : prefix_(std::move(prefix) + "-") {}

  std::string id(uint64_t n) const { return prefix_ + std::to_string(n); }
  // n for an id this run made; nullopt for anything else (another prefix, not a plain number).
  std::optional<uint64_t> number(std::string_view id) const;

 private:
  std::string prefix_;  // with the trailing '-'
};

}  // namespace paddock::load
