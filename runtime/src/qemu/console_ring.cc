#include "qemu/console_ring.h"

namespace paddock::runtime::qemu {

void ConsoleRing::append(std::string_view bytes) {
  std::lock_guard lock(mu_);
  data_.append(bytes);
  if (data_.size() > capacity_) data_.erase(0, data_.size() - capacity_);
}

std::string ConsoleRing::tail(size_t max_lines, size_t max_bytes) const {
  std::string copy;
  {
    std::lock_guard lock(mu_);
    copy = data_.size() > max_bytes ? data_.substr(data_.size() - max_bytes) : data_;
  }
  while (!copy.empty() && (copy.back() == '\n' || copy.back() == '\r')) copy.pop_back();
  size_t start = copy.size(), lines = 0;
  while (start > 0 && lines < max_lines) {
    --start;
    if (copy[start] == '\n' && ++lines == max_lines) {
      ++start;
      break;
    }
  }
  std::string out;
  for (char c : copy.substr(start)) {
    if (c == '\n' || (c >= 0x20 && c < 0x7f))
      out += c;
    else if (c == '\t')
      out += ' ';
  }
  return out;
}

std::string ConsoleRing::line_containing(std::string_view needle, size_t max_bytes) const {
  std::lock_guard lock(mu_);
  const size_t at = data_.find(needle);
  if (at == std::string::npos) return {};
  const size_t begin = data_.rfind('\n', at);
  const size_t start = begin == std::string::npos ? 0 : begin + 1;
  const size_t end = std::min(data_.find('\n', at), data_.size());
  std::string out;
  for (char c : data_.substr(start, std::min(end - start, max_bytes))) {
    if (c >= 0x20 && c < 0x7f) out += c;
  }
  return out;
}

bool ConsoleRing::contains(std::string_view needle) const {
  std::lock_guard lock(mu_);
  return data_.find(needle) != std::string::npos;
}

}  // namespace paddock::runtime::qemu
