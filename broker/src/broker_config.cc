#include "broker_config.h"

#include <filesystem>

#include <CLI/CLI.hpp>

#include "state_dir.h"

namespace paddock::broker {
namespace {

daemon::ConfigError usage(std::string message) { return {daemon::kExitUsage, std::move(message)}; }

// What the command line gives in other units or shapes than Options keeps them.
struct Flags {
  BrokerConfig config;
  uint64_t result_ttl_s = 0;
  size_t undelivered_client_mib = 0, undelivered_mib = 0;
  bool no_journal = false;
};

void add_options(CLI::App& app, Flags& f) {
  auto& opt = f.config.options;
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
  f.result_ttl_s = opt.result_ttl_ms / 1000;
  auto* journal_opt = app.add_option(
      "--journal", opt.journal_path,
      "the journal (SQLite): accepted jobs and their answers survive a restart (default "
      "<state-dir>/journal.db)");
  auto* state_opt = app.add_option(
      "--state-dir", f.config.state_dir,
      "the broker's state directory, made 0700 if missing; the journal goes to <dir>/journal.db "
      "(default: $STATE_DIRECTORY, else /var/lib/paddock/broker for root, else "
      "${XDG_STATE_HOME:-~/.local/state}/paddock/broker)");
  auto* no_journal_opt =
      app.add_flag("--no-journal", f.no_journal,
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
  app.add_option("--result-ttl-s", f.result_ttl_s, "stored answers are kept this long for FETCH")
      ->check(CLI::Range(uint64_t{1}, uint64_t{365} * 86'400))
      ->capture_default_str();
  app.add_option(
      "--metrics-address", opt.metrics_address,
      "serve Prometheus metrics at http://HOST:PORT/metrics (':PORT' is loopback, port 0 "
      "an ephemeral one; no authentication: keep it on loopback or a trusted network)");
  app.add_option("--dashboard-token-file", f.config.dashboard_token_file,
                 "the dashboard (on the metrics address) needs this operator token (the file's "
                 "first line, 16+ characters, mode 0600): Authorization: Bearer TOKEN or "
                 "/login?token=TOKEN; without one it is served on a loopback address only");
  app.add_option("--dashboard-recent-jobs", opt.dashboard_recent_jobs,
                 "finished jobs the dashboard keeps (a ring)")
      ->check(CLI::Range(size_t{1}, size_t{100'000}))
      ->capture_default_str();
  f.undelivered_client_mib = opt.max_undelivered_bytes_per_client >> 20;
  f.undelivered_mib = opt.max_undelivered_bytes >> 20;
  app.add_option("--max-undelivered-mib-per-client", f.undelivered_client_mib,
                 "answers a client has not read, held for it at most (MiB); past it they are "
                 "dropped (with a journal they stay stored for FETCH)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--max-undelivered-mib", f.undelivered_mib,
                 "answers clients have not read, held for all of them together at most (MiB)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--client-send-hwm", opt.client_send_hwm,
                 "answers in ZeroMQ's pipe to one client at most (messages), before the broker "
                 "holds them itself within the bounds above")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--ready-file", f.config.ready_file,
                 "once bound, write {\"client\",\"worker\",\"pid\"} (and \"metrics\", the metrics "
                 "server's HOST:PORT, if any) as JSON to this file");
  app.add_option("--curve-secret-key", f.config.curve_key_file,
                 "CURVE on both endpoints: the broker's secret key file (NAME.key from 'paddock "
                 "keys generate', mode 0600); needs --client-allow and --worker-allow");
  app.add_option("--client-allow", f.config.client_allow,
                 "CURVE: the submitters' public keys: an allowlist file ('KEY [NAME]' lines) or a "
                 "directory of NAME.pub files");
  app.add_option("--worker-allow", f.config.worker_allow,
                 "CURVE: the workers' public keys (a file or a directory, as --client-allow)");
  app.add_option("--tenants", opt.tenants_file,
                 "the operator's limits per tenant, a TOML file (broker/README.md, \"Tenants\"); "
                 "read at start and again on SIGHUP")
      ->check(CLI::ExistingFile);
  app.add_option("--local-tenant", opt.local_tenant,
                 "the tenant of every submitter when there is no CURVE (with CURVE a submitter's "
                 "tenant is its key's name on --client-allow)")
      ->capture_default_str();
  app.add_flag("--allow-plaintext", opt.allow_plaintext,
               "without CURVE, bind endpoints that are not loopback or ipc anyway (logs a "
               "warning: jobs and results cross the network readable by anyone on the path)");
  app.add_option("--log-level", f.config.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
}

}  // namespace

daemon::Parsed<BrokerConfig> parse_broker_args(int argc, const char* const* argv) {
  Flags f;
  CLI::App app{"paddock-broker: queues Paddock jobs and dispatches them to workers over ZeroMQ"};
  add_options(app, f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return daemon::ConfigError{0, app.help()};
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return daemon::ConfigError{0, e.what()};  // --version and the like
    return usage(std::string(e.what()) + "\nRun with --help for more information.");
  }
  auto& c = f.config;
  auto& opt = c.options;
  opt.result_ttl_ms = f.result_ttl_s * 1000;
  opt.max_undelivered_bytes_per_client = f.undelivered_client_mib << 20;
  opt.max_undelivered_bytes = f.undelivered_mib << 20;
  if (c.curve_key_file.empty() && (!c.client_allow.empty() || !c.worker_allow.empty())) {
    return usage("--client-allow and --worker-allow need --curve-secret-key");
  }
  if (!c.dashboard_token_file.empty() && opt.metrics_address.empty()) {
    return usage("--dashboard-token-file needs --metrics-address (the dashboard is served there)");
  }
  if (f.no_journal || !opt.store_url.empty()) {
    opt.journal_path.clear();
    c.state_dir.clear();
  } else if (opt.journal_path.empty()) {
    if (c.state_dir.empty()) c.state_dir = default_state_dir();
    if (c.state_dir.empty()) {
      return usage(
          "no state directory: HOME is not set; give --state-dir, --journal or "
          "--no-journal");
    }
    opt.journal_path = c.state_dir + "/journal.db";
  } else {
    c.state_dir.clear();  // --journal names its own file
  }
  return std::move(f.config);
}

base::Status make_state_dir(const BrokerConfig& config) {
  if (config.state_dir.empty()) return {};
  std::error_code ec;
  if (std::filesystem::create_directories(config.state_dir, ec) && !ec) {
    std::filesystem::permissions(config.state_dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
  }
  if (ec) return base::fail("--state-dir " + config.state_dir + ": " + ec.message());
  return {};
}

base::Status load_secrets(BrokerConfig& config) {
  auto& opt = config.options;
  if (!config.curve_key_file.empty()) {
    try {  // the client library's key files report by throwing (curve::KeyError)
      opt.curve_secret_key = curve::read_secret_key(config.curve_key_file).secret_key;
      if (!config.client_allow.empty()) {
        opt.client_allow = curve::read_allowlist(config.client_allow);
      }
      if (!config.worker_allow.empty()) {
        opt.worker_allow = curve::read_allowlist(config.worker_allow);
      }
    } catch (const curve::KeyError& e) {
      return base::fail(e.what());
    }
  }
  if (!config.dashboard_token_file.empty()) {
    auto token = read_dashboard_token(config.dashboard_token_file);
    if (!token) return std::move(token).error();
    opt.dashboard_token = std::move(token).value();
  }
  return {};
}

}  // namespace paddock::broker
