// paddock batch: many jobs from a JSON-lines file, at most --window in flight, every one
// answered. REJECTED jobs (QueueFull, or QuotaExceeded: the tenant is at a limit of its own) are
// resubmitted after a backoff; quota refusals are reported as they happen, at most every 5 s.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <unordered_map>

#include "batch_reader.h"
#include "broker_session.h"
#include "commands.h"
#include "exit_codes.h"
#include "job_id.h"
#include "job_json.h"
#include "paddock/schemas/codes.h"
#include "table.h"

namespace paddock::cli {
namespace {

namespace sc = paddock::schemas;
using Clock = BrokerSession::Clock;
using std::chrono::milliseconds;

struct Pending {
  sc::JobRequest request;
  size_t row = 0;  // index into rows_ (submission order)
  Clock::time_point first_sent;
  int rejections = 0;
};

class BatchRun {
 public:
  BatchRun(const BatchOptions& o, BatchReader& reader, BrokerSession& session)
      : opts_(o), reader_(reader), session_(session), progress_(isatty(STDERR_FILENO) == 1) {}

  int run() {
    while (true) {
      fill_window();
      if (reader_done_ && in_flight_.empty() && retry_.empty()) break;
      if (auto ev = session_.next(milliseconds(50))) handle(*ev);
      if (session_.broker_silent()) return give_up(session_.silence_message());
      show_progress(false);
    }
    return finish();
  }

 private:
  // Resubmits rejected jobs whose backoff has passed, then reads new lines, up to the window.
  void fill_window() {
    std::vector<sc::JobRequest> batch;
    const auto now = Clock::now();
    while (in_flight_.size() < opts_.window) {
      Pending p;
      if (!retry_.empty()) {
        if (retry_.begin()->first > now) break;  // rejected jobs go first: wait for them
        p = std::move(retry_.begin()->second);
        retry_.erase(retry_.begin());
        ++resubmitted_;
      } else if (!reader_done_) {
        auto line = reader_.next();
        if (!line) {
          reader_done_ = true;
          break;
        }
        if (!line->job) {
          report_invalid(*line);
          continue;
        }
        p.request = std::move(*line->job);
        p.row = rows_.size();
        p.first_sent = now;
        rows_.push_back(row_without_answer(p.request.job_id));
      } else {
        break;
      }
      batch.push_back(p.request);
      const std::string id = p.request.job_id;
      in_flight_.emplace(id, std::move(p));
    }
    if (!batch.empty()) session_.client().submit(batch);
  }

  void report_invalid(const BatchLine& line) {
    ++invalid_;
    clear_progress();
    std::fprintf(stderr, "%s:%zu: invalid job, not submitted: %s\n", opts_.file.c_str(),
                 line.line_no, line.error.c_str());
  }

  void handle(const client::Event& ev) {
    using K = client::Event::Kind;
    switch (ev.kind) {
      case K::kResult:
        finish_job(ev.result.job_id, &ev.result, nullptr);
        break;
      case K::kError:
        if (ev.error.job_id.empty()) {
          warn("the broker refused a message: " + ev.error.message);
        } else {
          finish_job(ev.error.job_id, nullptr, &ev.error);
        }
        break;
      case K::kRejected:
        if (ev.error.code == sc::code(sc::JobCode::kQuotaExceeded)) quota_refused(ev.error);
        reject(ev.error.job_id);
        break;
      case K::kInvalid:
        warn("ignoring a message from the broker that cannot be decoded: " + ev.detail);
        break;
      case K::kAccepted:
      case K::kPong:
      case K::kOutput:  // batch jobs do not ask for live output
        break;
    }
  }

  void reject(const std::string& job_id) {
    auto it = in_flight_.find(job_id);
    if (it == in_flight_.end()) return;
    Pending p = std::move(it->second);
    in_flight_.erase(it);
    // 50 ms doubling to 2 s, with jitter so that many clients do not retry in step.
    const int exp = std::min(p.rejections, 6);
    ++p.rejections;
    const auto base = milliseconds(std::min(50 << exp, 2000));
    const auto jitter = milliseconds(std::uniform_int_distribution<int>(0, 50)(rng_));
    retry_.emplace(Clock::now() + base + jitter, std::move(p));
  }

  void finish_job(const std::string& job_id, const sc::JobResult* r, const sc::JobError* e) {
    auto it = in_flight_.find(job_id);
    if (it == in_flight_.end()) return;  // not ours, or answered already
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - it->second.first_sent);
    const size_t row = it->second.row;
    in_flight_.erase(it);
    ++answered_;
    if (!retry_.empty()) {  // the broker's queue has room for one more: resubmit the next now
      auto next = retry_.extract(retry_.begin());
      next.key() = Clock::now();
      retry_.insert(std::move(next));
    }
    if (e) ++errors_;
    if (opts_.json) {
      clear_progress();
      std::printf("%s\n", dump_line(r ? result_to_json(*r) : error_to_json(*e)).c_str());
      std::fflush(stdout);
    } else {
      rows_[row] = r ? row_for(*r, us.count()) : row_for(*e, us.count());
    }
  }

  // The broker refused a job at one of this tenant's limits: said at once the first time, then at
  // most every 5 s with the count since, so that a batch held back by its quota says why.
  void quota_refused(const sc::JobError& e) {
    ++quota_refusals_;
    ++quota_unreported_;
    const auto now = Clock::now();
    if (quota_reported_ != Clock::time_point{} && now - quota_reported_ < milliseconds(5000)) {
      return;
    }
    warn(std::to_string(quota_unreported_) + " job(s) refused at your tenant's limit (" +
         e.message + "); they are resubmitted with a backoff");
    quota_unreported_ = 0;
    quota_reported_ = now;
  }

