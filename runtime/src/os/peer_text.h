// Text from a peer the host does not trust (a guest agent, a QEMU process), made safe to quote in
// an error message or a log line: bounded, and with every byte that is not printable ASCII shown
// as \xNN, so that a peer can neither flood a message past its wire limit (a JobError message is
// at most 4 KiB) nor put escape sequences or line breaks into a log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace paddock::runtime::os {

// `text` with every byte that is not printable ASCII (and the backslash) as \xNN, cut at
// `max_chars` characters, then "..." if it was cut: at most max_chars + 3 characters in all.
inline std::string peer_text(std::string_view text, size_t max_chars) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() < max_chars ? text.size() : max_chars);
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const bool plain = c >= 0x20 && c < 0x7f && c != '\\';
    if (out.size() + (plain ? 1 : 4) > max_chars) {
      out += "...";
      break;
    }
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

}  // namespace paddock::runtime::os
