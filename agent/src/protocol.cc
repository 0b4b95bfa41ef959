#include "paddock/agent/protocol.h"

#include <algorithm>
#include <exception>
#include <limits>

#include "paddock/schemas/job_fields.h"
#include "paddock/schemas/msgpack_core.h"

namespace paddock::runtime::agent {
namespace {

// The bounded msgpack core, shared with the wire codec (paddock/schemas/msgpack_core.h).
namespace mp = schemas::mp;
using mp::as_array;
using mp::Failure;
using mp::MapWriter;
using mp::Text;
using mp::wrong_type;
// Absent and nil fields take their default; a key given twice is refused.
using Map = mp::Fields;

// This protocol's unpack limits. Its strings are Linux bytes (argv, paths, env), not held to
// UTF-8; a NUL is refused where the guest would hand the string to the kernel.
constexpr mp::Limits kUnpackLimits{limits::kMaxFrameBytes, limits::kMaxArray, limits::kMaxMap,
                                   limits::kMaxStr,        limits::kMaxBin,   limits::kMaxDepth,
                                   /*utf8=*/false};

std::string too_long(size_t max) { return "longer than " + std::to_string(max) + " bytes"; }

class Unpacked : public mp::Unpacked {
 public:
  explicit Unpacked(std::string_view body) : mp::Unpacked(body, kUnpackLimits) {}
  Map top() const { return Map(get(), "", /*utf8=*/false); }
};

std::string as_str(const msgpack::object& o, const std::string& path, size_t max_len) {
  return mp::as_str(o, path, max_len, /*utf8=*/false);
}

std::string no_nul(std::string s, const std::string& path) {
  if (s.find('\0') != std::string::npos) throw Failure{path, "contains NUL"};
  return s;
}

// A str field without NUL.
std::string text(const Map& m, std::string_view key, size_t max_len, bool required = false) {
  return no_nul(m.str(key, max_len, required), m.path_of(key));
}

// An array of strings without NUL; `total` bounds their summed length.
std::vector<std::string> strings(const Map& m, std::string_view key, size_t max_count,
                                 size_t max_len, size_t total) {
  const msgpack::object* o = m.given(key);
  if (o == nullptr) return {};
  const std::string p = m.path_of(key);
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
  return relative_path(text(m, key, limits::kMaxPath, /*required=*/true), m.path_of(key));
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
    const Unpacked h(body);
    return h.top().uint("id", 0, std::numeric_limits<uint64_t>::max(), 0);
  } catch (...) {
    return 0;
  }
}

ExecCommand decode_exec(const Map& m) {
  ExecCommand c;
  c.argv = strings(m, "argv", limits::kMaxArgv, limits::kMaxArg, limits::kMaxArgvTotal);
  c.script = text(m, "script", limits::kMaxScript);
  if (!c.argv.empty() && !c.script.empty()) throw Failure{"script", "not allowed with argv"};
  if (c.argv.empty() && c.script.empty()) throw Failure{"argv", "required (or script)"};
  if (!c.argv.empty() && c.argv[0].empty()) throw Failure{"argv[0]", "empty"};
  if (const msgpack::object* env = m.given("env")) {
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
  c.cwd = text(m, "cwd", limits::kMaxPath);
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
  if (const msgpack::object* out = m.given("files_out")) {
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
  c.stream = m.boolean("stream", false);
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
  c.hostname = text(m, "hostname", limits::kMaxHostname, /*required=*/true);
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
  mp::read_guest_usage(m, r.usage);  // the same entries as a JobResult's usage (job_fields.h)
  r.exec_us = m.uint("exec_us", 0, std::numeric_limits<uint64_t>::max(), 0);
  return r;
}

// Runs a decoder body; a Failure (or anything msgpack throws) becomes a DecodeError that carries
// the message's id when it could be read.
// Runs a decoder body; a Failure (or anything msgpack throws) becomes a DecodeError that carries
// the message's id when it could be read.
template <class T, class Fn>
Decoded<T> guarded(std::string_view body, Fn&& fn) {
  Decoded<T> d = mp::guarded<T>(std::forward<Fn>(fn));
  if (!d) d.error().id = id_of(body);
  return d;
}

// ---- encoding -------------------------------------------------------------------------------

// A map of this protocol: its str values packed as the bytes they are.
MapWriter writer() { return MapWriter(Text::kBytes); }

// Every message's first two entries.
void header(MapWriter& w, uint64_t id) { w.num("v", kProtocolVersion).num("id", id); }

std::string encode_file_in(const FileIn& f) {
  return writer().str("path", f.path).num("mode", f.mode).bin("data", f.data).finish();
}
std::string encode_file_out(const FileOut& f) {
  return writer()
      .str("path", f.path)
      .bin("data", f.data)
      .boolean("truncated", f.truncated)
      .finish();
}

void write_exec(MapWriter& w, const ExecCommand& c) {
  // argv or script, env, cwd, stdin, files, files_out and the three limits.
  if (c.script.empty()) {
    w.str_array("argv", c.argv);
  } else {
    w.str("script", c.script);
  }
  w.str_map("env", c.env)
      .str("cwd", c.cwd)
      .bin("stdin", c.stdin_data)
      .maps("files", c.files, encode_file_in)
      .str_array("files_out", c.files_out)
      .num("timeout_ms", c.timeout_ms)
      .num("output_cap", c.output_cap)
      .num("files_out_cap", c.files_out_cap);
  if (c.stream) w.boolean("stream", true);  // only when asked: older agents never see it
}

void write_outcome(MapWriter& w, const ExecOutcome& r) {
  w.num("exit_code", r.exit_code)
      .num("signal", r.signal)
      .bin("stdout", r.stdout_data)
      .bin("stderr", r.stderr_data)
      .boolean("stdout_truncated", r.stdout_truncated)
      .boolean("stderr_truncated", r.stderr_truncated)
      .boolean("timed_out", r.timed_out)
      .boolean("oom_killed", r.oom_killed)
      .maps("files", r.files, encode_file_out);
  mp::write_guest_usage(w, r.usage);  // the same entries as a JobResult's usage (job_fields.h)
  w.num("exec_us", r.exec_us);
}

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
    case ReplyKind::kOutput:
      return "output";
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
  MapWriter w = writer();
  header(w, request.id);
  w.str("op", op_name(request.op));
  if (request.op == Op::kExec) write_exec(w, request.exec);
  if (request.op == Op::kRefresh) {
    w.bin("entropy", request.refresh.entropy)
        .num("unix_time_ns", request.refresh.unix_time_ns)
        .str("hostname", request.refresh.hostname);
  }
  return w.finish();
}

std::string encode_reply(const Reply& reply) {
  MapWriter w = writer();
  header(w, reply.id);
  switch (reply.kind) {
    case ReplyKind::kPong:
      w.boolean("ok", true).str("op", "pong").str("agent_version", reply.agent_version);
      break;
    case ReplyKind::kResult:
      w.boolean("ok", true).str("op", "result");
      write_outcome(w, reply.result);
      break;
    case ReplyKind::kShutdown:
      w.boolean("ok", true).str("op", "shutdown");
      break;
    case ReplyKind::kError:
      w.boolean("ok", false)
          .str("error", std::string_view(reply.error).substr(0, limits::kMaxError));
      break;
    case ReplyKind::kOutput:
      w.boolean("ok", true)
          .str("op", "output")
          .str("stream", reply.output.stream == OutputStream::kStderr ? "stderr" : "stdout")
          .num("offset", reply.output.offset)
          .bin("data", reply.output.data);
      break;
    case ReplyKind::kRefreshed:
      w.boolean("ok", true)
          .str("op", "refreshed")
          .str("boot_id", std::string_view(reply.refreshed.boot_id).substr(0, limits::kMaxBootId))
          .str("hostname",
               std::string_view(reply.refreshed.hostname).substr(0, limits::kMaxHostname))
          .boolean("applied", reply.refreshed.applied);
      break;
  }
  return w.finish();
}

Decoded<Request> decode_request(std::string_view body) {
  return guarded<Request>(body, [&] {
    const Unpacked h(body);
    const Map m = h.top();
    Request r;
    r.id = header(m);
    const std::string op = text(m, "op", 16, /*required=*/true);
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
    const Unpacked h(body);
    const Map m = h.top();
    Reply r;
    r.id = header(m);
    if (!m.boolean("ok", true, /*required=*/true)) {
      r.kind = ReplyKind::kError;
      r.error = text(m, "error", limits::kMaxError, /*required=*/true);
      return r;
    }
    const std::string op = text(m, "op", 16, /*required=*/true);
    if (op == "pong") {
      r.kind = ReplyKind::kPong;
      r.agent_version = text(m, "agent_version", limits::kMaxAgentVersion);
    } else if (op == "result") {
      r.kind = ReplyKind::kResult;
      r.result = decode_outcome(m);
    } else if (op == "shutdown") {
      r.kind = ReplyKind::kShutdown;
    } else if (op == "output") {
      r.kind = ReplyKind::kOutput;
      const std::string stream = text(m, "stream", 8, /*required=*/true);
      if (stream != "stdout" && stream != "stderr") {
        throw Failure{"stream", "must be \"stdout\" or \"stderr\""};
      }
      r.output.stream = stream == "stderr" ? OutputStream::kStderr : OutputStream::kStdout;
      r.output.offset = m.uint("offset", 0, limits::kMaxOutputCap, 0, /*required=*/true);
      m.require("data");
      r.output.data = m.bytes("data", limits::kMaxOutputChunk);
      if (r.output.data.empty()) throw Failure{"data", "empty"};
      if (r.output.offset + r.output.data.size() > limits::kMaxOutputCap) {
        throw Failure{"data", "ends past the largest output cap"};
      }
    } else if (op == "refreshed") {
      r.kind = ReplyKind::kRefreshed;
      r.refreshed.boot_id = text(m, "boot_id", limits::kMaxBootId, /*required=*/true);
      r.refreshed.hostname = text(m, "hostname", limits::kMaxHostname, /*required=*/true);
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
