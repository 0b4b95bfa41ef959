// Internal: a msgpack reader that walks the encoded bytes in place, one value's head at a time,
// without building an object tree and without allocating (only a failure allocates its message).
// It applies the unpack limits as Unpacked (reader.h; msgpack-c's create_object_visitor) does, so
// that a body one accepts the other accepts too: array and map entries, str and bin sizes, nesting
// depth (of every container, empty ones too), ext types refused, truncation, the unused byte 0xc1
// and trailing bytes.
#pragma once

#include <cstdint>
#include <string_view>

namespace paddock::schemas::detail {

// A value's head. Containers are not entered: their entries follow in the stream.
struct Head {
  enum class Kind : uint8_t { kNil, kBool, kUint, kNegInt, kFloat, kStr, kBin, kArray, kMap };
  Kind kind = Kind::kNil;
  bool boolean = false;
  uint64_t uint = 0;       // kUint (non-negative integers of any msgpack width)
  int64_t neg = 0;         // kNegInt
  std::string_view bytes;  // kStr, kBin
  uint32_t count = 0;      // kArray entries, kMap pairs
};

const char* kind_name(Head::Kind kind);

class Scanner {
 public:
  // Throws Failure for an empty body or one over the frame limit.
  explicit Scanner(std::string_view bytes);

  // Reads the head of the next value, at nesting level `level` (the body's own value is 1).
  // Throws Failure (field "body") on malformed or truncated msgpack, or a broken limit.
  // Inline for the one-byte heads most fields have (small integers, short strings' headers, nil,
  // bools); the rest in next_wide().
  Head next(uint32_t level) {
    if (pos_ < bytes_.size()) {
      const auto byte = static_cast<uint8_t>(bytes_[pos_]);
      Head h;
      if (byte <= 0x7f) {
        ++pos_;
        h.kind = Head::Kind::kUint;
        h.uint = byte;
        return h;
      }
      if (byte >= 0xa0 && byte <= 0xbf && bytes_.size() - pos_ > (byte & 0x1fu)) {
        h.kind = Head::Kind::kStr;  // at most 31 bytes: within the str limit
        h.bytes = bytes_.substr(pos_ + 1, byte & 0x1fu);
        pos_ += 1 + (byte & 0x1fu);
        return h;
      }
      if (byte == 0xc0 || byte == 0xc2 || byte == 0xc3) {
        ++pos_;
        h.kind = byte == 0xc0 ? Head::Kind::kNil : Head::Kind::kBool;
        h.boolean = byte == 0xc3;
        return h;
      }
    }
    return next_wide(level);
  }
  // Skips a value whose head was just read, entries included.
  void skip_rest(const Head& head, uint32_t level);
  // Throws Failure unless every byte was read.
  void expect_end() const;

 private:
  Head next_wide(uint32_t level);
  std::string_view take(size_t n);
  template <class T>
  T big_endian(size_t n);

  std::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace paddock::schemas::detail
