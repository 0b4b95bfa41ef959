// A minimal QMP client (QEMU Machine Protocol, JSON lines over a unix socket): connect, negotiate
// capabilities, execute a command and wait for its answer, skipping asynchronous events.
//
// QEMU runs the guest and may be taken over by it, so what it sends is hostile input: every read
// has a deadline, a line is at most qmp_limits::kMaxLine bytes and kMaxDepth levels deep, and
// text from it is quoted bounded and escaped. The decoding is the pure QmpLineBuffer and
// parse_qmp_message below (fuzzed: tests/fuzz/fuzz_qmp_replies.cc); the client adds the I/O.
//
// Thread-safety: a QmpClient or QmpLineBuffer is used by one thread at a time (the QemuVm's
// lock); the free functions are pure.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace paddock::runtime::qemu {

namespace qmp_limits {
inline constexpr size_t kMaxLine = 1u << 20;  // one message: the answers we ask for are small
inline constexpr size_t kMaxDepth = 32;       // arrays and objects inside each other
inline constexpr size_t kMaxText = 512;       // bytes of QEMU's text quoted in our messages
}  // namespace qmp_limits

// Cuts QMP's byte stream into lines.
class QmpLineBuffer {
 public:
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  // The next complete line (without its '\n'), or nullopt when more bytes are needed.
  std::optional<std::string> next_line();
  // True when next_line() found more than kMaxLine bytes without a line end: the stream is
  // unusable.
  bool overflowed() const;
  void clear() {
    buffer_.clear();
    scanned_ = 0;
  }

 private:
  std::string buffer_;
  size_t scanned_ = 0;  // bytes of buffer_ known to hold no '\n'
};

// One message from QEMU.
struct QmpMessage {
  enum class Kind { kGreeting, kEvent, kReturn, kError, kOther };
  Kind kind = Kind::kOther;
  std::optional<uint64_t> id;  // the "id" of a return or error, when it is an unsigned integer
  nlohmann::json value;        // kReturn: the "return" value (any JSON type)
  std::string error;           // kError: QEMU's "desc", through os::peer_text (kMaxText)
};

// Decodes one line. nullopt, with `error` naming why, for a line that is not JSON, is nested
// deeper than kMaxDepth or longer than kMaxLine, or is not an object. Never throws.
std::optional<QmpMessage> parse_qmp_message(std::string_view line, std::string& error);

// The string member `key` of a QMP value, through os::peer_text (kMaxText); `fallback` when the
// value is not an object or the member is absent or not a string. Never throws.
std::string qmp_string(const nlohmann::json& value, std::string_view key,
                       const std::string& fallback);

class QmpClient {
 public:
  QmpClient() = default;
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Connects to `socket_path` and completes the greeting and qmp_capabilities. On failure returns
  // a message naming the step and the OS error. `gone`, if given, is asked between attempts: once
  // it says the process is gone, waiting for its socket stops.
  std::optional<std::string> connect(const std::string& socket_path,
                                     std::chrono::milliseconds timeout,
                                     const std::function<bool()>& gone = {});
  // Runs `command` (with `arguments` if not null) and waits up to `timeout`, sending included.
  // Returns the "return" value (read its members with qmp_string), or sets `error` to QMP's error
  // description or the I/O failure.
  std::optional<nlohmann::json> execute(const std::string& command, const nlohmann::json& arguments,
                                        std::chrono::milliseconds timeout, std::string& error);
  bool connected() const { return fd_ >= 0; }
  void close();

 private:
  // One decoded message, or nullopt with `error` set.
  std::optional<QmpMessage> read_message(std::chrono::steady_clock::time_point deadline,
                                         std::string& error);

  int fd_ = -1;
  QmpLineBuffer lines_;
  uint64_t next_id_ = 1;
};

}  // namespace paddock::runtime::qemu
