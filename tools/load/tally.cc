#include "load/tally.h"

#include <sys/resource.h>

#include <cstdio>

namespace paddock::load {
namespace {

using nlohmann::ordered_json;

struct Quantile {
  const char* key;
  const char* label;
  double q;
};
constexpr Quantile kQuantiles[] = {
    {"p50", "p50", 50}, {"p90", "p90", 90}, {"p99", "p99", 99}, {"p999", "p99.9", 99.9}};

ordered_json latency_json(const Histogram& h) {
  ordered_json j;
  for (const auto& q : kQuantiles) j[q.key] = h.percentile(q.q);
  j["max"] = h.max();
  j["min"] = h.min();
  j["mean"] = h.mean();
  j["count"] = h.count();
  return j;
}

std::string printf_string(const char* format, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

std::string latency_row(const char* name, const Histogram& h) {
  std::string row = printf_string("  %-18s", name);
  for (const auto& q : kQuantiles)
    row += printf_string(" %9.3f", static_cast<double>(h.percentile(q.q)) / 1000);
  row += printf_string(" %9.3f %9.3f %9llu\n", static_cast<double>(h.max()) / 1000, h.mean() / 1000,
                       static_cast<unsigned long long>(h.count()));
  return row;
}

double throughput(const RunInfo& run, const Tally& t) {
  return run.elapsed_s > 0 ? static_cast<double>(t.answered()) / run.elapsed_s : 0;
}

}  // namespace

void Tally::add_result(const schemas::JobResult& r, uint64_t latency_us) {
  ++ok;
  if (r.exit_code != 0) ++nonzero_exit;
  if (r.timed_out) ++timed_out;
  ++(r.warm ? warm : cold);
  ++backends[r.backend.empty() ? "unknown" : r.backend];
  to_result.record(latency_us);
}

void Tally::add_error(const schemas::JobError& e, uint64_t latency_us) {
  ++errors;
  ++errors_by_variant[e.variant.empty() ? "code " + std::to_string(e.code) : e.variant];
  to_result.record(latency_us);
}

ordered_json summary_json(const RunInfo& run, const Tally& t) {
  ordered_json j;
  j["mode"] = run.rate ? "open" : "closed";
  if (run.rate) j["rate"] = *run.rate;
  if (run.concurrency) j["concurrency"] = *run.concurrency;
  j["broker"] = run.broker;
  j["complete"] = run.complete;
  j["jobs"] = run.jobs;
  j["answered"] = t.answered();
  j["unanswered"] = run.jobs - t.answered();
  j["ok"] = t.ok;
  j["nonzero_exit"] = t.nonzero_exit;
  j["timed_out"] = t.timed_out;
  j["errors"] = t.errors;
  j["errors_by_variant"] = ordered_json::object();
  for (const auto& [variant, n] : t.errors_by_variant) j["errors_by_variant"][variant] = n;
  j["rejected"] = t.rejected;
  j["duplicate_answers"] = t.duplicate_answers;
  j["output_chunks"] = t.output_chunks;
  j["output_bytes"] = t.output_bytes;
  j["elapsed_s"] = run.elapsed_s;
  j["throughput_jobs_per_s"] = throughput(run, t);
  // This process's own CPU over its whole run (user + system, all threads: ZeroMQ's too).
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  j["cpu_s"] = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
               static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
  j["latency_from"] = run.rate ? "scheduled_send" : "send";
  j["latency_us"] = {{"submit_to_accepted", latency_json(t.to_accepted)},
                     {"submit_to_result", latency_json(t.to_result)}};
  j["warm"] = t.warm;
  j["cold"] = t.cold;
  j["backends"] = ordered_json::object();
  for (const auto& [backend, n] : t.backends) j["backends"][backend] = n;
  return j;
}

std::string summary_text(const RunInfo& run, const Tally& t) {
  std::string out = run.rate ? printf_string("open loop, %g jobs/s", *run.rate)
                             : printf_string("closed loop, concurrency %u", *run.concurrency);
  out += " against " + run.broker + (run.complete ? "" : " (INCOMPLETE)") + "\n";
  out += printf_string(
      "jobs        %llu sent, %llu answered: %llu ran (%llu exited non-zero, %llu timed out), "
      "%llu errors\n",
      static_cast<unsigned long long>(run.jobs), static_cast<unsigned long long>(t.answered()),
      static_cast<unsigned long long>(t.ok), static_cast<unsigned long long>(t.nonzero_exit),
      static_cast<unsigned long long>(t.timed_out), static_cast<unsigned long long>(t.errors));
  for (const auto& [variant, n] : t.errors_by_variant) {
    out += printf_string("  error     %s: %llu\n", variant.c_str(),
                         static_cast<unsigned long long>(n));
  }
  if (t.output_chunks)
    out += printf_string("live output %llu chunks, %llu bytes\n",
                         static_cast<unsigned long long>(t.output_chunks),
                         static_cast<unsigned long long>(t.output_bytes));
  if (t.rejected)
    out += printf_string("rejected    %llu times (QueueFull), sent again\n",
                         static_cast<unsigned long long>(t.rejected));
  if (t.duplicate_answers)
    out += printf_string("DUPLICATES  %llu jobs answered twice\n",
                         static_cast<unsigned long long>(t.duplicate_answers));
  out += printf_string("elapsed     %.3f s, %.1f jobs/s\n", run.elapsed_s, throughput(run, t));
  out +=
      printf_string("starts      %llu warm, %llu cold\n", static_cast<unsigned long long>(t.warm),
                    static_cast<unsigned long long>(t.cold));
  for (const auto& [backend, n] : t.backends) {
    out += printf_string(
        "backend     %s: %llu%s\n", backend.c_str(), static_cast<unsigned long long>(n),
        backend == "memory" ? " (the in-memory test double: nothing ran in a VM)" : "");
  }
  out += printf_string("latency ms, from %s:\n",
                       run.rate ? "each job's scheduled send time" : "each job's send");
  out += printf_string("  %-18s %9s %9s %9s %9s %9s %9s %9s\n", "", "p50", "p90", "p99", "p99.9",
                       "max", "mean", "count");
  out += latency_row("submit->accepted", t.to_accepted);
  out += latency_row("submit->result", t.to_result);
  return out;
}

}  // namespace paddock::load
