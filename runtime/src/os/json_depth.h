// A guard for JSON from a peer the host does not trust: how deeply its arrays and objects nest,
// checked before parsing so that a hostile line cannot make the parser build a value 10^6 levels
// deep.
#pragma once

#include <cstddef>
#include <string_view>

namespace paddock::runtime::os {

// Whether arrays and objects in `text` nest deeper than `max` (brackets inside strings do not
// count).
inline bool json_nested_deeper_than(std::string_view text, size_t max) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace paddock::runtime::os
