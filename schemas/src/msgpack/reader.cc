#include <cstring>
#include <limits>

#include "paddock/schemas/msgpack_core.h"

namespace paddock::schemas::mp {
namespace {

const char* type_name(msgpack::type::object_type t) {
  switch (t) {
    case msgpack::type::NIL:
      return "nil";
    case msgpack::type::BOOLEAN:
      return "bool";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER:
      return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return "float";
    case msgpack::type::STR:
      return "string";
    case msgpack::type::BIN:
      return "bytes";
    case msgpack::type::ARRAY:
      return "array";
    case msgpack::type::MAP:
      return "map";
    case msgpack::type::EXT:
      return "ext";
  }
  return "unknown";
}

// Strings are referenced in place: decoders copy what they keep before the input goes away.
bool reference_strings(msgpack::type::object_type, std::size_t, void*) { return true; }

}  // namespace

[[noreturn]] void wrong_type(const std::string& path, const char* want, const msgpack::object& o) {
  throw Failure{path, std::string("expected ") + want + ", got " + type_name(o.type)};
}

namespace {
// A cleared zone kept for this thread's next Unpacked (nullptr while one is in use).
thread_local std::unique_ptr<msgpack::zone> spare_zone;
}  // namespace

Unpacked::Unpacked(std::string_view bytes, const Limits& limits) {
  if (bytes.size() > limits.max_bytes) {
    throw Failure{"frame", "larger than " + std::to_string(limits.max_bytes) + " bytes"};
  }
  if (bytes.empty()) throw Failure{"body", "empty"};
  zone_ = spare_zone ? std::move(spare_zone) : std::make_unique<msgpack::zone>();
  const size_t max_depth = limits.max_depth;
  const msgpack::unpack_limit limit(limits.max_array, limits.max_map, limits.max_str,
                                    limits.max_bin, /*ext=*/0, max_depth);
  std::size_t offset = 0;
  try {
    object_ = msgpack::unpack(*zone_, bytes.data(), bytes.size(), offset, reference_strings,
                              nullptr, limit);
  } catch (const msgpack::depth_size_overflow&) {
    throw Failure{"body", "nesting deeper than " + std::to_string(max_depth)};
  } catch (const msgpack::size_overflow& e) {
    throw Failure{"body", std::string("msgpack limit exceeded (") + e.what() + ")"};
  } catch (const msgpack::insufficient_bytes&) {
    throw Failure{"body", "truncated msgpack"};
  } catch (const std::exception& e) {
    throw Failure{"body", std::string("malformed msgpack: ") + e.what()};
  }
  if (offset != bytes.size()) throw Failure{"body", "trailing bytes after the msgpack object"};
}

Unpacked::~Unpacked() {
  if (!zone_) return;
  zone_->clear();  // keeps its first chunk
  if (!spare_zone) spare_zone = std::move(zone_);
}

std::string as_str(const msgpack::object& o, const std::string& path, size_t max_len, bool utf8) {
  if (o.type != msgpack::type::STR) wrong_type(path, "string", o);
  if (o.via.str.size > max_len) {
    throw Failure{path, "longer than " + std::to_string(max_len) + " bytes"};
  }
  const std::string_view s(o.via.str.ptr, o.via.str.size);
  if (utf8 && !valid_utf8(s)) throw Failure{path, "not valid UTF-8"};
  return std::string(s);
}

const msgpack::object_array& as_array(const msgpack::object& o, const std::string& path,
                                      size_t max_count) {
  if (o.type != msgpack::type::ARRAY) wrong_type(path, "array", o);
  if (o.via.array.size > max_count) {
    throw Failure{path, "more than " + std::to_string(max_count) + " entries"};
  }
  return o.via.array;
}

Fields::Fields(const msgpack::object& map, std::string path, bool utf8)
    : path_(std::move(path)), utf8_(utf8) {
  if (map.type != msgpack::type::MAP) wrong_type(path_.empty() ? "body" : path_, "map", map);
  entries_ = map.via.map.ptr;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = entries_[i];
    if (kv.key.type != msgpack::type::STR) {
      throw Failure{path_.empty() ? "body" : path_, "map key is not a string"};
    }
    std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    if (utf8_ && !valid_utf8(key))
      throw Failure{path_.empty() ? "body" : path_, "map key is not valid UTF-8"};
    if (find(key) != nullptr) {  // among the first size_ keys, those checked so far
      // An empty key has no name of its own: name the map that holds it.
      throw Failure{key.empty() ? (path_.empty() ? "body" : path_) : path_of(key), "duplicate key"};
    }
    size_ = i + 1;
  }
}

const msgpack::object* Fields::find(std::string_view key) const {
  for (uint32_t n = 0; n < size_; ++n) {
    const uint32_t i = next_ + n < size_ ? next_ + n : next_ + n - size_;
    const auto& k = entries_[i].key.via.str;
    // An empty key's pointer may be null, which memcmp must not get.
    if (k.size == key.size() && (k.size == 0 || std::memcmp(k.ptr, key.data(), k.size) == 0)) {
      next_ = i + 1 < size_ ? i + 1 : 0;
      return &entries_[i].val;
    }
  }
  return nullptr;
}

const msgpack::object* Fields::given(std::string_view key) const {
  const msgpack::object* o = find(key);
  return o == nullptr || o->type == msgpack::type::NIL ? nullptr : o;
}

