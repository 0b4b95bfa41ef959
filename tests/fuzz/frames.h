// Shared by the fuzz targets: splits a fuzz input into ZeroMQ-like frames, and checks the
// round-trip property of decoded values.
//
// Frame scheme: repeated [u16 little-endian length][that many bytes]; a length running past the
// end takes what is left, and a lone trailing byte is a one-byte frame. tools/fuzz.sh writes its
// seeds the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"

namespace paddock::fuzz {

inline std::vector<std::string_view> split_frames(const uint8_t* data, size_t size) {
  std::vector<std::string_view> frames;
  const char* p = reinterpret_cast<const char*>(data);
  size_t left = size;
  while (left > 0 && frames.size() < schemas::limits::kMaxBodiesPerMessage + 4) {
    if (left < 2) {
      frames.emplace_back(p, left);
      break;
    }
    size_t n = static_cast<size_t>(static_cast<uint8_t>(p[0])) |
               (static_cast<size_t>(static_cast<uint8_t>(p[1])) << 8);
    p += 2;
    left -= 2;
    if (n > left) n = left;
    frames.emplace_back(p, n);
    p += n;
    left -= n;
  }
  return frames;
}

// A value that decoded must encode and decode again to an equal value.
template <class T, class Decode>
void check_round_trip(const schemas::Decoded<T>& first, Decode&& decode) {
  if (!first) return;
  const std::string again = schemas::encode(first.value());
  // Defaults can add a few bytes, past a request's limit or a frame's.
  if (again.size() > schemas::limits::kMaxRequestBytes) return;
  auto second = decode(again);
  if (!second || !(second.value() == first.value())) __builtin_trap();
}

// A failed decode must name a field and a reason.
template <class T>
void check_error(const schemas::Decoded<T>& d) {
  if (!d && (d.error().field.empty() || d.error().reason.empty())) __builtin_trap();
}

}  // namespace paddock::fuzz