  void warn(const std::string& what) {
    clear_progress();
    std::fprintf(stderr, "paddock: %s\n", what.c_str());
  }

  void show_progress(bool force) {
    if (!progress_) return;
    const auto now = Clock::now();
    if (!force && now - last_progress_ < milliseconds(200)) return;
    last_progress_ = now;
    // The broker does not say which of a submitter's jobs run and which wait: "in flight" is
    // both. The rate is answers per second since the start; the ETA needs the whole input read.
    const double elapsed = std::chrono::duration<double>(now - started_).count();
    const double rate = elapsed > 0 ? static_cast<double>(answered_) / elapsed : 0;
    std::string eta;
    const size_t left = in_flight_.size() + retry_.size();
    if (reader_done_ && rate > 0) {
      eta = ", ETA " +
            std::to_string(static_cast<long long>(static_cast<double>(left) / rate + 0.5)) + " s";
    }
    std::fprintf(stderr,
                 "\r\033[Kpaddock batch: %zu answered (%zu errors), %zu in flight (queued or "
                 "running), %zu waiting to retry, %zu invalid lines; %.1f jobs/s%s",
                 answered_, errors_, in_flight_.size(), retry_.size(), invalid_, rate, eta.c_str());
    std::fflush(stderr);
    progress_shown_ = true;
  }

  void clear_progress() {
    if (!progress_shown_) return;
    std::fprintf(stderr, "\r\033[K");
    progress_shown_ = false;
  }

  std::string summary() const {
    return std::to_string(answered_) + (answered_ == 1 ? " job" : " jobs") +
           " answered: " + std::to_string(answered_ - errors_) + " ran (status ok), " +
           std::to_string(errors_) + " Paddock errors; " + std::to_string(invalid_) +
           " invalid lines; " + std::to_string(resubmitted_) +
           " resubmissions after QueueFull or QuotaExceeded (" + std::to_string(quota_refusals_) +
           " refusals at the tenant's limits)";
  }

  int finish() {
    clear_progress();
    if (!opts_.json) {
      print_table(stdout, rows_);
      std::printf("\n%s\n", summary().c_str());
    } else {
      std::fprintf(stderr, "paddock: %s\n", summary().c_str());
    }
    std::fflush(stdout);
    return invalid_ > 0 ? exit_code::kInvalidLines : exit_code::kOk;
  }

  int give_up(const std::string& why) {
    finish();
    std::string ids;
    size_t listed = 0;
    for (const auto& [id, p] : in_flight_) {
      if (listed++ < 5) ids += (ids.empty() ? "" : ", ") + id;
    }
    for (const auto& [t, p] : retry_) {
      if (listed++ < 5) ids += (ids.empty() ? "" : ", ") + p.request.job_id;
    }
    std::fprintf(stderr, "error: %s\npaddock: %zu jobs got no answer (%s%s)%s\n", why.c_str(),
                 in_flight_.size() + retry_.size(), ids.c_str(), listed > 5 ? ", ..." : "",
                 reader_done_ ? "" : "; the rest of the file was not read");
    return exit_code::kUnavailable;
  }

  const BatchOptions& opts_;
  BatchReader& reader_;
  BrokerSession& session_;
  const bool progress_;
  bool progress_shown_ = false;
  const Clock::time_point started_ = Clock::now();
  Clock::time_point last_progress_{};
  bool reader_done_ = false;
  std::unordered_map<std::string, Pending> in_flight_;
  std::multimap<Clock::time_point, Pending> retry_;  // REJECTED, resubmitted at the key's time
  std::vector<TableRow> rows_;
  size_t answered_ = 0, errors_ = 0, invalid_ = 0, resubmitted_ = 0;
  size_t quota_refusals_ = 0, quota_unreported_ = 0;
  Clock::time_point quota_reported_{};
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace

CLI::App* add_batch_command(CLI::App& app, BatchOptions& o) {
  auto* cmd = app.add_subcommand(
      "batch",
      "Run every job of a JSON-lines file (one JobRequest per line, PROTOCOL.md field names; see\n"
      "examples/README.md) and print a table of the answers, or JSON lines with --json. Exits 0\n"
      "when every job got its final answer, 1 when some line was invalid (the others still run),\n"
      "69 when the broker stopped answering.");
  add_broker_option(*cmd, o.broker);
  add_curve_options(*cmd, o.curve);
  cmd->add_flag("--json", o.json, "one JSON object per job on stdout, as answers arrive");
  cmd->add_option("--window", o.window, "most jobs in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  cmd->add_option("--broker-timeout-ms", o.broker_timeout_ms,
                  "give up when the broker answers nothing, not even PING, for this long")
      ->capture_default_str();
  cmd->add_option("file", o.file, "the batch file, '-' for stdin")->required();
  return cmd;
}

int run_batch(const BatchOptions& o) {
  std::ifstream file;
  if (o.file != "-") {
    file.open(o.file);
    if (!file) {
      std::fprintf(stderr, "error: cannot read batch file '%s'\n", o.file.c_str());
      return exit_code::kNoInput;
    }
  }
  BatchReader reader(o.file == "-" ? std::cin : file, "batch-" + random_hex(8));
  std::optional<BrokerSession> session;
  try {
    session.emplace(o.broker, milliseconds(o.broker_timeout_ms), o.curve);
  } catch (const client::ClientError& e) {  // a malformed endpoint
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code::kUsage;
  }
  try {
    BatchRun run(o, reader, *session);
    return run.run();
  } catch (const client::ClientError& e) {  // a send failed
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code::kUnavailable;
  }
}

}  // namespace paddock::cli
