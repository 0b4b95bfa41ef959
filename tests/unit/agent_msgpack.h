// Agent protocol bodies built by hand with msgpack, for tests that send what the encoders never
// would (wrong types, duplicate keys, deep nesting).
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace paddock::testing {

using Packer = msgpack::packer<msgpack::sbuffer>;

// A msgpack map: v and id (unless !header), then exactly `n` key/value pairs packed by `fields`.
inline std::string body(uint32_t n, const std::function<void(Packer&)>& fields, uint64_t id = 7,
                        bool header = true) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(n + (header ? 2 : 0));
  if (header) {
    pk.pack(std::string("v"));
    pk.pack(1);
    pk.pack(std::string("id"));
    pk.pack(id);
  }
  fields(pk);
  return std::string(buf.data(), buf.size());
}

inline void kv(Packer& pk, const std::string& k, const auto& v) {
  pk.pack(k);
  pk.pack(v);
}

// A key and a msgpack bin value.
inline void kv_bin(Packer& pk, const std::string& k, const std::string& data) {
  pk.pack(k);
  pk.pack_bin(static_cast<uint32_t>(data.size()));
  pk.pack_bin_body(data.data(), static_cast<uint32_t>(data.size()));
}

}  // namespace paddock::testing
