#include "paddock/agent/protocol.h"

#include <msgpack.hpp>

#include <algorithm>
#include <exception>
#include <limits>

namespace paddock::runtime::agent {
namespace {

// Thrown inside the decoders only; decode_request / decode_reply catch it (and std::exception).
struct Failure {
  std::string field;
  std::string reason;
};

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

[[noreturn]] void wrong_type(const std::string& path, const char* want, const msgpack::object& o) {
  throw Failure{path, std::string("expected ") + want + ", got " + type_name(o.type)};
}

std::string too_long(size_t max) { return "longer than " + std::to_string(max) + " bytes"; }

// Strings are referenced in place: decoders copy what they keep before the input goes away.
bool reference_strings(msgpack::type::object_type, std::size_t, void*) { return true; }

msgpack::object_handle unpack_bounded(std::string_view body) {
  if (body.size() > limits::kMaxFrameBytes)
    throw Failure{"frame", too_long(limits::kMaxFrameBytes)};
  if (body.empty()) throw Failure{"body", "empty"};
  const msgpack::unpack_limit limit(limits::kMaxArray, limits::kMaxMap, limits::kMaxStr,
                                    limits::kMaxBin, /*ext=*/0, limits::kMaxDepth);
  std::size_t offset = 0;
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(body.data(), body.size(), offset, reference_strings, nullptr, limit);
  } catch (const msgpack::depth_size_overflow&) {
    throw Failure{"body", "nesting deeper than " + std::to_string(limits::kMaxDepth)};
  } catch (const msgpack::size_overflow& e) {
    throw Failure{"body", std::string("msgpack limit exceeded (") + e.what() + ")"};
  } catch (const msgpack::insufficient_bytes&) {
    throw Failure{"body", "truncated msgpack"};
  } catch (const std::exception& e) {
    throw Failure{"body", std::string("malformed msgpack: ") + e.what()};
  }
  if (offset != body.size()) throw Failure{"body", "trailing bytes after the msgpack object"};
  return handle;
}

std::string as_str(const msgpack::object& o, const std::string& path, size_t max_len) {
  if (o.type != msgpack::type::STR) wrong_type(path, "string", o);
  if (o.via.str.size > max_len) throw Failure{path, too_long(max_len)};
  return std::string(o.via.str.ptr, o.via.str.size);
}

std::string no_nul(std::string s, const std::string& path) {
  if (s.find('\0') != std::string::npos) throw Failure{path, "contains NUL"};
  return s;
}

const msgpack::object_array& as_array(const msgpack::object& o, const std::string& path,
                                      size_t max_count) {
  if (o.type != msgpack::type::ARRAY) wrong_type(path, "array", o);
  if (o.via.array.size > max_count) {
    throw Failure{path, "more than " + std::to_string(max_count) + " entries"};
  }
  return o.via.array;
}

// The string keys of one msgpack map, looked up by name; a key given twice is refused. Absent
// and nil fields take their default.
class Map {
 public:
  Map(const msgpack::object& map, std::string path) : path_(std::move(path)) {
    const std::string here = path_.empty() ? "body" : path_;
    if (map.type != msgpack::type::MAP) wrong_type(here, "map", map);
    for (uint32_t i = 0; i < map.via.map.size; ++i) {
      const auto& kv = map.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) throw Failure{here, "map key is not a string"};
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (find(key) != nullptr) throw Failure{key.empty() ? here : path_of(key), "duplicate key"};
      entries_.emplace_back(key, &kv.val);
    }
  }

