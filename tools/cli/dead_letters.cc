// paddock dead-letters: the jobs that ended in an ERROR Paddock could not get past (after its
// retries), read from a broker's journal (broker/README.md "Journal"). Cancelled jobs and invalid
// requests are the submitter's doing and are not listed.
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "exit_codes.h"
#include "paddock/broker/dead_letters.h"
#include "paddock/schemas/codec.h"

namespace paddock::cli {

CLI::App* add_dead_letters_command(CLI::App& app, DeadLettersOptions& o) {
  auto* cmd = app.add_subcommand(
      "dead-letters",
      "List the jobs whose final answer was an ERROR (after the broker's retries), newest first, "
      "from the broker's journal file (read only; the broker may be running). Cancelled jobs and "
      "invalid requests are not listed. Exits 0, or 1 when the journal cannot be read.");
  auto* journal =
      cmd->add_option("--journal", o.journal, "the broker's journal file (its --journal)");
  auto* store = cmd->add_option("--store", o.store,
                                "the brokers' shared queue instead (their --store: a PostgreSQL "
                                "URI); read only");
  journal->excludes(store);
  cmd->add_option("--limit", o.limit, "at most this many")->capture_default_str();
  cmd->add_flag("--json", o.json, "one JSON object per line instead of a table");
  return cmd;
}

int run_dead_letters(const DeadLettersOptions& o) {
  if (o.journal.empty() && o.store.empty()) {
    std::fprintf(stderr, "error: give --journal FILE or --store URI\n");
    return exit_code::kUsage;
  }
  const auto failed = broker::read_dead_letters({o.journal, o.store}, o.limit * 2 + 16);
  if (!failed) {
    std::fprintf(stderr, "error: %s\n", failed.error().message.c_str());
    return 1;
  }
  size_t shown = 0;
  if (!o.json)
    std::printf("%-24s %-20s %7s  %-19s  %s\n", "JOB_ID", "VARIANT (CODE)", "ATTEMPT",
                "FINISHED (UTC)", "MESSAGE");
  for (const auto& f : *failed) {
    auto e = schemas::decode_job_error(f.body);
    if (!e) continue;
    if (e->code == 100 || e->code == 101) continue;  // InvalidRequest, Cancelled
    if (shown++ >= o.limit) break;
    if (o.json) {
      nlohmann::json j = {{"job_id", f.job_id},
                          {"tenant", f.tenant},
                          {"code", e->code},
                          {"variant", e->variant},
                          {"message", e->message},
                          {"attempt", e->attempt},
                          {"worker_id", e->worker_id},
                          {"retryable", e->retryable},
                          {"finished_unix_ms", f.finished_unix_ms}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      continue;
    }
    const std::time_t t = static_cast<std::time_t>(f.finished_unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    const std::string variant = e->variant + " (" + std::to_string(e->code) + ")";
    std::string message = e->message.substr(0, 100);
    for (char& c : message) {
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    }
    std::printf("%-24s %-20s %7u  %-19s  %s\n", f.job_id.substr(0, 24).c_str(), variant.c_str(),
                e->attempt, when, message.c_str());
  }
  if (!o.json) std::printf("%zu dead letter(s)\n", std::min(shown, o.limit));
  return exit_code::kOk;
}

}  // namespace paddock::cli
