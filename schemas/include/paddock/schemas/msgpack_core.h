// The bounded msgpack core shared by Paddock's two codecs: the wire codec (codec.h, schemas/src)
// and the guest agent protocol (paddock/agent/protocol.h). One reader: a body unpacked under a
// protocol's limits (bytes, depth, array, map, str and bin sizes) and typed field access whose
// errors name the field ("files[0].path: longer than 1024 bytes"). One writer: maps whose entry
// count is written when they are finished.
//
// Decoders built on it throw Failure inside and return Decoded<T> (decoded.h) through guarded():
// nothing is thrown past a codec's API. Linked into the host (paddock_msgpack, with the
// sanitizers in sanitizer builds) and into the static guest agent (paddock_msgpack_guest).
//
// Thread-safety: everything here is per call; Unpacked keeps a spare zone per thread.
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "paddock/schemas/decoded.h"
#include "paddock/schemas/utf8.h"

namespace paddock::schemas::mp {

// One protocol's unpack limits, applied before any field is looked at.
struct Limits {
  size_t max_bytes = 0;  // of the body
  size_t max_array = 0;
  size_t max_map = 0;
  size_t max_str = 0;
  size_t max_bin = 0;
  size_t max_depth = 0;
  // Whether every str (values and map keys) must be valid UTF-8: the wire's text is (codec.h,
  // "Text"); the guest agent protocol's strings are Linux bytes, refused where they hold a NUL.
  bool utf8 = true;
};

// Thrown inside decoders only; guarded() turns it into a DecodeError.
struct Failure {
  std::string field;
  std::string reason;
};

[[noreturn]] void wrong_type(const std::string& path, const char* want, const msgpack::object& o);

// `bytes` unpacked under `limits`. The constructor throws Failure on any violation, including
// trailing bytes after the first object. Strings are referenced in place (decoders copy what they
// keep). The object tree lives in a zone that goes back to a per-thread spare when this is
// destroyed, so that decoding a message does not allocate and free a zone (an 8 KiB chunk) each
// time.
class Unpacked {
 public:
  Unpacked(std::string_view bytes, const Limits& limits);
  ~Unpacked();
  Unpacked(const Unpacked&) = delete;
  Unpacked& operator=(const Unpacked&) = delete;

  const msgpack::object& get() const { return object_; }

 private:
  std::unique_ptr<msgpack::zone> zone_;
  msgpack::object object_;
};

// A str value of at most max_len bytes (valid UTF-8 when `utf8`).
std::string as_str(const msgpack::object& o, const std::string& path, size_t max_len,
                   bool utf8 = true);
const msgpack::object_array& as_array(const msgpack::object& o, const std::string& path,
                                      size_t max_count);

// The string keys of one msgpack map, each looked up by name. Duplicate keys, and (when `utf8`)
// keys that are not valid UTF-8, are refused. An absent field and a nil one both take the
// accessor's fallback.
// REQUIRES: the map outlives this (its entries are read in place).
class Fields {
 public:
  Fields(const msgpack::object& map, std::string path, bool utf8 = true);

  // The value under `key` as sent (nil included), or nullptr.
  const msgpack::object* find(std::string_view key) const;
  // The value under `key`, or nullptr when it is absent or nil.
  const msgpack::object* given(std::string_view key) const;
  std::string path_of(std::string_view key) const;
  // The value under `key`; Failure "required" when it is absent or nil.
  const msgpack::object& require(std::string_view key) const;

  std::string str(std::string_view key, size_t max_len, bool required = false) const;
  // Accepts msgpack bin or str (a peer written in another language may send either); a str is
  // bytes all the same, not held to UTF-8.
  std::string bytes(std::string_view key, size_t max_len) const;
  uint64_t uint(std::string_view key, uint64_t min, uint64_t max, uint64_t fallback,
                bool required = false) const;
  int64_t sint(std::string_view key, int64_t min, int64_t max, int64_t fallback) const;
  // Any 32-bit signed integer; 0 when absent.
  int32_t int32(std::string_view key) const;
  bool boolean(std::string_view key, bool fallback, bool required = false) const;
  std::vector<std::string> str_array(std::string_view key, size_t max_count, size_t max_len) const;
  std::map<std::string, std::string> str_map(std::string_view key, size_t max_count, size_t max_key,
                                             size_t max_value) const;
  // Array of maps; calls fn(Fields) for each element.
  template <class Fn>
  void each_map(std::string_view key, size_t max_count, Fn&& fn) const;

  const std::string& path() const { return path_; }
  bool utf8() const { return utf8_; }

