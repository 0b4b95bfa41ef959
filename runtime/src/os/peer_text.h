// Text from a peer the host does not trust (a guest agent, a QEMU process), made safe to quote in
// an error message or a log line: bounded, and with every byte that is not printable ASCII shown
// as \xNN, so that a peer can neither flood a message past its wire limit (a JobError message is
// at most 4 KiB) nor put escape sequences or line breaks into a log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace paddock::runtime::os {

// At most `max_bytes` bytes of `text` (each one up to 4 characters once escaped), then "..." if
// it was cut.
inline std::string peer_text(std::string_view text, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  const size_t n = text.size() < max_bytes ? text.size() : max_bytes;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (n < text.size()) out += "...";
  return out;
}

}  // namespace paddock::runtime::os
