// The guest agent protocol (schemas/PROTOCOL.md, "Guest agent protocol"): what the host and the
// agent inside a VM say over one byte stream. A message is a frame: a 4-byte big-endian length,
// then exactly that many bytes holding one msgpack map. Every map has "v": 1 and an "id"; a reply
// carries the id of its request.
//
// This is the codec only: no I/O, no logging, nothing thrown past its API (decoders return a value
// or a DecodeError naming the field). It is built on the bounded msgpack core it shares with the
// wire codec (paddock/schemas/msgpack_core.h) and the job model's values (paddock/schemas/job.h),
// and is compiled into paddock_runtime (the host side) and into the static guest binary, so it
// depends on those, msgpack-cxx and the standard library alone.
//
// Thread-safety: the functions are pure; a FrameReader belongs to one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "paddock/schemas/decoded.h"
#include "paddock/schemas/job.h"

namespace paddock::runtime::agent {

inline constexpr uint64_t kProtocolVersion = 1;

namespace limits {
inline constexpr size_t kFrameHeaderBytes = 4;
inline constexpr size_t kMaxFrameBytes = 32u << 20;  // body bytes of one frame

// msgpack unpack limits, applied before any field is looked at.
inline constexpr size_t kMaxDepth = 6;
inline constexpr size_t kMaxArray = 4096;
inline constexpr size_t kMaxMap = 256;
inline constexpr size_t kMaxStr = 1u << 20;
inline constexpr size_t kMaxBin = kMaxFrameBytes;

// Requests (host -> guest). The same bounds as a JobRequest where the field is one.
inline constexpr size_t kMaxArgv = 256;
inline constexpr size_t kMaxArg = 64u << 10;
inline constexpr size_t kMaxArgvTotal = 256u << 10;
inline constexpr size_t kMaxScript = 256u << 10;
inline constexpr size_t kMaxEnv = 256;
inline constexpr size_t kMaxEnvKey = 128;
inline constexpr size_t kMaxEnvValue = 32u << 10;
inline constexpr size_t kMaxPath = 1024;  // cwd, file paths
inline constexpr size_t kMaxStdin = 8u << 20;
inline constexpr size_t kMaxFiles = 64;             // files in, files out
inline constexpr size_t kMaxFilesTotal = 8u << 20;  // data of the files in, together
inline constexpr uint32_t kMaxTimeoutMs = 24u * 3600 * 1000;
inline constexpr uint32_t kMaxOutputCap = 8u << 20;    // per stream
inline constexpr uint32_t kMaxFilesOutCap = 8u << 20;  // per file
// Replies (guest -> host): the agent keeps the data of all files out under this, so that a
// result (2 streams + files) always fits in one frame.
inline constexpr size_t kMaxFilesOutTotal = 8u << 20;
// An "output" reply's data (a streaming exec's chunk); its offset + size is at most kMaxOutputCap.
inline constexpr size_t kMaxOutputChunk = 64u << 10;
inline constexpr size_t kMaxError = 4096;
inline constexpr size_t kMaxAgentVersion = 64;
// refresh: entropy bytes (credited in full, so at least the 256 bits that make the kernel's CRNG
// ready), the hostname (Linux's own limit, __NEW_UTS_LEN), the boot id in the reply (a UUID is 36).
inline constexpr size_t kMinEntropy = 32;
inline constexpr size_t kMaxEntropy = 512;
inline constexpr size_t kMaxHostname = 64;
inline constexpr size_t kMaxBootId = 64;
}  // namespace limits

// One result convention for both codecs (paddock/schemas/decoded.h). A DecodeError's id is the
// message's id if it could be read before the failure, else 0.
using schemas::Decoded;
using schemas::DecodeError;

// The job model's values (paddock/schemas/job.h), as the host's runtime has them.
using schemas::ExecCommand;  // one program to run: argv, or (when not empty) script
using schemas::FileIn;       // path relative to cwd: no leading '/', no '..', '.' or empty parts
using schemas::FileOut;      // truncated: longer than files_out_cap (or the total cap)
using schemas::OutputStream;

// What makes a clone restored from a shared snapshot unique: fresh entropy for the kernel's pool
// (then a CRNG reseed), the wall clock, a hostname.
struct RefreshCommand {
  std::string entropy;        // kMinEntropy .. kMaxEntropy bytes
  uint64_t unix_time_ns = 0;  // CLOCK_REALTIME to set; not 0
  std::string hostname;       // 1 .. kMaxHostname of [A-Za-z0-9-], not starting with '-'
  bool operator==(const RefreshCommand&) const = default;
};

// Empty when `command` keeps the limits above, else "<field>: <reason>" (what the decoder says).
std::string check_refresh(const RefreshCommand& command);

enum class Op { kPing, kExec, kShutdown, kRefresh };
std::string_view op_name(Op op);  // "ping", "exec", "shutdown", "refresh"

struct Request {
  uint64_t id = 0;
  Op op = Op::kPing;
  ExecCommand exec;        // for Op::kExec
  RefreshCommand refresh;  // for Op::kRefresh
  bool operator==(const Request&) const = default;
};

// What a program did (schemas::ExecOutcome: exit_code is 128 + signal when a signal ended it; of
// its usage, the agent reports cpu_us and peak_memory_kib), and the guest's own wall clock of it.
// oom_killed is optional on the wire: an agent that predates it sends none, which decodes as
// false.
struct ExecOutcome : schemas::ExecOutcome {
  uint64_t exec_us = 0;  // wall clock from start to the end of the program
  bool operator==(const ExecOutcome&) const = default;
};

// The guest's identity after a refresh.
struct RefreshedIdentity {
  std::string boot_id;   // /proc/sys/kernel/random/boot_id, read after the reseed; <= kMaxBootId
  std::string hostname;  // the hostname now; <= kMaxHostname
  bool applied = false;  // false: the agent runs in its host test mode and changed nothing
  bool operator==(const RefreshedIdentity&) const = default;
};

// A chunk of a streaming exec's output (ExecCommand::stream): the bytes at [offset, offset +
// data.size()) of one stream, within the exec's output_cap. Sent before the exec's result, in
// order, with the exec's id; the result still holds the whole (capped) output.
struct OutputPiece {
  OutputStream stream = OutputStream::kStdout;
  uint64_t offset = 0;
  std::string data;  // 1 .. kMaxOutputChunk bytes
  bool operator==(const OutputPiece&) const = default;
};

enum class ReplyKind { kPong, kResult, kShutdown, kError, kRefreshed, kOutput };
std::string_view reply_kind_name(ReplyKind kind);  // "pong", "result", ... (the reply's op)

struct Reply {
  uint64_t id = 0;  // the request's id; 0 answers a frame whose id could not be read
  ReplyKind kind = ReplyKind::kPong;
  std::string agent_version;    // kPong
  ExecOutcome result;           // kResult
  std::string error;            // kError: why the request could not be run
  RefreshedIdentity refreshed;  // kRefreshed
  OutputPiece output;           // kOutput
  bool operator==(const Reply&) const = default;
};

// Encoders return one msgpack body (no length prefix); wrap it with frame() to send it.
std::string encode_request(const Request& request);
std::string encode_reply(const Reply& reply);

// Decoders take one body (the bytes after the length prefix). They never throw.
Decoded<Request> decode_request(std::string_view body);
Decoded<Reply> decode_reply(std::string_view body);

// The length prefix and the body. REQUIRES: body.size() <= limits::kMaxFrameBytes.
std::string frame(std::string_view body);

// Cuts a byte stream into frame bodies. Feed it what was read; take bodies with next().
class FrameReader {
 public:
  void feed(std::string_view bytes);
  // The next complete body; or an error for a frame that cannot be taken (length 0, or over
  // kMaxFrameBytes: its bytes are then skipped as they arrive, so the stream stays in step);
  // or nullopt when more bytes are needed.
  std::optional<Decoded<std::string>> next();
  // Whether part of a frame is buffered or being skipped: a stream that ends now ends mid-frame.
  bool mid_frame() const { return skip_ > 0 || pos_ < buf_.size(); }
  // Bytes buffered and not yet taken.
  size_t buffered() const { return buf_.size() - pos_; }
  // Forgets everything buffered (the peer went away; the next bytes start a new frame).
  void reset();

 private:
  std::string buf_;
  size_t pos_ = 0;     // start of the first byte not yet taken
  uint64_t skip_ = 0;  // bytes of a refused frame still to discard
};

}  // namespace paddock::runtime::agent
