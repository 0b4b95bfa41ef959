#include "script.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

namespace paddock::runtime::memory {
namespace {

using Clock = std::chrono::steady_clock;

std::string join(const std::vector<std::string>& argv, size_t from) {
  std::string out;
  for (size_t i = from; i < argv.size(); ++i) {
    if (i > from) out += ' ';
    out += argv[i];
  }
  return out;
}

std::optional<long long> number(const std::vector<std::string>& argv, size_t i) {
  if (i >= argv.size() || argv[i].empty() || argv[i].size() > 12) return std::nullopt;
  try {
    size_t used = 0;
    long long v = std::stoll(argv[i], &used);
    if (used != argv[i].size()) return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}

// What a streaming script has given its sink so far, per stream; emit() gives the rest.
struct Emitter {
  const OutputSink* sink = nullptr;
  uint32_t cap = 0;
  size_t sent[2] = {0, 0};
  void emit(schemas::OutputStream stream, const std::string& data) {
    if (sink == nullptr || !*sink) return;
    size_t& at = sent[stream == schemas::OutputStream::kStderr ? 1 : 0];
    const size_t end = std::min<size_t>(data.size(), cap);
    while (at < end) {
      const size_t n = std::min<size_t>(end - at, 64u << 10);
      (*sink)(stream, at, std::string_view(data).substr(at, n));
      at += n;
    }
  }
};

void cap(std::string& data, bool& truncated, uint32_t limit) {
  if (data.size() > limit) {
    data.resize(limit);
    truncated = true;
  }
}

// Waits until `at`, the job's `limit` or cancellation, whichever comes first. False when it did not
// reach `at`: `r` then says why, as the guest agent would (cancelled; or timed out: killed by
// SIGKILL, so exit code 128 + 9, the same on every backend, PROTOCOL.md "JobResult").
bool scripted_wait(Clock::time_point at, Clock::time_point limit, std::stop_token cancel,
                   ExecResult& r) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  const bool stopped = cv.wait_until(lock, cancel, std::min(at, limit), [] { return false; });
  if (stopped || cancel.stop_requested()) {
    r.cancelled = true;
    r.signal = 9;
    return false;
  }
  if (at > limit) {
    r.timed_out = true;
    r.signal = 9;
    r.exit_code = 128 + 9;
    return false;
  }
  return true;
}

// `sleep MS`.
void scripted_sleep(long long ms, const ExecRequest& req, std::stop_token cancel, ExecResult& r) {
  const auto start = Clock::now();
  (void)scripted_wait(start + std::chrono::milliseconds(ms),
                      start + std::chrono::milliseconds(req.timeout_ms), std::move(cancel), r);
  r.usage.cpu_us = 0;
}

// `every MS N TEXT...`: "TEXT\n" on stdout N times, at once and then every MS ms, each given to
// the sink when it is written; stops early at the job's timeout (timed_out) or a cancel.
void scripted_every(long long ms, long long n, const std::string& text, const ExecRequest& req,
                    std::stop_token cancel, Emitter& out, ExecResult& r) {
  const auto start = Clock::now();
  const auto limit = start + std::chrono::milliseconds(req.timeout_ms);
  for (long long i = 0; i < n; ++i) {
    if (i > 0 && !scripted_wait(start + std::chrono::milliseconds(ms * i), limit, cancel, r)) {
      return;
    }
    r.stdout_data += text + "\n";
    out.emit(schemas::OutputStream::kStdout, r.stdout_data);
  }
}

Error scripted_failure(const std::string& vm_id, const std::vector<std::string>& argv) {
  // VARIANT or VARIANT:CAUSE (the cause decides retryable; without one, the variant's usual).
  const std::string spec = argv.size() > 1 ? argv[1] : "";
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const std::string detail = argv.size() > 2 ? join(argv, 2) : "scripted failure";
  const auto v = variant_from_name(name);
  if (!v) return Error::unsupported("memory provider: unknown variant '" + name + "' for fail");
  if (colon != std::string::npos) {
    const auto cause = cause_from_name(spec.substr(colon + 1));
    if (!cause) {
      return Error::unsupported("memory provider: unknown cause '" + spec.substr(colon + 1) +
                                "' for fail");
    }
    return Error::of(*v, *cause, detail);
  }
  switch (*v) {
    case Variant::kVmAlreadyExists:
      return Error::vm_already_exists(vm_id);
    case Variant::kVmNotFound:
      return Error::vm_not_found(vm_id);
    case Variant::kInvalidTransition:
      return Error::invalid_transition(vm_id, "running", "created");
    case Variant::kSnapshotAlreadyExists:
      return Error::snapshot_already_exists(vm_id, detail);
    case Variant::kSnapshotNotFound:
      return Error::snapshot_not_found(vm_id, detail);
    case Variant::kStatePoisoned:
      return Error::state_poisoned();
    default:
      return Error::of(*v, detail);
  }
}

}  // namespace

Result<ExecResult> run_script(const std::string& vm_id, const ExecRequest& req,
                              std::stop_token cancel, const OutputSink* sink) {
  ExecResult r;
  Emitter out{sink, req.output_cap, {0, 0}};
  const auto& argv = req.argv;
  const std::string cmd = argv.empty() ? "" : argv[0];
  if (cmd == "sh" && argv.size() == 3 && argv[1] == "-c") {
    // The script's words as one scripted command: no shell is run, and no shell syntax read.
    ExecRequest words = req;
    words.argv.clear();
    size_t at = 0;
    const std::string& text = argv[2];
    while (at < text.size()) {
      const size_t start = text.find_first_not_of(' ', at);
      if (start == std::string::npos) break;
      const size_t end = std::min(text.find(' ', start), text.size());
      words.argv.push_back(text.substr(start, end - start));
      at = end;
    }
    return run_script(vm_id, words, cancel, sink);
  }
  if (cmd == "echo") {
    r.stdout_data = join(argv, 1) + "\n";
  } else if (cmd == "cat") {
    r.stdout_data = req.stdin_data;
  } else if (cmd == "env" && argv.size() == 2) {
    auto it = req.env.find(argv[1]);
    if (it != req.env.end())
      r.stdout_data = it->second + "\n";
    else
      r.exit_code = 1;
  } else if (cmd == "stderr") {
    r.stderr_data = join(argv, 1) + "\n";
  } else if (cmd == "output" && number(argv, 1) && *number(argv, 1) >= 0) {
    r.stdout_data.assign(static_cast<size_t>(std::min<long long>(*number(argv, 1), 64 << 20)), 'x');
  } else if (cmd == "exit" && number(argv, 1)) {
    r.exit_code = static_cast<int32_t>(*number(argv, 1));
  } else if (cmd == "true") {
    r.exit_code = 0;
  } else if (cmd == "false") {
    r.exit_code = 1;
  } else if (cmd == "sleep" && number(argv, 1) && *number(argv, 1) >= 0) {
    scripted_sleep(*number(argv, 1), req, cancel, r);
  } else if (cmd == "every" && number(argv, 1) && *number(argv, 1) >= 0 && number(argv, 2) &&
             *number(argv, 2) >= 0 && *number(argv, 2) <= 100'000) {
    scripted_every(*number(argv, 1), *number(argv, 2), join(argv, 3), req, cancel, out, r);
  } else if (cmd == "fail") {
    return scripted_failure(vm_id, argv);
  } else {
    r.exit_code = 127;
    r.stderr_data = "paddock memory provider (test double): unknown scripted command '" + cmd +
                    "'; nothing is executed\n";
  }
  cap(r.stdout_data, r.stdout_truncated, req.output_cap);
  cap(r.stderr_data, r.stderr_truncated, req.output_cap);
  if (!r.cancelled) {
    out.emit(schemas::OutputStream::kStdout, r.stdout_data);
    out.emit(schemas::OutputStream::kStderr, r.stderr_data);
  }
  return r;
}

}  // namespace paddock::runtime::memory
