#include "load/driver.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <random>
#include <unordered_map>

#include "exit_codes.h"
#include "load/job_names.h"

namespace paddock::load {
namespace {

namespace sc = paddock::schemas;
namespace exit_code = paddock::cli::exit_code;
using Clock = cli::BrokerSession::Clock;
using std::chrono::milliseconds;

constexpr auto kProgressEvery = milliseconds(250);
constexpr auto kLongestWait = milliseconds(50);
// The session PINGs a broker quiet for 1 s: one heard from within 2 s is there.
constexpr auto kBrokerThere = milliseconds(2000);
// Per loop turn: jobs sent at most, answers read at most, so that neither starves the other.
constexpr size_t kSendPerTurn = 4096;
constexpr size_t kReadPerTurn = 2048;

volatile std::sig_atomic_t g_interrupts = 0;
void on_sigint(int) { g_interrupts = g_interrupts + 1; }

uint64_t micros(Clock::duration d) {
  return d.count() < 0 ? 0
                       : static_cast<uint64_t>(
                             std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

// The "\r" status line on a terminal's stderr; nothing when stderr is not a terminal.
class ProgressLine {
 public:
  ProgressLine() : enabled_(isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() { clear(); }

  bool due(Clock::time_point now) const { return enabled_ && now - last_ >= kProgressEvery; }
  void show(Clock::time_point now, const std::string& text) {
    last_ = now;
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (!shown_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
  Clock::time_point last_{};
};

class LoadRun {
 public:
  LoadRun(const LoadOptions& o, const sc::JobRequest& tmpl, cli::BrokerSession& session)
      : opts_(o),
        template_(tmpl),
        session_(session),
        names_(o.id_prefix),
        limit_(o.jobs.value_or(UINT64_MAX)),
        timeout_(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(o.timeout_s))) {
    out_.run.broker = o.broker;
    out_.run.concurrency = o.concurrency;
    out_.run.rate = o.rate;
    if (o.rate) interval_ = std::chrono::duration<double>(1.0 / *o.rate);
    if (o.duration_s) {
      send_until_ =
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*o.duration_s));
    }
  }

  Outcome run() {
    start_ = last_activity_ = last_rate_at_ = Clock::now();
    last_heard_ = start_ - kBrokerThere;  // nothing heard yet
    while (true) {
      if (g_interrupts > 1) return stop(exit_code::kInterrupted, "interrupted");
      const auto now = Clock::now();
      send_due(now);
      if (!may_start_new(now) && outstanding_.empty()) break;
      receive(wait_for(Clock::now()));
      if (session_.broker_silent())
        return stop(exit_code::kUnavailable, session_.silence_message());
      // Jobs outstanding and none answered: give up now if the broker still answers PINGs (it
      // is there, but nothing runs the jobs); if it does not, broker_silent() will say so.
      const auto quiet = Clock::now();
      if (!outstanding_.empty() && quiet - last_activity_ > timeout_ &&
          quiet - last_heard_ < kBrokerThere) {
        return stop(exit_code::kUnavailable, stalled_message());
      }
      show_progress();
    }
    return stop(g_interrupts ? exit_code::kInterrupted : exit_code::kOk,
                g_interrupts ? "interrupted" : "");
  }

 private:
  struct Pending {
    Clock::time_point start;  // sent (closed loop) or scheduled (open loop): latencies start here
    bool accepted = false;
    bool waiting = false;  // REJECTED, in retry_
    uint32_t rejections = 0;
  };

  bool may_start_new(Clock::time_point now) const {
    if (g_interrupts || next_ >= limit_) return false;
    // Open loop: the schedule decides, however late the sender is running.
    const auto at = opts_.rate ? scheduled(next_) : now;
    return !send_until_ || at - start_ < *send_until_;
  }
  Clock::time_point scheduled(uint64_t n) const {
    return start_ + std::chrono::duration_cast<Clock::duration>(interval_ * static_cast<double>(n));
  }
  bool new_job_due(Clock::time_point now) const {
    if (!may_start_new(now)) return false;
    if (opts_.rate) return scheduled(next_) <= now;
    return outstanding_.size() < *opts_.concurrency;
  }

  void add_to_batch(uint64_t n) {
    batch_.push_back(template_);
    batch_.back().job_id = names_.id(n);
  }

  // Rejected jobs whose backoff passed, then new jobs: up to the concurrency (closed loop) or
  // those whose scheduled time has come (open loop).
  void send_due(Clock::time_point now) {
    batch_.clear();
    while (!retry_.empty() && retry_.begin()->first <= now && batch_.size() < kSendPerTurn) {
      const uint64_t n = retry_.begin()->second;
      retry_.erase(retry_.begin());
      outstanding_.at(n).waiting = false;
      add_to_batch(n);
    }
    while (batch_.size() < kSendPerTurn && new_job_due(now)) {
      const uint64_t n = next_++;
      outstanding_.emplace(n, Pending{opts_.rate ? scheduled(n) : now});
      add_to_batch(n);
    }
    if (!batch_.empty()) session_.client().submit(batch_);
  }

  // How long the next poll may wait: until the next scheduled send or retry, at most 50 ms.
  milliseconds wait_for(Clock::time_point now) const {
    if (new_job_due(now)) return milliseconds(0);
    auto until = now + kLongestWait;
    if (!retry_.empty()) until = std::min(until, retry_.begin()->first);
    if (opts_.rate && may_start_new(now)) until = std::min(until, scheduled(next_));
    return std::chrono::duration_cast<milliseconds>(std::max(until - now, Clock::duration::zero()));
  }

  void receive(milliseconds wait) {
    for (size_t read = 0; read < kReadPerTurn; ++read) {
      auto ev = session_.next(read == 0 ? wait : milliseconds(0));
      if (!ev) break;
      last_heard_ = Clock::now();
      handle(*ev);
    }
  }

  void handle(const client::Event& ev) {
    using K = client::Event::Kind;
    const auto now = Clock::now();
    switch (ev.kind) {
      case K::kAccepted:
        last_activity_ = now;
        for (const auto& id : ev.accepted_ids) accepted(id, now);
        break;
      case K::kResult:
        finish(ev.result.job_id, now, &ev.result, nullptr);
        break;
      case K::kError:
        if (ev.error.job_id.empty()) {
          warn("the broker refused a message: " + ev.error.message);
        } else {
          finish(ev.error.job_id, now, nullptr, &ev.error);
        }
        break;
      case K::kRejected:
        reject(ev.error.job_id, now);
        break;
      case K::kInvalid:
        warn("a message from the broker that cannot be decoded: " + ev.detail);
        break;
      case K::kOutput:
        ++out_.tally.output_chunks;
        out_.tally.output_bytes += ev.output.data.size();
        break;
      case K::kPong:
        break;
    }
  }

  void accepted(const std::string& id, Clock::time_point now) {
    const auto n = names_.number(id);
    if (!n) return;
    auto it = outstanding_.find(*n);
    if (it == outstanding_.end() || it->second.accepted) return;
    it->second.accepted = true;
    out_.tally.to_accepted.record(micros(now - it->second.start));
  }

  void finish(const std::string& id, Clock::time_point now, const sc::JobResult* r,
              const sc::JobError* e) {
    const auto n = names_.number(id);
    if (!n) return;  // not one of ours
    auto it = outstanding_.find(*n);
    if (it == outstanding_.end()) {
      if (*n < next_) ++out_.tally.duplicate_answers;
      return;
    }
    const uint64_t us = micros(now - it->second.start);
    if (it->second.waiting) std::erase_if(retry_, [&](const auto& kv) { return kv.second == *n; });
    outstanding_.erase(it);
    last_activity_ = last_answer_ = now;
    if (r)
      out_.tally.add_result(*r, us);
    else
      out_.tally.add_error(*e, us);
  }

  void reject(const std::string& id, Clock::time_point now) {
    const auto n = names_.number(id);
    if (!n) return;
    auto it = outstanding_.find(*n);
    if (it == outstanding_.end() || it->second.waiting) return;
    last_activity_ = now;
    ++out_.tally.rejected;
    // 10 ms doubling to 1.28 s, plus up to 10 ms of jitter so that retries spread out.
    const auto backoff = milliseconds(10 << std::min<uint32_t>(it->second.rejections, 7)) +
                         milliseconds(std::uniform_int_distribution<int>(0, 10)(rng_));
    ++it->second.rejections;
    it->second.waiting = true;
    retry_.emplace(now + backoff, *n);
  }

  void warn(const std::string& what) {
    progress_.clear();
    if (warnings_++ < 20) std::fprintf(stderr, "paddock-load: %s\n", what.c_str());
  }

  void show_progress() {
    const auto now = Clock::now();
    if (!progress_.due(now)) return;
    const uint64_t answered = out_.tally.answered();
    const double secs = std::chrono::duration<double>(now - last_rate_at_).count();
    const double rate = secs > 0 ? static_cast<double>(answered - answered_at_last_) / secs : 0;
    answered_at_last_ = answered;
    last_rate_at_ = now;
    char line[256];
    std::snprintf(
        line, sizeof line,
        "paddock-load: %llu/%s answered, %llu ok, %llu errors, %zu outstanding, %.0f jobs/s",
        static_cast<unsigned long long>(answered),
        opts_.jobs ? std::to_string(*opts_.jobs).c_str() : "?",
        static_cast<unsigned long long>(out_.tally.ok),
        static_cast<unsigned long long>(out_.tally.errors), outstanding_.size(), rate);
    progress_.show(now, line);
  }

  std::string stalled_message() const {
    std::string ids;
    size_t listed = 0;
    for (const auto& [n, p] : outstanding_) {
      if (listed++ == 3) break;
      ids += (ids.empty() ? "" : ", ") + names_.id(n);
    }
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", opts_.timeout_s);
    return std::to_string(outstanding_.size()) + " jobs unanswered (" + ids +
           (outstanding_.size() > 3 ? ", ..." : "") + "): the broker answered none for " + secs +
           " s (--timeout-s); is a worker connected to it?";
  }

  Outcome stop(int status, const std::string& why) {
    progress_.clear();
    out_.status = status;
    out_.give_up = why;
    out_.run.jobs = next_;
    out_.run.complete = outstanding_.empty();
    const auto end = out_.tally.answered() ? last_answer_ : Clock::now();
    out_.run.elapsed_s = std::chrono::duration<double>(end - start_).count();
    return std::move(out_);
  }

  const LoadOptions& opts_;
  const sc::JobRequest& template_;
  cli::BrokerSession& session_;
  JobNames names_;
  const uint64_t limit_;
  const Clock::duration timeout_;
  std::chrono::duration<double> interval_{0};
  std::optional<Clock::duration> send_until_;

  Clock::time_point start_;
  Clock::time_point last_activity_;  // an ACCEPTED, REJECTED or final answer for one of our jobs
  Clock::time_point last_answer_;    // a final answer
  Clock::time_point last_heard_;     // any message, PONG included
  uint64_t next_ = 0;                // the number of the next new job
  std::unordered_map<uint64_t, Pending> outstanding_;
  std::multimap<Clock::time_point, uint64_t> retry_;
  std::vector<sc::JobRequest> batch_;
  Outcome out_;
  ProgressLine progress_;
  Clock::time_point last_rate_at_;
  uint64_t answered_at_last_ = 0;
  size_t warnings_ = 0;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace

Outcome run_load(const LoadOptions& opts, const sc::JobRequest& tmpl, cli::BrokerSession& session) {
  g_interrupts = 0;
  auto previous = std::signal(SIGINT, on_sigint);
  Outcome out = LoadRun(opts, tmpl, session).run();
  std::signal(SIGINT, previous);
  return out;
}

}  // namespace paddock::load
