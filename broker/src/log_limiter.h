// Rate limit for log lines caused by peers (a flood of garbage must not flood the log).
#pragma once

#include <chrono>
#include <cstdint>

namespace paddock::broker {

class LogLimiter {
 public:
  explicit LogLimiter(uint32_t per_second) : per_second_(per_second) {}

  // True if a line may be logged now. suppressed() counts those that were not.
  bool allow() {
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= std::chrono::seconds(1)) {
      window_start_ = now;
      used_ = 0;
    }
    if (used_ < per_second_) {
      ++used_;
      return true;
    }
    ++suppressed_;
    return false;
  }
  uint64_t suppressed() const { return suppressed_; }

 private:
  uint32_t per_second_;
  uint32_t used_ = 0;
  uint64_t suppressed_ = 0;
  std::chrono::steady_clock::time_point window_start_{};
};

}  // namespace paddock::broker