  const msgpack::object* find(std::string_view key) const {
    for (const auto& [k, v] : entries_) {
      if (k == key) return v->type == msgpack::type::NIL ? nullptr : v;
    }
    return nullptr;
  }
  std::string path_of(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  const msgpack::object& require(std::string_view key) const {
    const msgpack::object* o = find(key);
    if (o == nullptr) throw Failure{path_of(key), "required"};
    return *o;
  }

  std::string str(std::string_view key, size_t max_len, bool required = false) const {
    const msgpack::object* o = required ? &require(key) : find(key);
    return o == nullptr ? std::string() : no_nul(as_str(*o, path_of(key), max_len), path_of(key));
  }
  // msgpack bin, or str (a peer written in another language may send either).
  std::string bytes(std::string_view key, size_t max_len) const {
    const msgpack::object* o = find(key);
    if (o == nullptr) return {};
    if (o->type == msgpack::type::STR) return as_str(*o, path_of(key), max_len);
    if (o->type != msgpack::type::BIN) wrong_type(path_of(key), "bytes", *o);
    if (o->via.bin.size > max_len) throw Failure{path_of(key), too_long(max_len)};
    return std::string(o->via.bin.ptr, o->via.bin.size);
  }
  uint64_t uint(std::string_view key, uint64_t min, uint64_t max, uint64_t fallback,
                bool required = false) const {
    const msgpack::object* o = required ? &require(key) : find(key);
    if (o == nullptr) return fallback;
    const auto range = [&] {
      return "must be between " + std::to_string(min) + " and " + std::to_string(max);
    };
    if (o->type == msgpack::type::NEGATIVE_INTEGER) throw Failure{path_of(key), range()};
    if (o->type != msgpack::type::POSITIVE_INTEGER) wrong_type(path_of(key), "integer", *o);
    if (o->via.u64 < min || o->via.u64 > max) {
      throw Failure{path_of(key), range() + ", got " + std::to_string(o->via.u64)};
    }
    return o->via.u64;
  }
  int32_t int32(std::string_view key) const {
    const msgpack::object* o = find(key);
    if (o == nullptr) return 0;
    constexpr int64_t kMin = std::numeric_limits<int32_t>::min();
    constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
    const bool fits =
        (o->type == msgpack::type::NEGATIVE_INTEGER && o->via.i64 >= kMin) ||
        (o->type == msgpack::type::POSITIVE_INTEGER && o->via.u64 <= static_cast<uint64_t>(kMax));
    if (o->type != msgpack::type::NEGATIVE_INTEGER && o->type != msgpack::type::POSITIVE_INTEGER) {
      wrong_type(path_of(key), "integer", *o);
    }
    if (!fits) throw Failure{path_of(key), "out of the 32-bit range"};
    return static_cast<int32_t>(o->via.i64);
  }
  bool boolean(std::string_view key, bool fallback, bool required = false) const {
    const msgpack::object* o = required ? &require(key) : find(key);
    if (o == nullptr) return fallback;
    if (o->type != msgpack::type::BOOLEAN) wrong_type(path_of(key), "bool", *o);
    return o->via.boolean;
  }
  // An array of maps: fn(Map) for each element.
  template <class Fn>
  void each_map(std::string_view key, size_t max_count, Fn&& fn) const {
    const msgpack::object* o = find(key);
    if (o == nullptr) return;
    const std::string p = path_of(key);
    const auto& arr = as_array(*o, p, max_count);
    for (uint32_t i = 0; i < arr.size; ++i) fn(Map(arr.ptr[i], p + "[" + std::to_string(i) + "]"));
  }
  // An array of strings; `total` bounds their summed length.
  std::vector<std::string> strings(std::string_view key, size_t max_count, size_t max_len,
                                   size_t total) const {
    const msgpack::object* o = find(key);
    if (o == nullptr) return {};
    const std::string p = path_of(key);
    const auto& arr = as_array(*o, p, max_count);
    std::vector<std::string> out;
    size_t sum = 0;
    for (uint32_t i = 0; i < arr.size; ++i) {
      const std::string pi = p + "[" + std::to_string(i) + "]";
      out.push_back(no_nul(as_str(arr.ptr[i], pi, max_len), pi));
      sum += out.back().size();
      if (sum > total) throw Failure{p, too_long(total) + " in all"};
    }
    return out;
  }

 private:
  std::string path_;
  std::vector<std::pair<std::string_view, const msgpack::object*>> entries_;
};

// A path relative to the job's working directory that cannot leave it.
std::string relative_path(std::string p, const std::string& where) {
  if (p.empty()) throw Failure{where, "empty"};
  if (p.front() == '/') throw Failure{where, "must be relative"};
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    const std::string_view part(p.data() + start, end - start);
    if (part.empty() || part == "." || part == "..") {
      throw Failure{where, "no '..', '.' or empty parts allowed"};
    }
    start = end + 1;
  }
  return p;
}

