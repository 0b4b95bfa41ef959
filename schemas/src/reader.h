// Internal: the wire codec's use of the bounded msgpack core (paddock/schemas/msgpack_core.h):
// its unpack limits (limits.h) and the names the codec's sources use.
#pragma once

#include <string_view>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"
#include "paddock/schemas/msgpack_core.h"

namespace paddock::schemas::detail {

using mp::as_array;
using mp::as_str;
using mp::Failure;
using mp::Fields;
using mp::guarded;

// The wire's unpack limits (limits.h), nested at most `max_depth` deep (a JOB body wraps its
// request one level down: limits::kMaxDispatchDepth). Text is UTF-8.
constexpr mp::Limits wire_limits(size_t max_depth = limits::kMaxDepth) {
  return mp::Limits{limits::kMaxFrameBytes, limits::kMaxArray, limits::kMaxMap, limits::kMaxStr,
                    limits::kMaxBin,        max_depth,         /*utf8=*/true};
}

// A wire body unpacked under wire_limits() (msgpack_core.h, Unpacked).
class Unpacked : public mp::Unpacked {
 public:
  explicit Unpacked(std::string_view bytes, size_t max_depth = limits::kMaxDepth)
      : mp::Unpacked(bytes, wire_limits(max_depth)) {}
};

}  // namespace paddock::schemas::detail
