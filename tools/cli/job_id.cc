#include "job_id.h"

#include <random>

namespace paddock::cli {

std::string random_hex(size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    unsigned v = rd();
    for (int k = 0; k < 8 && out.size() < n; ++k, v >>= 4) out += kDigits[v & 15];
  }
  return out;
}

std::string generate_job_id(const std::string& prefix) { return prefix + "-" + random_hex(16); }

}  // namespace paddock::cli