std::string relative_path(const Map& m, std::string_view key) {
  return relative_path(m.str(key, limits::kMaxPath, /*required=*/true), m.path_of(key));
}

uint64_t header(const Map& m) {
  const uint64_t v = m.uint("v", 0, std::numeric_limits<uint64_t>::max(), 0, /*required=*/true);
  if (v != kProtocolVersion) {
    throw Failure{"v", "unsupported version " + std::to_string(v) + " (this side speaks " +
                           std::to_string(kProtocolVersion) + ")"};
  }
  return m.uint("id", 0, std::numeric_limits<uint64_t>::max(), 0, /*required=*/true);
}

// The id, if the body is a map with a readable "id", so that an error can answer it.
uint64_t id_of(std::string_view body) {
  try {
    const auto handle = unpack_bounded(body);
    return Map(handle.get(), "").uint("id", 0, std::numeric_limits<uint64_t>::max(), 0);
  } catch (...) {
    return 0;
  }
}

ExecCommand decode_exec(const Map& m) {
  ExecCommand c;
  c.argv = m.strings("argv", limits::kMaxArgv, limits::kMaxArg, limits::kMaxArgvTotal);
  c.script = m.str("script", limits::kMaxScript);
  if (!c.argv.empty() && !c.script.empty()) throw Failure{"script", "not allowed with argv"};
  if (c.argv.empty() && c.script.empty()) throw Failure{"argv", "required (or script)"};
  if (!c.argv.empty() && c.argv[0].empty()) throw Failure{"argv[0]", "empty"};
  if (const msgpack::object* env = m.find("env")) {
    if (env->type != msgpack::type::MAP) wrong_type("env", "map", *env);
    if (env->via.map.size > limits::kMaxEnv) {
      throw Failure{"env", "more than " + std::to_string(limits::kMaxEnv) + " entries"};
    }
    for (uint32_t i = 0; i < env->via.map.size; ++i) {
      const auto& kv = env->via.map.ptr[i];
      std::string k = no_nul(as_str(kv.key, "env", limits::kMaxEnvKey), "env");
      if (k.empty() || k.find('=') != std::string::npos) {
        throw Failure{"env", "name '" + k + "' is empty or contains '='"};
      }
      const std::string pk = "env." + k;
      std::string v = no_nul(as_str(kv.val, pk, limits::kMaxEnvValue), pk);
      if (!c.env.emplace(std::move(k), std::move(v)).second) throw Failure{pk, "duplicate key"};
    }
  }
  c.cwd = m.str("cwd", limits::kMaxPath);
  if (!c.cwd.empty() && c.cwd.front() != '/') throw Failure{"cwd", "must be absolute"};
  c.stdin_data = m.bytes("stdin", limits::kMaxStdin);
  size_t total = 0;
  m.each_map("files", limits::kMaxFiles, [&](const Map& f) {
    FileIn file;
    file.path = relative_path(f, "path");
    file.mode = static_cast<uint32_t>(f.uint("mode", 0, 07777, 0644));
    file.data = f.bytes("data", limits::kMaxFilesTotal);
    total += file.data.size();
    if (total > limits::kMaxFilesTotal)
      throw Failure{"files", too_long(limits::kMaxFilesTotal) + " in all"};
    c.files.push_back(std::move(file));
  });
  if (const msgpack::object* out = m.find("files_out")) {
    const auto& arr = as_array(*out, "files_out", limits::kMaxFiles);
    for (uint32_t i = 0; i < arr.size; ++i) {
      const std::string where = "files_out[" + std::to_string(i) + "]";
      c.files_out.push_back(
          relative_path(no_nul(as_str(arr.ptr[i], where, limits::kMaxPath), where), where));
    }
  }
  c.timeout_ms = static_cast<uint32_t>(m.uint("timeout_ms", 1, limits::kMaxTimeoutMs, 30'000));
  c.output_cap = static_cast<uint32_t>(m.uint("output_cap", 0, limits::kMaxOutputCap, 1u << 20));
  c.files_out_cap =
      static_cast<uint32_t>(m.uint("files_out_cap", 0, limits::kMaxFilesOutCap, 1u << 20));
  return c;
}

// The limits of a refresh's fields (schemas/PROTOCOL.md, "refresh"), for the decoder and for
// check_refresh().
void check_refresh_fields(const RefreshCommand& c) {
  if (c.entropy.size() < limits::kMinEntropy) {
    throw Failure{"entropy", "shorter than " + std::to_string(limits::kMinEntropy) + " bytes"};
  }
  if (c.entropy.size() > limits::kMaxEntropy)
    throw Failure{"entropy", too_long(limits::kMaxEntropy)};
  if (c.unix_time_ns == 0) throw Failure{"unix_time_ns", "must not be 0"};
  const std::string& h = c.hostname;
  if (h.empty()) throw Failure{"hostname", "empty"};
  if (h.size() > limits::kMaxHostname) throw Failure{"hostname", too_long(limits::kMaxHostname)};
  const auto allowed = [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-';
  };
  if (!std::all_of(h.begin(), h.end(), allowed)) {
    throw Failure{"hostname", "only A-Z, a-z, 0-9 and '-' allowed"};
  }
  if (h.front() == '-') throw Failure{"hostname", "must not start with '-'"};
}

RefreshCommand decode_refresh(const Map& m) {
  RefreshCommand c;
  m.require("entropy");  // bytes() takes an absent field for an empty one
  c.entropy = m.bytes("entropy", limits::kMaxEntropy);
  c.unix_time_ns =
      m.uint("unix_time_ns", 0, std::numeric_limits<uint64_t>::max(), 0, /*required=*/true);
  c.hostname = m.str("hostname", limits::kMaxHostname, /*required=*/true);
  check_refresh_fields(c);
  return c;
}

ExecOutcome decode_outcome(const Map& m) {
  ExecOutcome r;
  r.exit_code = m.int32("exit_code");
  r.signal = m.int32("signal");
  r.stdout_data = m.bytes("stdout", limits::kMaxOutputCap);
  r.stderr_data = m.bytes("stderr", limits::kMaxOutputCap);
  r.stdout_truncated = m.boolean("stdout_truncated", false);
  r.stderr_truncated = m.boolean("stderr_truncated", false);
  r.timed_out = m.boolean("timed_out", false);
  r.oom_killed = m.boolean("oom_killed", false);  // absent: an agent that predates it
  size_t total = 0;
  m.each_map("files", limits::kMaxFiles, [&](const Map& f) {
    FileOut file;
    file.path = relative_path(f, "path");
    file.data = f.bytes("data", limits::kMaxFilesOutCap);
    file.truncated = f.boolean("truncated", false);
    total += file.data.size();
    if (total > limits::kMaxFilesOutTotal) {
      throw Failure{"files", too_long(limits::kMaxFilesOutTotal) + " in all"};
    }
    r.files.push_back(std::move(file));
  });
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  r.cpu_us = m.uint("cpu_us", 0, kMax, 0);
  r.peak_memory_kib = m.uint("peak_memory_kib", 0, kMax, 0);
  r.exec_us = m.uint("exec_us", 0, kMax, 0);
  return r;
}

// Runs a decoder body; a Failure (or anything msgpack throws) becomes a DecodeError that carries
// the message's id when it could be read.
template <class T, class Fn>
Decoded<T> guarded(std::string_view body, Fn&& fn) {
  try {
    return Decoded<T>(fn());
  } catch (const Failure& f) {
    return Decoded<T>(DecodeError{f.field, f.reason, id_of(body)});
  } catch (const std::exception& e) {
    return Decoded<T>(
        DecodeError{"body", std::string("malformed msgpack: ") + e.what(), id_of(body)});
  }
}

// ---- encoding -------------------------------------------------------------------------------

using Packer = msgpack::packer<msgpack::sbuffer>;

void pack_str(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}
void pack_bin(Packer& pk, std::string_view s) {
  pk.pack_bin(static_cast<uint32_t>(s.size()));
  pk.pack_bin_body(s.data(), static_cast<uint32_t>(s.size()));
}
void pack_header(Packer& pk, uint32_t entries, uint64_t id) {
  pk.pack_map(entries + 2);
  pack_str(pk, "v");
  pk.pack_uint64(kProtocolVersion);
  pack_str(pk, "id");
  pk.pack_uint64(id);
}

void pack_exec(Packer& pk, const ExecCommand& c) {
  // Nine fields: argv or script, env, cwd, stdin, files, files_out and the three limits.
  if (c.script.empty()) {
    pack_str(pk, "argv");
    pk.pack_array(static_cast<uint32_t>(c.argv.size()));
    for (const auto& a : c.argv) pack_str(pk, a);
  } else {
    pack_str(pk, "script");
    pack_str(pk, c.script);
  }
  pack_str(pk, "env");
  pk.pack_map(static_cast<uint32_t>(c.env.size()));
  for (const auto& [k, v] : c.env) {
    pack_str(pk, k);
    pack_str(pk, v);
  }
  pack_str(pk, "cwd");
  pack_str(pk, c.cwd);
  pack_str(pk, "stdin");
  pack_bin(pk, c.stdin_data);
  pack_str(pk, "files");
  pk.pack_array(static_cast<uint32_t>(c.files.size()));
  for (const auto& f : c.files) {
    pk.pack_map(3);
    pack_str(pk, "path");
    pack_str(pk, f.path);
    pack_str(pk, "mode");
    pk.pack_uint32(f.mode);
    pack_str(pk, "data");
    pack_bin(pk, f.data);
  }
  pack_str(pk, "files_out");
  pk.pack_array(static_cast<uint32_t>(c.files_out.size()));
  for (const auto& p : c.files_out) pack_str(pk, p);
  pack_str(pk, "timeout_ms");
  pk.pack_uint32(c.timeout_ms);
  pack_str(pk, "output_cap");
  pk.pack_uint32(c.output_cap);
  pack_str(pk, "files_out_cap");
  pk.pack_uint32(c.files_out_cap);
}

void pack_outcome(Packer& pk, const ExecOutcome& r) {
  pack_str(pk, "exit_code");
  pk.pack_int32(r.exit_code);
  pack_str(pk, "signal");
  pk.pack_int32(r.signal);
  pack_str(pk, "stdout");
  pack_bin(pk, r.stdout_data);
  pack_str(pk, "stderr");
  pack_bin(pk, r.stderr_data);
  pack_str(pk, "stdout_truncated");
  pk.pack(r.stdout_truncated);
  pack_str(pk, "stderr_truncated");
  pk.pack(r.stderr_truncated);
  pack_str(pk, "timed_out");
  pk.pack(r.timed_out);
  pack_str(pk, "oom_killed");
  pk.pack(r.oom_killed);
  pack_str(pk, "files");
  pk.pack_array(static_cast<uint32_t>(r.files.size()));
  for (const auto& f : r.files) {
    pk.pack_map(3);
    pack_str(pk, "path");
    pack_str(pk, f.path);
    pack_str(pk, "data");
    pack_bin(pk, f.data);
    pack_str(pk, "truncated");
    pk.pack(f.truncated);
  }
  pack_str(pk, "cpu_us");
  pk.pack_uint64(r.cpu_us);
  pack_str(pk, "peak_memory_kib");
  pk.pack_uint64(r.peak_memory_kib);
  pack_str(pk, "exec_us");
  pk.pack_uint64(r.exec_us);
}

void pack_refresh(Packer& pk, const RefreshCommand& c) {
  pack_str(pk, "entropy");
  pack_bin(pk, c.entropy);
  pack_str(pk, "unix_time_ns");
  pk.pack_uint64(c.unix_time_ns);
  pack_str(pk, "hostname");
  pack_str(pk, c.hostname);
}

std::string take(msgpack::sbuffer& buf) { return std::string(buf.data(), buf.size()); }

}  // namespace

std::string_view op_name(Op op) {
  switch (op) {
    case Op::kPing:
      return "ping";
    case Op::kExec:
      return "exec";
    case Op::kShutdown:
      return "shutdown";
    case Op::kRefresh:
      return "refresh";
  }
  return "unknown";
}

std::string_view reply_kind_name(ReplyKind kind) {
  switch (kind) {
    case ReplyKind::kPong:
      return "pong";
    case ReplyKind::kResult:
      return "result";
    case ReplyKind::kShutdown:
      return "shutdown";
    case ReplyKind::kError:
      return "error";
    case ReplyKind::kRefreshed:
      return "refreshed";
  }
  return "unknown";
}

std::string check_refresh(const RefreshCommand& command) {
  try {
    check_refresh_fields(command);
  } catch (const Failure& f) {
    return f.field + ": " + f.reason;
  }
  return {};
}

std::string encode_request(const Request& request) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  // op, then the nine exec fields or the three refresh fields.
  const uint32_t fields = request.op == Op::kExec ? 9 : request.op == Op::kRefresh ? 3 : 0;
  pack_header(pk, 1 + fields, request.id);
  pack_str(pk, "op");
  pack_str(pk, op_name(request.op));
  if (request.op == Op::kExec) pack_exec(pk, request.exec);
  if (request.op == Op::kRefresh) pack_refresh(pk, request.refresh);
  return take(buf);
}

