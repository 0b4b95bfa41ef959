// The start-up pieces the daemons (paddock-broker, paddock-worker) share: stop signals, the
// logger, the ready file, and the result of parsing a command line into a config value.
//
// Thread-safety: install_stop_signals() and set_log_format() are called from main before other
// threads start; StopTarget's callback runs in a signal handler.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "paddock/base/expected.h"

namespace paddock::daemon {

// Exit code of a daemon whose command line or configuration is wrong (as CLI11's own errors).
inline constexpr int kExitUsage = 2;

// Why a command line is not a config: the exit code and what to print. --help is one too (exit
// 0, the help text as message, printed to stdout).
struct ConfigError {
  int exit_code = kExitUsage;
  std::string message;
};

// A config value, or why there is none. Parsing functions return this instead of exiting, so
// tests can check every refusal.
template <class Config>
using Parsed = base::Expected<Config, ConfigError>;

// Prints a ConfigError as main should (help to stdout, errors to stderr) and returns its code.
int report(const ConfigError& error);

// SIGINT and SIGTERM ask the daemon to stop (the broker stops, the worker drains). Call first
// thing in main, so a signal that arrives while the daemon is still starting is not lost (nor
// fatal): it is kept until a StopTarget exists, which is then told at once.
void install_stop_signals();
bool stop_requested();

// While alive, every stop signal calls `stop(context)` (from the signal handler: it must be
// async-signal-safe, e.g. set an atomic); one that came before runs it in the constructor.
class StopTarget {
 public:
  using Callback = void (*)(void* context);
  StopTarget(Callback stop, void* context);
  ~StopTarget();
  StopTarget(const StopTarget&) = delete;
  StopTarget& operator=(const StopTarget&) = delete;

  Callback stop;
  void* context;
};

// The default logger writes to stderr, at `level` (trace, debug, info, warn, error), each line
// "<ISO time> <level> <who>: <message>" (who: "broker", "worker <id>").
void set_up_logger(const std::string& level, const std::string& who);

// Writes `fields` plus "pid" (this process) as one JSON line to `path`, atomically (a temp file,
// then rename), so a script polling for the file never reads half of it; a Failure when it
// cannot.
base::Status write_ready_file(const std::string& path, nlohmann::json fields);

}  // namespace paddock::daemon
