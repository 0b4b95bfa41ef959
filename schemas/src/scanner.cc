#include "scanner.h"

#include <string>

#include "paddock/schemas/limits.h"
#include "reader.h"

namespace paddock::schemas::detail {
namespace {

[[noreturn]] void malformed(const std::string& reason) { throw Failure{"body", reason}; }

}  // namespace

const char* kind_name(Head::Kind kind) {
  switch (kind) {
    case Head::Kind::kNil:
      return "nil";
    case Head::Kind::kBool:
      return "bool";
    case Head::Kind::kUint:
    case Head::Kind::kNegInt:
      return "integer";
    case Head::Kind::kFloat:
      return "float";
    case Head::Kind::kStr:
      return "string";
    case Head::Kind::kBin:
      return "bytes";
    case Head::Kind::kArray:
      return "array";
    case Head::Kind::kMap:
      return "map";
  }
  return "unknown";
}

Scanner::Scanner(std::string_view bytes) : bytes_(bytes) {
  if (bytes.size() > limits::kMaxFrameBytes) {
    malformed("larger than " + std::to_string(limits::kMaxFrameBytes) + " bytes");
  }
  if (bytes.empty()) throw Failure{"body", "empty"};
}

std::string_view Scanner::take(size_t n) {
  if (bytes_.size() - pos_ < n) malformed("truncated msgpack");
  const std::string_view out(bytes_.data() + pos_, n);
  pos_ += n;
  return out;
}

template <class T>
T Scanner::big_endian(size_t n) {
  const std::string_view b = take(n);
  T v = 0;
  for (const char c : b) v = static_cast<T>((v << 8) | static_cast<uint8_t>(c));
  return v;
}

Head Scanner::next_wide(uint32_t level) {
  Head h;
  using K = Head::Kind;
  const auto byte = static_cast<uint8_t>(take(1)[0]);
  auto container = [&](K kind, uint32_t count) {
    // msgpack-c's order: the entry limit, then the depth (of an empty container too).
    const size_t limit = kind == K::kArray ? limits::kMaxArray : limits::kMaxMap;
    if (count > limit) {
      malformed(std::string("msgpack limit exceeded (") + (kind == K::kArray ? "array" : "map") +
                " size overflow)");
    }
    if (level > limits::kMaxDepth) {
      malformed("nesting deeper than " + std::to_string(limits::kMaxDepth));
    }
    h.kind = kind;
    h.count = count;
  };
  auto sized = [&](K kind, uint32_t size) {
    h.kind = kind;
    h.bytes = take(size);
    if (kind == K::kStr && size > limits::kMaxStr)
      malformed("msgpack limit exceeded (str size overflow)");
    if (kind == K::kBin && size > limits::kMaxBin)
      malformed("msgpack limit exceeded (bin size overflow)");
  };
  // Ext types are refused (Unpacked's ext limit is 0, and an ext's size counts its type).
  auto ext = [&](uint32_t size) {
    take(1);  // its type
    take(size);
    malformed("msgpack limit exceeded (ext size overflow)");
  };
  if (byte <= 0x7f) {
    h.kind = K::kUint;
    h.uint = byte;
  } else if (byte <= 0x8f) {
    container(K::kMap, byte & 0x0f);
  } else if (byte <= 0x9f) {
    container(K::kArray, byte & 0x0f);
  } else if (byte <= 0xbf) {
    sized(K::kStr, byte & 0x1f);
  } else if (byte >= 0xe0) {
    h.kind = K::kNegInt;
    h.neg = static_cast<int8_t>(byte);
  } else {
    switch (byte) {
      case 0xc0:
        h.kind = K::kNil;
        break;
      case 0xc2:
      case 0xc3:
        h.kind = K::kBool;
        h.boolean = byte == 0xc3;
        break;
      case 0xc4:
        sized(K::kBin, big_endian<uint32_t>(1));
        break;
      case 0xc5:
        sized(K::kBin, big_endian<uint32_t>(2));
        break;
      case 0xc6:
        sized(K::kBin, big_endian<uint32_t>(4));
        break;
      case 0xc7:
        ext(big_endian<uint32_t>(1));
        break;
      case 0xc8:
        ext(big_endian<uint32_t>(2));
        break;
      case 0xc9:
        ext(big_endian<uint32_t>(4));
        break;
      case 0xca:
        h.kind = K::kFloat;
        take(4);
        break;
      case 0xcb:
        h.kind = K::kFloat;
        take(8);
        break;
      case 0xcc:
        h.kind = K::kUint;
        h.uint = big_endian<uint64_t>(1);
        break;
      case 0xcd:
        h.kind = K::kUint;
        h.uint = big_endian<uint64_t>(2);
        break;
      case 0xce:
        h.kind = K::kUint;
        h.uint = big_endian<uint64_t>(4);
        break;
      case 0xcf:
        h.kind = K::kUint;
        h.uint = big_endian<uint64_t>(8);
        break;
      case 0xd0:
      case 0xd1:
      case 0xd2:
      case 0xd3: {
        // Signed widths: msgpack-c calls a non-negative value a positive integer.
        const size_t n = size_t{1} << (byte - 0xd0);
        const uint64_t raw = big_endian<uint64_t>(n);
        const unsigned shift = static_cast<unsigned>(64 - 8 * n);
        const auto v = static_cast<int64_t>(raw << shift) >> shift;
        if (v >= 0) {
          h.kind = K::kUint;
          h.uint = static_cast<uint64_t>(v);
        } else {
          h.kind = K::kNegInt;
          h.neg = v;
        }
        break;
      }
      case 0xd4:
        ext(1);
        break;
      case 0xd5:
        ext(2);
        break;
      case 0xd6:
        ext(4);
        break;
      case 0xd7:
        ext(8);
        break;
      case 0xd8:
        ext(16);
        break;
      case 0xd9:
        sized(K::kStr, big_endian<uint32_t>(1));
        break;
      case 0xda:
        sized(K::kStr, big_endian<uint32_t>(2));
        break;
      case 0xdb:
        sized(K::kStr, big_endian<uint32_t>(4));
        break;
      case 0xdc:
        container(K::kArray, big_endian<uint32_t>(2));
        break;
      case 0xdd:
        container(K::kArray, big_endian<uint32_t>(4));
        break;
      case 0xde:
        container(K::kMap, big_endian<uint32_t>(2));
        break;
      case 0xdf:
        container(K::kMap, big_endian<uint32_t>(4));
        break;
      default:
        malformed("malformed msgpack: parse error");  // 0xc1, never used
    }
  }
  return h;
}

void Scanner::skip_rest(const Head& head, uint32_t level) {
  if (head.kind != Head::Kind::kArray && head.kind != Head::Kind::kMap) return;
  // Recursion is bounded: a non-empty container deeper than kMaxDepth fails in next().
  const uint64_t values = head.kind == Head::Kind::kMap ? uint64_t{head.count} * 2 : head.count;
  for (uint64_t i = 0; i < values; ++i) skip_rest(next(level + 1), level + 1);
}

void Scanner::expect_end() const {
  if (pos_ != bytes_.size()) malformed("trailing bytes after the msgpack object");
}

}  // namespace paddock::schemas::detail
