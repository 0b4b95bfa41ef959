// paddock-broker: the broker daemon. A thin shell over paddock::broker::Broker.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "paddock/broker/broker.h"
#include "state_dir.h"

namespace {

// Handlers are installed first thing, so a signal during start-up is not fatal: the broker stops
// as soon as it runs.
std::atomic<bool> g_stop_requested{false};
std::atomic<paddock::broker::Broker*> g_broker{nullptr};

extern "C" void on_signal(int) {
  g_stop_requested.store(true);
  if (auto* b = g_broker.load()) b->stop();
}

// Writes the bound endpoints as JSON, atomically (write a temp file, then rename), so a script
// polling for the file never reads half of it.
void write_ready_file(const std::string& path, const paddock::broker::Broker& broker) {
  nlohmann::json j = {{"client", broker.client_endpoint()},
                      {"worker", broker.worker_endpoint()},
                      {"pid", static_cast<int>(getpid())}};
  if (!broker.metrics_address().empty()) j["metrics"] = broker.metrics_address();
  if (!broker.curve_public_key().empty()) j["curve_public_key"] = broker.curve_public_key();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << "\n";
    if (!out) throw std::runtime_error("write " + tmp + " failed");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  paddock::broker::Options opt;
  std::string ready_file;
  std::string log_level = "info";
  CLI::App app{"paddock-broker: queues Paddock jobs and dispatches them to workers over ZeroMQ"};
  app.add_option("--client-endpoint", opt.client_endpoint,
                 "ZeroMQ endpoint for submitters; port * picks a free one")
      ->capture_default_str();
  app.add_option("--worker-endpoint", opt.worker_endpoint,
                 "ZeroMQ endpoint for workers; port * picks a free one")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", opt.heartbeat_ms, "heartbeat period, both ways")
      ->check(CLI::Range(10u, 600'000u))
      ->capture_default_str();
  app.add_option("--liveness", opt.liveness, "heartbeats a worker may miss before it is dead")
      ->check(CLI::Range(1u, 100u))
      ->capture_default_str();
  app.add_option("--retry-base-ms", opt.retry_base_ms,
                 "a retryable ERROR is retried after base * 2^(attempt-1) ms, jittered")
      ->capture_default_str();
  app.add_option("--retry-cap-ms", opt.retry_cap_ms, "longest backoff before a retry")
      ->capture_default_str();
  app.add_option("--max-attempts", opt.max_attempts,
                 "dispatches of one job before it fails with WorkerLost")
      ->check(CLI::Range(1u, 100u))
      ->capture_default_str();
  app.add_option("--overdue-margin-ms", opt.overdue_margin_ms,
                 "a job a live worker holds longer than its timeout_ms plus this without an "
                 "answer is taken back and re-queued with attempt + 1 (WorkerLost past "
                 "--max-attempts)")
      ->check(CLI::Range(0u, 86'400'000u))
      ->capture_default_str();
  app.add_option("--max-queue", opt.max_queue, "jobs held at most; beyond, SUBMIT is REJECTED")
      ->check(CLI::Range(size_t{1}, size_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--image-grace-ms", opt.image_grace_ms,
                 "a job whose image no connected worker has is answered UnknownImage at once, "
                 "unless a worker had it (or the first worker connected) less than this ago")
      ->check(CLI::Range(0u, 3'600'000u))
      ->capture_default_str();
  uint64_t result_ttl_s = opt.result_ttl_ms / 1000;
  auto* journal_opt = app.add_option(
      "--journal", opt.journal_path,
      "the journal (SQLite): accepted jobs and their answers survive a restart (default "
      "<state-dir>/journal.db)");
  std::string state_dir;
  auto* state_opt = app.add_option(
      "--state-dir", state_dir,
      "the broker's state directory, made 0700 if missing; the journal goes to <dir>/journal.db "
      "(default: $STATE_DIRECTORY, else /var/lib/paddock/broker for root, else "
      "${XDG_STATE_HOME:-~/.local/state}/paddock/broker)");
  bool no_journal = false;
  auto* no_journal_opt =
      app.add_flag("--no-journal", no_journal,
                   "keep jobs in memory only: a restart loses every job not yet answered (logs a "
                   "warning)")
          ->excludes(journal_opt)
          ->excludes(state_opt);
  app.add_option("--store", opt.store_url,
                 "keep the queue in PostgreSQL instead of the journal: a libpq URI or "
                 "connection string (postgresql://USER@HOST/DB); every broker given the same "
                 "database shares one queue (broker/README.md, \"Several brokers on "
                 "PostgreSQL\"); a password belongs in ~/.pgpass or PGPASSFILE, not here")
      ->excludes(journal_opt)
      ->excludes(state_opt)
      ->excludes(no_journal_opt);
  app.add_option("--lease-ms", opt.lease_ms,
                 "with --store: a broker that has not renewed its lease this long is dead, and "
                 "the jobs it claimed go back to the queue")
      ->check(CLI::Range(1'000u, 600'000u))
      ->capture_default_str();
  app.add_option("--broker-name", opt.broker_name,
                 "with --store: this broker's name in the shared queue (default: the host name)");
  app.add_option("--result-ttl-s", result_ttl_s, "stored answers are kept this long for FETCH")
      ->check(CLI::Range(uint64_t{1}, uint64_t{365} * 86'400))
      ->capture_default_str();
  app.add_option(
      "--metrics-address", opt.metrics_address,
      "serve Prometheus metrics at http://HOST:PORT/metrics (':PORT' is loopback, port 0 "
      "an ephemeral one; no authentication: keep it on loopback or a trusted network)");
  std::string dashboard_token_file;
  app.add_option("--dashboard-token-file", dashboard_token_file,
                 "the dashboard (on the metrics address) needs this operator token (the file's "
                 "first line, 16+ characters, mode 0600): Authorization: Bearer TOKEN or "
                 "/login?token=TOKEN; without one it is served on a loopback address only");
  app.add_option("--dashboard-recent-jobs", opt.dashboard_recent_jobs,
                 "finished jobs the dashboard keeps (a ring)")
      ->check(CLI::Range(size_t{1}, size_t{100'000}))
      ->capture_default_str();
  size_t undelivered_client_mib = opt.max_undelivered_bytes_per_client >> 20;
  size_t undelivered_mib = opt.max_undelivered_bytes >> 20;
  app.add_option("--max-undelivered-mib-per-client", undelivered_client_mib,
                 "answers a client has not read, held for it at most (MiB); past it they are "
                 "dropped (with a journal they stay stored for FETCH)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--max-undelivered-mib", undelivered_mib,
                 "answers clients have not read, held for all of them together at most (MiB)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--client-send-hwm", opt.client_send_hwm,
                 "answers in ZeroMQ's pipe to one client at most (messages), before the broker "
                 "holds them itself within the bounds above")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--ready-file", ready_file,
                 "once bound, write {\"client\",\"worker\",\"pid\"} (and \"metrics\", the metrics "
                 "server's HOST:PORT, if any) as JSON to this file");
  std::string curve_key_file;
  std::string client_allow;
  std::string worker_allow;
  app.add_option("--curve-secret-key", curve_key_file,
                 "CURVE on both endpoints: the broker's secret key file (NAME.key from 'paddock "
                 "keys generate', mode 0600); needs --client-allow and --worker-allow");
  app.add_option("--client-allow", client_allow,
                 "CURVE: the submitters' public keys: an allowlist file ('KEY [NAME]' lines) or a "
                 "directory of NAME.pub files");
  app.add_option("--worker-allow", worker_allow,
                 "CURVE: the workers' public keys (a file or a directory, as --client-allow)");
  app.add_flag("--allow-plaintext", opt.allow_plaintext,
               "without CURVE, bind endpoints that are not loopback or ipc anyway (logs a "
               "warning: jobs and results cross the network readable by anyone on the path)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  opt.result_ttl_ms = result_ttl_s * 1000;
  opt.max_undelivered_bytes_per_client = undelivered_client_mib << 20;
  opt.max_undelivered_bytes = undelivered_mib << 20;
  if (no_journal || !opt.store_url.empty()) {
    opt.journal_path.clear();
  } else if (opt.journal_path.empty()) {
    if (state_dir.empty()) state_dir = paddock::broker::default_state_dir();
    if (state_dir.empty()) {
      std::fprintf(stderr,
                   "no state directory: HOME is not set; give --state-dir, --journal or "
                   "--no-journal\n");
      return 2;
    }
    std::error_code ec;
    // Only a directory made here is narrowed to 0700; an operator's own keeps its mode.
    if (std::filesystem::create_directories(state_dir, ec) && !ec) {
      std::filesystem::permissions(state_dir, std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::replace, ec);
    }
    if (ec) {
      std::fprintf(stderr, "--state-dir %s: %s\n", state_dir.c_str(), ec.message().c_str());
      return 2;
    }
    opt.journal_path = state_dir + "/journal.db";
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("paddock"));  // logs go to stderr
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ broker: %v");
  try {
    if (curve_key_file.empty() && (!client_allow.empty() || !worker_allow.empty())) {
      throw std::runtime_error("--client-allow and --worker-allow need --curve-secret-key");
    }
    if (!curve_key_file.empty()) {
      opt.curve_secret_key = paddock::curve::read_secret_key(curve_key_file).secret_key;
      if (!client_allow.empty()) opt.client_allow = paddock::curve::read_allowlist(client_allow);
      if (!worker_allow.empty()) opt.worker_allow = paddock::curve::read_allowlist(worker_allow);
    }
    if (!dashboard_token_file.empty()) {
      if (opt.metrics_address.empty()) {
        throw std::runtime_error(
            "--dashboard-token-file needs --metrics-address (the dashboard "
            "is served there)");
      }
      opt.dashboard_token = paddock::broker::read_dashboard_token(dashboard_token_file);
    }
    if (!opt.store_url.empty()) {
      // The store logs where it is (without a password) once connected.
    } else if (opt.journal_path.empty()) {
      spdlog::warn(
          "no journal (--no-journal): jobs are held in memory only, and a restart loses "
          "every job not yet answered");
    } else {
      spdlog::info("journal {}", opt.journal_path);
    }
    paddock::broker::Broker broker(opt);
    g_broker.store(&broker);
    if (g_stop_requested.load()) broker.stop();
    if (!ready_file.empty()) write_ready_file(ready_file, broker);
    const auto stats = broker.run();
    g_broker.store(nullptr);
    if (stats.journal_failed) return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
