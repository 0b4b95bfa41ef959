// libFuzzer target: the CURVE key files and allowlists a broker, worker or CLI reads
// (client/include/paddock/client/curve.h): the same bytes parsed as a secret key file, a public
// key file and an allowlist. The parsers may only throw KeyError (naming the file); what they
// accept must be 40-character Z85 keys, and an allowlist never holds more than kMaxAllowlistKeys.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "paddock/client/curve.h"

namespace curve = paddock::curve;

namespace {

const std::string kSource = "fuzz.key";

// Runs `fn`; a KeyError must name the source, anything else thrown escapes (a crash).
template <class Fn>
void refused_or(Fn&& fn) {
  try {
    fn();
  } catch (const curve::KeyError& e) {
    if (std::string_view(e.what()).find(kSource) == std::string_view::npos) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  refused_or([&] {
    if (!curve::valid_key(curve::parse_secret_key(text, kSource))) __builtin_trap();
  });
  refused_or([&] {
    if (!curve::valid_key(curve::parse_public_key(text, kSource))) __builtin_trap();
  });
  refused_or([&] {
    curve::Allowlist list;
    curve::parse_allowlist(text, kSource, "fuzz", list);
    if (list.size() > curve::kMaxAllowlistKeys) __builtin_trap();
    for (const auto& [key, name] : list) {
      if (!curve::valid_key(key) || name.empty()) __builtin_trap();
    }
  });
  return 0;
}
