#include "paddock/schemas/utf8.h"

namespace paddock::schemas {

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII runs first: most text is.
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range (RFC 3629, section 4)
    if (p[i] >= 0xc2 && p[i] <= 0xdf) {
      len = 2;
    } else if (p[i] >= 0xe0 && p[i] <= 0xef) {
      len = 3;
      if (p[i] == 0xe0) lo = 0xa0;  // no overlong forms
      if (p[i] == 0xed) hi = 0x9f;  // no surrogates
    } else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
      len = 4;
      if (p[i] == 0xf0) lo = 0x90;  // no overlong forms
      if (p[i] == 0xf4) hi = 0x8f;  // at most U+10FFFF
    } else {
      return false;  // a continuation byte, an overlong lead (c0, c1) or f5..ff
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return false;
    }
    i += len;
  }
  return true;
}

std::string repaired_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    // The longest prefix of the rest that is valid, then one bad byte replaced.
    size_t len = 1;
    const auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0xc2 && b <= 0xdf)
      len = 2;
    else if (b >= 0xe0 && b <= 0xef)
      len = 3;
    else if (b >= 0xf0 && b <= 0xf4)
      len = 4;
    if (i + len <= s.size() && valid_utf8(s.substr(i, len))) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

}  // namespace paddock::schemas
