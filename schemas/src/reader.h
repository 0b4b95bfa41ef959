// Internal: bounded msgpack unpacking and typed field access with field paths in errors.
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"

namespace paddock::schemas::detail {

// Thrown inside decoders only; every public decoder catches it (and every std::exception).
struct Failure {
  std::string field;
  std::string reason;
};

// `bytes` unpacked under the limits of limits.h, nested at most `max_depth` deep (a JOB body
// wraps its request one level down: limits::kMaxDispatchDepth). The constructor throws Failure on
// any violation, including trailing bytes after the first object. The object tree lives in a zone
// that goes back to a per-thread spare when this is destroyed, so that decoding a message does not
// allocate and free a zone (an 8 KiB chunk) each time.
class Unpacked {
 public:
  explicit Unpacked(std::string_view bytes, size_t max_depth = limits::kMaxDepth);
  ~Unpacked();
  Unpacked(const Unpacked&) = delete;
  Unpacked& operator=(const Unpacked&) = delete;

  const msgpack::object& get() const { return object_; }

 private:
  std::unique_ptr<msgpack::zone> zone_;
  msgpack::object object_;
};

// The string keys of one msgpack map, each looked up by name. Duplicate keys, and keys that are
// not valid UTF-8, are refused.
// REQUIRES: the map outlives this (its entries are read in place).
class Fields {
 public:
  Fields(const msgpack::object& map, std::string path);

  const msgpack::object* find(std::string_view key) const;
  std::string path_of(std::string_view key) const;
  const msgpack::object& require(std::string_view key) const;

  std::string str(std::string_view key, size_t max_len, bool required) const;
  // Accepts msgpack bin or str (so a Python client may send either).
  std::string bytes(std::string_view key, size_t max_len) const;
  uint64_t uint(std::string_view key, uint64_t min, uint64_t max, uint64_t fallback,
                bool required = false) const;
  int64_t sint(std::string_view key, int64_t min, int64_t max, int64_t fallback) const;
  bool boolean(std::string_view key, bool fallback) const;
  std::vector<std::string> str_array(std::string_view key, size_t max_count, size_t max_len) const;
  std::map<std::string, std::string> str_map(std::string_view key, size_t max_count, size_t max_key,
                                             size_t max_value) const;
  // Array of maps; calls fn(Fields) for each element.
  template <class Fn>
  void each_map(std::string_view key, size_t max_count, Fn&& fn) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const msgpack::object_kv* entries_ = nullptr;  // the map's, every key a string
  uint32_t size_ = 0;
  // Decoders read the fields in the order encoders write them: find() looks after the last one
  // found first.
  mutable uint32_t next_ = 0;
};

// A str value of at most max_len bytes, valid UTF-8.
std::string as_str(const msgpack::object& o, const std::string& path, size_t max_len);
const msgpack::object_array& as_array(const msgpack::object& o, const std::string& path,
                                      size_t max_count);

template <class Fn>
void Fields::each_map(std::string_view key, size_t max_count, Fn&& fn) const {
  const msgpack::object* o = find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return;
  const std::string p = path_of(key);
  const auto& arr = as_array(*o, p, max_count);
  for (uint32_t i = 0; i < arr.size; ++i) {
    fn(Fields(arr.ptr[i], p + "[" + std::to_string(i) + "]"));
  }
}

// Runs a decoder body, turning Failure and library exceptions into a DecodeError.
template <class T, class Fn>
Decoded<T> guarded(Fn&& fn) {
  try {
    return Decoded<T>(fn());
  } catch (const Failure& f) {
    return Decoded<T>(DecodeError{f.field, f.reason});
  } catch (const std::exception& e) {
    return Decoded<T>(DecodeError{"body", std::string("malformed msgpack: ") + e.what()});
  }
}

}  // namespace paddock::schemas::detail