 private:
  std::string path_;
  bool utf8_ = true;
  const msgpack::object_kv* entries_ = nullptr;  // the map's, every key a string
  uint32_t size_ = 0;
  // Decoders read the fields in the order encoders write them: find() looks after the last one
  // found first.
  mutable uint32_t next_ = 0;
};

template <class Fn>
void Fields::each_map(std::string_view key, size_t max_count, Fn&& fn) const {
  const msgpack::object* o = given(key);
  if (o == nullptr) return;
  const std::string p = path_of(key);
  const auto& arr = as_array(*o, p, max_count);
  for (uint32_t i = 0; i < arr.size; ++i) {
    fn(Fields(arr.ptr[i], p + "[" + std::to_string(i) + "]", utf8_));
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

// ---- writing --------------------------------------------------------------------------------

// How a writer packs str values: the wire's as valid UTF-8 (each invalid sequence replaced by
// U+FFFD: codec.h, "Text"); the agent protocol's as the bytes they are.
enum class Text { kUtf8, kBytes };

// A stream for msgpack's packer that appends to a string, so a body is built where it is returned
// (msgpack::sbuffer starts with an 8 KiB allocation and would be copied out).
struct StringStream {
  std::string bytes;
  void write(const char* data, size_t size) { bytes.append(data, size); }
};

// Builds one msgpack map; the entry count is written when the map is finished, so fields may be
// omitted conditionally. The entries go after room for the largest header, which finish() fills
// and trims: one buffer, no copy of the entries. Integers take msgpack's smallest form.
class MapWriter {
 public:
  explicit MapWriter(Text text = Text::kUtf8, size_t reserve = 256) : text_(text) {
    body_.bytes.reserve(reserve);
    body_.bytes.resize(kMaxMapHeader);
  }
  // Not copied or moved: the packer refers to the buffer.
  MapWriter(const MapWriter&) = delete;
  MapWriter& operator=(const MapWriter&) = delete;
  Text text() const { return text_; }
  MapWriter& str(std::string_view key, std::string_view v) {
    add_key(key);
    string(v);
    return *this;
  }
  MapWriter& bin(std::string_view key, std::string_view v) {
    add_key(key);
    pk_.pack_bin(static_cast<uint32_t>(v.size()));
    pk_.pack_bin_body(v.data(), static_cast<uint32_t>(v.size()));
    return *this;
  }
  template <class Int>
  MapWriter& num(std::string_view key, Int v) {
    add_key(key);
    pk_.pack(v);
    return *this;
  }
  MapWriter& boolean(std::string_view key, bool v) {
    add_key(key);
    v ? pk_.pack_true() : pk_.pack_false();
    return *this;
  }
  MapWriter& str_array(std::string_view key, const std::vector<std::string>& v) {
    add_key(key);
    pk_.pack_array(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) string(s);
    return *this;
  }
  MapWriter& str_map(std::string_view key, const std::map<std::string, std::string>& m) {
    add_key(key);
    pk_.pack_map(static_cast<uint32_t>(m.size()));
    for (const auto& [k, v] : m) {
      string(k);
      string(v);
    }
    return *this;
  }
  // A map already encoded (by another MapWriter).
  MapWriter& map(std::string_view key, std::string_view encoded_map) {
    add_key(key);
    raw(encoded_map);
    return *this;
  }
  // An array of maps, each encoded by enc(item) (which returns the encoded map).
  template <class T, class Enc>
  MapWriter& maps(std::string_view key, const std::vector<T>& items, Enc&& enc) {
    add_key(key);
    pk_.pack_array(static_cast<uint32_t>(items.size()));
    for (const auto& item : items) raw(enc(item));
    return *this;
  }
  std::string finish() {
    StringStream head;
    msgpack::packer<StringStream>(head).pack_map(count_);
    const size_t unused = kMaxMapHeader - head.bytes.size();
    body_.bytes.replace(unused, head.bytes.size(), head.bytes);
    body_.bytes.erase(0, unused);
    return std::move(body_.bytes);
  }

 private:
  static constexpr size_t kMaxMapHeader = 5;  // map32

  void string(std::string_view v) {
    if (text_ == Text::kUtf8 && !valid_utf8(v)) {
      const std::string fixed = repaired_utf8(v);
      pk_.pack_str(static_cast<uint32_t>(fixed.size()));
      pk_.pack_str_body(fixed.data(), static_cast<uint32_t>(fixed.size()));
      return;
    }
    pk_.pack_str(static_cast<uint32_t>(v.size()));
    pk_.pack_str_body(v.data(), static_cast<uint32_t>(v.size()));
  }
  void add_key(std::string_view key) {
    ++count_;
    pk_.pack_str(static_cast<uint32_t>(key.size()));
    pk_.pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
  }
  void raw(std::string_view bytes) { body_.write(bytes.data(), bytes.size()); }

  Text text_;
  uint32_t count_ = 0;
  StringStream body_;
  msgpack::packer<StringStream> pk_{body_};
};

}  // namespace paddock::schemas::mp