std::string Fields::path_of(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const msgpack::object& Fields::require(std::string_view key) const {
  const msgpack::object* o = find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) throw Failure{path_of(key), "required"};
  return *o;
}

std::string Fields::str(std::string_view key, size_t max_len, bool required) const {
  const msgpack::object* o = required ? &require(key) : find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return {};
  return as_str(*o, path_of(key), max_len, utf8_);
}

std::string Fields::bytes(std::string_view key, size_t max_len) const {
  const msgpack::object* o = find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return {};
  if (o->type == msgpack::type::STR) {
    // Bytes sent as str: bytes all the same, not held to UTF-8.
    if (o->via.str.size > max_len) {
      throw Failure{path_of(key), "longer than " + std::to_string(max_len) + " bytes"};
    }
    return std::string(o->via.str.ptr, o->via.str.size);
  }
  if (o->type != msgpack::type::BIN) wrong_type(path_of(key), "bytes", *o);
  if (o->via.bin.size > max_len) {
    throw Failure{path_of(key), "longer than " + std::to_string(max_len) + " bytes"};
  }
  return std::string(o->via.bin.ptr, o->via.bin.size);
}

uint64_t Fields::uint(std::string_view key, uint64_t min, uint64_t max, uint64_t fallback,
                      bool required) const {
  const msgpack::object* o = required ? &require(key) : find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return fallback;
  if (o->type == msgpack::type::NEGATIVE_INTEGER) {
    throw Failure{path_of(key),
                  "must be between " + std::to_string(min) + " and " + std::to_string(max)};
  }
  if (o->type != msgpack::type::POSITIVE_INTEGER) wrong_type(path_of(key), "integer", *o);
  const uint64_t v = o->via.u64;
  if (v < min || v > max) {
    throw Failure{path_of(key), "must be between " + std::to_string(min) + " and " +
                                    std::to_string(max) + ", got " + std::to_string(v)};
  }
  return v;
}

int64_t Fields::sint(std::string_view key, int64_t min, int64_t max, int64_t fallback) const {
  const msgpack::object* o = find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return fallback;
  int64_t v = 0;
  if (o->type == msgpack::type::NEGATIVE_INTEGER) {
    v = o->via.i64;
  } else if (o->type == msgpack::type::POSITIVE_INTEGER) {
    if (o->via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      v = std::numeric_limits<int64_t>::max();
    } else {
      v = static_cast<int64_t>(o->via.u64);
    }
  } else {
    wrong_type(path_of(key), "integer", *o);
  }
  if (v < min || v > max) {
    throw Failure{path_of(key), "must be between " + std::to_string(min) + " and " +
                                    std::to_string(max) + ", got " + std::to_string(v)};
  }
  return v;
}

int32_t Fields::int32(std::string_view key) const {
  const msgpack::object* o = given(key);
  if (o == nullptr) return 0;
  constexpr int64_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (o->type != msgpack::type::NEGATIVE_INTEGER && o->type != msgpack::type::POSITIVE_INTEGER) {
    wrong_type(path_of(key), "integer", *o);
  }
  const bool fits =
      (o->type == msgpack::type::NEGATIVE_INTEGER && o->via.i64 >= kMin) ||
      (o->type == msgpack::type::POSITIVE_INTEGER && o->via.u64 <= static_cast<uint64_t>(kMax));
  if (!fits) throw Failure{path_of(key), "out of the 32-bit range"};
  return static_cast<int32_t>(o->via.i64);
}

bool Fields::boolean(std::string_view key, bool fallback, bool required) const {
  const msgpack::object* o = required ? &require(key) : find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return fallback;
  if (o->type != msgpack::type::BOOLEAN) wrong_type(path_of(key), "bool", *o);
  return o->via.boolean;
}

std::vector<std::string> Fields::str_array(std::string_view key, size_t max_count,
                                           size_t max_len) const {
  const msgpack::object* o = find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return {};
  const std::string p = path_of(key);
  const auto& arr = as_array(*o, p, max_count);
  std::vector<std::string> out;
  out.reserve(arr.size);
  for (uint32_t i = 0; i < arr.size; ++i) {
    out.push_back(as_str(arr.ptr[i], p + "[" + std::to_string(i) + "]", max_len, utf8_));
  }
  return out;
}

std::map<std::string, std::string> Fields::str_map(std::string_view key, size_t max_count,
                                                   size_t max_key, size_t max_value) const {
  const msgpack::object* o = find(key);
  if (o == nullptr || o->type == msgpack::type::NIL) return {};
  const std::string p = path_of(key);
  if (o->type != msgpack::type::MAP) wrong_type(p, "map", *o);
  if (o->via.map.size > max_count) {
    throw Failure{p, "more than " + std::to_string(max_count) + " entries"};
  }
  std::map<std::string, std::string> out;
  for (uint32_t i = 0; i < o->via.map.size; ++i) {
    const auto& kv = o->via.map.ptr[i];
    std::string k = as_str(kv.key, p, max_key, utf8_);
    std::string v = as_str(kv.val, p + "." + k, max_value, utf8_);
    if (!out.emplace(std::move(k), std::move(v)).second) {
      throw Failure{p, "duplicate key"};
    }
  }
  return out;
}

}  // namespace paddock::schemas::mp
