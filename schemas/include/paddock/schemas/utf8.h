// UTF-8 text as the wire holds it (codec.h, "Text"). Header of the msgpack core's library
// (paddock_msgpack), so that the core, the wire codec and the agent protocol share one rule.
#pragma once

#include <string>
#include <string_view>

namespace paddock::schemas {

// True when `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF).
bool valid_utf8(std::string_view s);

// `s` with every invalid UTF-8 sequence replaced by U+FFFD (each maximal invalid subpart, one by
// one byte: simpler, and any replacement keeps the text valid).
std::string repaired_utf8(std::string_view s);

}  // namespace paddock::schemas
