// A bounded buffer of the guest's serial console: the last `capacity` bytes, kept so that an
// error can quote what the guest printed last (a kernel panic, the agent's last words).
//
// Thread-safety: append() from the reader thread, tail() from any thread.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

namespace paddock::runtime::qemu {

class ConsoleRing {
 public:
  explicit ConsoleRing(size_t capacity = 64 * 1024) : capacity_(capacity) {}

  void append(std::string_view bytes);
  // The last `max_lines` lines (at most `max_bytes`), printable characters only.
  std::string tail(size_t max_lines = 20, size_t max_bytes = 2048) const;
  // The first retained line that contains `needle` ("" if none), printable characters only.
  std::string line_containing(std::string_view needle, size_t max_bytes = 256) const;
  // True once `needle` has appeared in the retained output.
  bool contains(std::string_view needle) const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::string data_;
};

}  // namespace paddock::runtime::qemu