std::string encode_reply(const Reply& reply) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  switch (reply.kind) {
    case ReplyKind::kPong:
      pack_header(pk, 3, reply.id);
      pack_str(pk, "ok");
      pk.pack_true();
      pack_str(pk, "op");
      pack_str(pk, "pong");
      pack_str(pk, "agent_version");
      pack_str(pk, reply.agent_version);
      break;
    case ReplyKind::kResult:
      pack_header(pk, 2 + 12, reply.id);  // ok, op, the twelve fields of the outcome
      pack_str(pk, "ok");
      pk.pack_true();
      pack_str(pk, "op");
      pack_str(pk, "result");
      pack_outcome(pk, reply.result);
      break;
    case ReplyKind::kShutdown:
      pack_header(pk, 2, reply.id);
      pack_str(pk, "ok");
      pk.pack_true();
      pack_str(pk, "op");
      pack_str(pk, "shutdown");
      break;
    case ReplyKind::kError:
      pack_header(pk, 2, reply.id);
      pack_str(pk, "ok");
      pk.pack_false();
      pack_str(pk, "error");
      pack_str(pk, reply.error.substr(0, limits::kMaxError));
      break;
    case ReplyKind::kRefreshed:
      pack_header(pk, 5, reply.id);
      pack_str(pk, "ok");
      pk.pack_true();
      pack_str(pk, "op");
      pack_str(pk, "refreshed");
      pack_str(pk, "boot_id");
      pack_str(pk, reply.refreshed.boot_id.substr(0, limits::kMaxBootId));
      pack_str(pk, "hostname");
      pack_str(pk, reply.refreshed.hostname.substr(0, limits::kMaxHostname));
      pack_str(pk, "applied");
      pk.pack(reply.refreshed.applied);
      break;
  }
  return take(buf);
}

