// paddock submit: one job, its output on our stdout/stderr, its status as ours.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "broker_session.h"
#include "commands.h"
#include "exit_codes.h"
#include "job_id.h"
#include "outcome.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/limits.h"
#include "text.h"

namespace paddock::cli {
namespace {

namespace sc = paddock::schemas;
using std::chrono::milliseconds;

volatile std::sig_atomic_t g_interrupts = 0;
void on_sigint(int) { g_interrupts = g_interrupts + 1; }

// Thrown for a bad command line; run_submit prints it and exits `status`.
struct UsageError {
  std::string message;
  int status = exit_code::kUsage;
};

std::map<std::string, std::string> parse_pairs(const std::vector<std::string>& pairs,
                                               const char* option) {
  std::map<std::string, std::string> out;
  for (const auto& p : pairs) {
    const auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UsageError{std::string(option) + " expects NAME=VALUE, got '" + p + "'"};
    }
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

// At most one byte more than the protocol allows, so that validation reports the size.
std::string read_stdin_file(const std::string& path) {
  const size_t limit = sc::limits::kMaxStdin + 1;
  std::string data;
  auto read_from = [&](std::istream& in) {
    char buf[1 << 16];
    while (data.size() < limit && in.read(buf, sizeof buf).gcount() > 0) {
      data.append(buf, static_cast<size_t>(in.gcount()));
    }
  };
  if (path == "-") {
    read_from(std::cin);
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UsageError{"cannot read --stdin-file '" + path + "'", exit_code::kNoInput};
    read_from(in);
  }
  return data;
}

sc::JobRequest build_request(const SubmitOptions& o) {
  sc::JobRequest r;
  r.job_id = o.job_id.empty() ? generate_job_id("cli") : o.job_id;
  r.image = o.image;
  if (!o.steps.empty() && !o.argv.empty()) {
    throw UsageError{"give the program after --, or --step, not both"};
  }
  if (o.steps.empty() && o.argv.empty()) {
    throw UsageError{"no program: give it after -- (paddock submit -- echo hi), or --step"};
  }
  r.argv = o.argv;
  for (const auto& step : o.steps) {
    sc::Step st;
    st.argv = {"sh", "-c", step};
    st.timeout_ms = o.timeout_ms;
    st.output_cap = o.output_cap;
    r.steps.push_back(std::move(st));
  }
  r.stop_on_failure = !o.keep_going;
  r.stream = !o.no_stream;
  r.env = parse_pairs(o.env, "--env");
  r.tags = parse_pairs(o.tags, "--tag");
  r.vcpus = o.vcpus;
  r.mem_mib = o.mem_mib;
  r.timeout_ms = o.timeout_ms;
  r.output_cap = o.output_cap;
  r.priority = o.priority;
  if (!o.stdin_file.empty()) {
    // With steps: the first step's (the job has no stdin of its own).
    auto data = read_stdin_file(o.stdin_file);
    if (r.steps.empty()) {
      r.stdin_data = std::move(data);
    } else {
      r.steps.front().stdin_data = std::move(data);
    }
  }
  return r;
}

// What of a job's output was printed live (OUTPUT chunks), per step and stream, so that the
// RESULT prints only the rest. Live printing of a stream stops at its first gap (a chunk dropped
// on the way): the RESULT then prints the stream from there. A new attempt starts over.
class LiveOutput {
 public:
  void on_chunk(const sc::OutputChunk& c) {
    if (c.attempt < attempt_) return;  // an earlier attempt's, late
    if (c.attempt > attempt_) restart(c.attempt);
    Shown& s = shown_[key(c.step, c.stream)];
    if (!s.live) return;
    if (c.offset > s.bytes) {
      s.live = false;  // a gap: the rest comes from the RESULT
      return;
    }
    const size_t skip = static_cast<size_t>(s.bytes - c.offset);
    if (skip >= c.data.size()) return;
    FILE* out = c.stream == sc::OutputStream::kStderr ? stderr : stdout;
    std::fwrite(c.data.data() + skip, 1, c.data.size() - skip, out);
    std::fflush(out);
    s.bytes += c.data.size() - skip;
  }
  // Before the RESULT of `attempt` is printed.
  void on_result(uint32_t attempt) {
    if (attempt != attempt_) restart(attempt);
  }
  // The part of `data` (one stream of the RESULT, or of one of its steps) not printed yet.
  std::string_view rest(std::optional<uint32_t> step, sc::OutputStream stream,
                        const std::string& data) const {
    auto it = shown_.find(key(step, stream));
    const size_t done = it == shown_.end() ? 0 : static_cast<size_t>(it->second.bytes);
    return done >= data.size() ? std::string_view() : std::string_view(data).substr(done);
  }

 private:
  struct Shown {
    uint64_t bytes = 0;
    bool live = true;
  };
  static std::pair<int64_t, int> key(std::optional<uint32_t> step, sc::OutputStream stream) {
    return {step ? static_cast<int64_t>(*step) : -1, static_cast<int>(stream)};
  }
  void restart(uint32_t attempt) {
    bool printed = false;
    for (const auto& [k, s] : shown_) printed = printed || s.bytes > 0;
    if (printed) {
      std::fprintf(stderr, "\npaddock: the job runs again (attempt %u); its output starts over\n",
                   attempt);
    }
    shown_.clear();
    attempt_ = attempt;
  }
  uint32_t attempt_ = 1;
  std::map<std::pair<int64_t, int>, Shown> shown_;
};

void write_rest(FILE* out, std::string_view data) {
  if (data.empty()) return;  // its data() may be null, which fwrite may not be given
  std::fwrite(data.data(), 1, data.size(), out);
  std::fflush(out);
}

// `paddock submit -v`: where and how the job ran, on stderr (stdout is the job's).
void print_run_line(const sc::JobResult& r) {
  const std::string start = r.warm ? "warm (clone of " + r.template_vm + ")" : "cold boot";
  std::fprintf(stderr, "paddock: job %s ran on %s, backend %s, %s; start %s, exec %s, total %s\n",
               r.job_id.c_str(), r.worker_id.c_str(), r.backend.c_str(), start.c_str(),
               format_duration_us(r.timings.start_us).c_str(),
               format_duration_us(r.timings.exec_us).c_str(),
               format_duration_us(r.timings.total_us).c_str());
}

// A job with steps: each step's output in turn, and a line on stderr for each that failed and
// for the steps not run.
void print_steps(const sc::JobResult& r, const sc::JobRequest& req, const LiveOutput& live) {
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const auto& st = r.steps[i];
    const auto step = static_cast<uint32_t>(i);
    write_rest(stdout, live.rest(step, sc::OutputStream::kStdout, st.stdout_data));
    write_rest(stderr, live.rest(step, sc::OutputStream::kStderr, st.stderr_data));
    if (st.stdout_truncated || st.stderr_truncated) {
      std::fprintf(stderr, "paddock: step %zu's output was cut at %u bytes per stream\n", i + 1,
                   req.steps[i].output_cap);
    }
    if (st.exit_code != 0 || st.timed_out) {
      std::fprintf(stderr, "paddock: step %zu of %zu %s\n", i + 1, req.steps.size(),
                   st.timed_out ? "timed out" : ("exited " + std::to_string(st.exit_code)).c_str());
    }
  }
  if (r.steps.size() < req.steps.size()) {
    std::fprintf(stderr, "paddock: steps %zu to %zu were not run%s\n", r.steps.size() + 1,
                 req.steps.size(),
                 req.stop_on_failure ? " (a step failed; --keep-going runs them anyway)"
                                     : " (the job's --timeout-ms ran out)");
  }
}

int print_result(const sc::JobResult& r, const sc::JobRequest& req, bool verbose,
                 LiveOutput& live) {
  live.on_result(r.attempt);
  print_steps(r, req, live);
  write_rest(stdout, live.rest(std::nullopt, sc::OutputStream::kStdout, r.stdout_data));
  write_rest(stderr, live.rest(std::nullopt, sc::OutputStream::kStderr, r.stderr_data));
  if (r.stdout_truncated || r.stderr_truncated) {
    std::fprintf(stderr,
                 "paddock: the job's output was cut at %u bytes per stream (raise --output-cap)\n",
                 req.output_cap);
  }
  if (r.timed_out) {
    std::fprintf(stderr, "paddock: job %s timed out after %u ms (raise --timeout-ms)\n",
                 r.job_id.c_str(), req.timeout_ms);
  } else if (r.oom_killed) {
    std::fprintf(stderr,
                 "paddock: job %s was killed for memory (guest OOM, signal %d; raise --mem-mib)\n",
                 r.job_id.c_str(), r.signal);
  } else if (r.signal != 0) {
    std::fprintf(stderr, "paddock: job %s was killed by signal %d\n", r.job_id.c_str(), r.signal);
  }
  if (verbose) print_run_line(r);
  const int status = exit_status_of(r);
  if (!r.timed_out && r.signal == 0 && status != r.exit_code) {
    std::fprintf(stderr, "paddock: exit code %d does not fit an exit status; exiting 255\n",
                 r.exit_code);
  }
  return status;
}

int wait_for_answer(BrokerSession& session, const sc::JobRequest& req, milliseconds wait,
                    bool verbose) {
  using Clock = BrokerSession::Clock;
  auto deadline = Clock::now() + wait;
  int interrupts_seen = 0;
  LiveOutput live;
  while (true) {
    if (g_interrupts != interrupts_seen) {
      interrupts_seen = g_interrupts;
      if (interrupts_seen > 1) return exit_code::kInterrupted;
      std::fprintf(stderr, "\npaddock: cancelling job %s (Ctrl-C again to stop waiting)\n",
                   req.job_id.c_str());
      session.client().cancel(req.job_id);
      deadline = std::min(deadline, Clock::now() + milliseconds(5000));
    }
    auto ev = session.next(milliseconds(100));
    if (ev) {
      using K = client::Event::Kind;
      const bool ours = ev->error.job_id == req.job_id || ev->error.job_id.empty();
      switch (ev->kind) {
        case K::kResult:
          if (ev->result.job_id == req.job_id) return print_result(ev->result, req, verbose, live);
          break;
        case K::kOutput:
          if (ev->output.job_id == req.job_id) live.on_chunk(ev->output);
          break;
        case K::kRejected:
          if (!ours) break;
          std::fprintf(stderr, "error: %s\npaddock: %s; try again later\n",
                       describe_error(ev->error).c_str(),
                       ev->error.code == sc::code(sc::JobCode::kQuotaExceeded)
                           ? "your tenant is at one of its limits on this broker (above)"
                           : "the broker could not take the job now");
          return exit_code::kTempFail;
        case K::kError:
          if (!ours) break;
          std::fprintf(stderr, "error: %s\n", describe_error(ev->error).c_str());
          return exit_code::kPaddockError;
        case K::kInvalid:
          std::fprintf(stderr,
                       "paddock: ignoring a message from the broker that cannot be decoded: %s\n",
                       ev->detail.c_str());
          break;
        case K::kAccepted:
        case K::kPong:
          break;
      }
    }
    if (session.broker_silent()) {
      std::fprintf(stderr, "error: %s\n", session.silence_message().c_str());
      return exit_code::kUnavailable;
    }
    if (Clock::now() >= deadline) {
      std::fprintf(stderr,
                   "error: no answer for job %s within %lld ms; it may still be queued or running "
                   "(raise --wait-ms, or cancel it: paddock cancel --broker %s %s)\n",
                   req.job_id.c_str(), static_cast<long long>(wait.count()),
                   session.endpoint().c_str(), req.job_id.c_str());
      return exit_code::kUnavailable;
    }
  }
}

}  // namespace

CLI::App* add_submit_command(CLI::App& app, SubmitOptions& o) {
  auto* cmd = app.add_subcommand(
      "submit",
      "Run one job and wait for it: its stdout and stderr become ours, and so does its exit\n"
      "status (124 timed out, 128+n killed by signal n, 125 Paddock ERROR, 75 REJECTED because\n"
      "the queue is full, 69 no answer). Example: paddock submit -- echo hello");
  add_broker_option(*cmd, o.broker);
  add_curve_options(*cmd, o.curve);
  cmd->add_option("--job-id", o.job_id, "idempotency key (default: cli-<random hex>)");
  cmd->add_option("--image", o.image, "image to run in")->capture_default_str();
  cmd->add_option("--vcpus", o.vcpus, "virtual CPUs (1-16)")->capture_default_str();
  cmd->add_option("--mem-mib", o.mem_mib, "memory in MiB (64-65536)")->capture_default_str();
  cmd->add_option("--timeout-ms", o.timeout_ms, "kill the job after this long")
      ->capture_default_str();
  cmd->add_option("--output-cap", o.output_cap, "bytes kept per output stream")
      ->capture_default_str();
  cmd->add_option("--priority", o.priority, "-100..100, higher runs first")->capture_default_str();
  cmd->add_option("--env,-e", o.env, "environment variable NAME=VALUE (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--tag", o.tags, "tag KEY=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_option("--stdin-file", o.stdin_file, "file to feed the job's stdin, '-' for ours");
  cmd->add_option("--wait-ms", o.wait_ms,
                  "give up waiting after this long (default: timeout + 30 s)");
  cmd->add_option("--broker-timeout-ms", o.broker_timeout_ms,
                  "give up when the broker answers nothing, not even PING, for this long")
      ->capture_default_str();
  cmd->add_flag("--verbose,-v", o.verbose,
                "after the job, say on stderr where it ran: worker, backend, warm (and its "
                "template) or cold, timings");
  cmd->add_option("--step", o.steps,
                  "instead of a program after --: a step, run as sh -c STEP; repeat for more, run "
                  "in order in one VM (files persist); the exit status is the last step's")
      ->allow_extra_args(false);
  cmd->add_flag("--keep-going", o.keep_going,
                "with --step: run the steps after one that failed too");
  cmd->add_flag("--no-stream", o.no_stream,
                "print the job's output when it ends, from its RESULT, not live as it is written");
  cmd->add_option("argv", o.argv, "the program and its arguments, after --");
  return cmd;
}

int run_submit(const SubmitOptions& o) {
  std::optional<sc::JobRequest> req;
  std::optional<BrokerSession> session;
  try {
    req = build_request(o);
    if (auto err = sc::validate(*req)) throw UsageError{"invalid job: " + err->message()};
    session.emplace(o.broker, milliseconds(o.broker_timeout_ms), o.curve);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.message.c_str());
    return e.status;
  } catch (const client::ClientError& e) {  // a malformed endpoint
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code::kUsage;
  }
  try {
    session->client().submit(*req);
    std::signal(SIGINT, on_sigint);
    const milliseconds wait(o.wait_ms ? *o.wait_ms : uint64_t{req->timeout_ms} + 30'000);
    return wait_for_answer(*session, *req, wait, o.verbose);
  } catch (const client::ClientError& e) {  // the send itself failed
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code::kUnavailable;
  }
}

}  // namespace paddock::cli
