// Small text helpers: UTF-8 checks, base64, previews for tables, durations.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace paddock::cli {

bool is_valid_utf8(std::string_view s);

std::string base64_encode(std::string_view bytes);
// Standard alphabet, padding required; whitespace is not allowed. nullopt if malformed.
std::optional<std::string> base64_decode(std::string_view text);

// The first line of `s`, control characters escaped, cut to at most `max_bytes` (plus "...").
std::string first_line_preview(std::string_view s, size_t max_bytes);

// "850us", "12.3ms", "4.56s", "2m05s".
std::string format_duration_us(uint64_t us);

}  // namespace paddock::cli