Decoded<Request> decode_request(std::string_view body) {
  return guarded<Request>(body, [&] {
    const auto handle = unpack_bounded(body);
    const Map m(handle.get(), "");
    Request r;
    r.id = header(m);
    const std::string op = m.str("op", 16, /*required=*/true);
    if (op == "ping") {
      r.op = Op::kPing;
    } else if (op == "exec") {
      r.op = Op::kExec;
      r.exec = decode_exec(m);
    } else if (op == "shutdown") {
      r.op = Op::kShutdown;
    } else if (op == "refresh") {
      r.op = Op::kRefresh;
      r.refresh = decode_refresh(m);
    } else {
      throw Failure{"op", "unknown op '" + op + "'"};
    }
    return r;
  });
}

Decoded<Reply> decode_reply(std::string_view body) {
  return guarded<Reply>(body, [&] {
    const auto handle = unpack_bounded(body);
    const Map m(handle.get(), "");
    Reply r;
    r.id = header(m);
    if (!m.boolean("ok", true, /*required=*/true)) {
      r.kind = ReplyKind::kError;
      r.error = m.str("error", limits::kMaxError, /*required=*/true);
      return r;
    }
    const std::string op = m.str("op", 16, /*required=*/true);
    if (op == "pong") {
      r.kind = ReplyKind::kPong;
      r.agent_version = m.str("agent_version", limits::kMaxAgentVersion);
    } else if (op == "result") {
      r.kind = ReplyKind::kResult;
      r.result = decode_outcome(m);
    } else if (op == "shutdown") {
      r.kind = ReplyKind::kShutdown;
    } else if (op == "refreshed") {
      r.kind = ReplyKind::kRefreshed;
      r.refreshed.boot_id = m.str("boot_id", limits::kMaxBootId, /*required=*/true);
      r.refreshed.hostname = m.str("hostname", limits::kMaxHostname, /*required=*/true);
      r.refreshed.applied = m.boolean("applied", false, /*required=*/true);
    } else {
      throw Failure{"op", "unknown reply op '" + op + "'"};
    }
    return r;
  });
}

std::string frame(std::string_view body) {
  const auto n = static_cast<uint32_t>(body.size());
  std::string out;
  out.reserve(limits::kFrameHeaderBytes + body.size());
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(body);
  return out;
}

void FrameReader::feed(std::string_view bytes) {
  if (skip_ > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, bytes.size()));
    skip_ -= n;
    bytes.remove_prefix(n);
  }
  if (bytes.empty()) return;
  // Drop what was taken before growing, so the buffer holds at most about one frame.
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

std::optional<Decoded<std::string>> FrameReader::next() {
  if (buffered() < limits::kFrameHeaderBytes) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
  const uint64_t n = (uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | p[3];
  if (n == 0) {
    pos_ += limits::kFrameHeaderBytes;
    return Decoded<std::string>(DecodeError{"frame", "empty (length 0)", 0});
  }
  if (n > limits::kMaxFrameBytes) {
    // Skip the refused frame's bytes, those buffered now and those still to come.
    pos_ += limits::kFrameHeaderBytes;
    const uint64_t here = std::min<uint64_t>(n, buffered());
    pos_ += static_cast<size_t>(here);
    skip_ = n - here;
    return Decoded<std::string>(DecodeError{
        "frame",
        "length " + std::to_string(n) + " exceeds " + std::to_string(limits::kMaxFrameBytes), 0});
  }
  if (buffered() - limits::kFrameHeaderBytes < n) return std::nullopt;
  std::string body = buf_.substr(pos_ + limits::kFrameHeaderBytes, static_cast<size_t>(n));
  pos_ += limits::kFrameHeaderBytes + static_cast<size_t>(n);
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  return Decoded<std::string>(std::move(body));
}

void FrameReader::reset() {
  buf_.clear();
  buf_.shrink_to_fit();
  pos_ = 0;
  skip_ = 0;
}

}  // namespace paddock::runtime::agent
