// The broker: one event loop over two ROUTER sockets, one for submitters and one for workers
// (schemas/PROTOCOL.md is the contract). It queues jobs by priority, dispatches them to workers
// by credit, watches heartbeats, re-queues the jobs of dead workers, and routes each job's final
// answer to the connections waiting for it. It knows nothing of VMs.
//
// With a journal (Options::journal_path) every accepted job, its dispatches and its final answer
// are stored before the submitter hears of them: a restarted broker re-queues what was not
// answered and answers FETCH from what was (broker/README.md "Journal"). Without one the queue
// lives in memory only.
//
// Thread-safety: a Broker is driven by one thread, inside run(); stop() may be called from any
// thread or a signal handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "paddock/base/expected.h"
#include "paddock/client/curve.h"

namespace paddock::broker {

struct Options {
  std::string client_endpoint = "tcp://127.0.0.1:5555";
  std::string worker_endpoint = "tcp://127.0.0.1:5556";
  uint32_t heartbeat_ms = 1000;  // heartbeat period, both ways
  uint32_t liveness = 3;         // heartbeats a worker may miss before it is dead
  uint32_t max_attempts = 3;     // dispatches of one job (lost workers and retries) at most
  // The held-job watchdog: a job a live worker holds longer than its timeout_ms plus this since
  // it was sent, without an answer, is taken back from it (CANCEL) and re-queued with attempt + 1
  // (ERROR 102 WorkerLost past max_attempts), as if its worker had died (broker/README.md).
  uint32_t overdue_margin_ms = 120'000;
  // A retryable ERROR (a host-side fault on one worker) sends the job out again after
  // min(retry_cap_ms, retry_base_ms * 2^(attempt-1)), times a jitter in [0.5, 1).
  uint32_t retry_base_ms = 200;
  uint32_t retry_cap_ms = 10'000;
  size_t max_queue = 1'000'000;  // jobs held (queued + running); beyond it SUBMIT is REJECTED
  // A job whose image no connected worker has is answered ERROR 106 UnknownImage at once, unless
  // a worker had that image, or the first worker connected (after a time with none), less than
  // this long ago: workers reconnecting get this long to say what they have. With no worker
  // connected, jobs wait (broker/README.md, "Images").
  uint32_t image_grace_ms = 5'000;
  int send_hwm = 100'000;  // per-peer outgoing message high-water mark (workers)
  // Answers to a client that does not read are bounded in bytes, not only in count. ZeroMQ's own
  // pipe to each client holds at most client_send_hwm messages; past it the broker queues a
  // client's answers itself, at most max_undelivered_bytes_per_client per connection and
  // max_undelivered_bytes for all connections together. An answer past either bound is dropped
  // and counted (undeliverable); with a journal it stays stored for FETCH (broker/README.md,
  // "Slow submitters").
  int client_send_hwm = 1000;
  size_t max_undelivered_bytes_per_client = 64u << 20;
  size_t max_undelivered_bytes = 1u << 30;
  // The journal's file (SQLite, WAL); empty: no journal, nothing survives a restart.
  std::string journal_path;
  // The shared queue instead of the journal: a libpq connection string or URI
  // ("postgresql://user@host/db"). Any number of brokers given the same database share one queue
  // (broker/README.md, "Several brokers on PostgreSQL"). Excludes journal_path.
  std::string store_url;
  uint32_t lease_ms = 10'000;  // shared queue: a broker silent this long is dead; its jobs go back
  std::string broker_name;     // shared queue: prefix of this broker's id ("" = the host name)
  uint64_t result_ttl_ms = 86'400'000;  // stored answers are kept this long for FETCH
  // Serve Prometheus metrics over HTTP at http://<this>/metrics: "HOST:PORT", ":PORT" for
  // loopback, port 0 for an ephemeral one (broker/README.md, "Metrics"). Empty: no server. There
  // is no authentication: a non-loopback address shows the metrics to whoever can reach it.
  std::string metrics_address;
  // The dashboard and its JSON API, on the metrics server (broker/README.md, "Dashboard"). The
  // operator token: "" for none, when the dashboard is served on a loopback address only (on
  // another it is refused); with one, every dashboard request must carry it.
  std::string dashboard_token;
  size_t dashboard_recent_jobs = 1000;  // finished jobs the dashboard keeps
  // CURVE on both endpoints (README.md, "Operating Paddock"): the broker's secret key (Z85).
  // Empty: plaintext, which is refused on an endpoint that is not loopback or ipc unless
  // allow_plaintext (then a warning is logged at start).
  std::string curve_secret_key;
  // With CURVE, the public keys (Z85 -> name) let in on each endpoint; both must be given. A key
  // in one list only is refused on the other endpoint.
  // Each client key's name is its tenant (broker/README.md, "Tenants"); several keys may share one.
  curve::Allowlist client_allow;
  curve::Allowlist worker_allow;
  bool allow_plaintext = false;
  // The tenant of every submitter without CURVE (schemas::valid_tenant).
  std::string local_tenant = "local";
  // The operator's limits per tenant, a TOML file (broker/README.md, "Tenants"), read at start
  // (a Failure if it does not read) and again by reload(); "": the defaults for every tenant.
  std::string tenants_file;
};

struct Stats {
  uint64_t accepted = 0;
  uint64_t rejected = 0;
  uint64_t invalid = 0;
  uint64_t results = 0;
  uint64_t errors = 0;
  uint64_t requeued = 0;
  uint64_t undeliverable = 0;
  uint64_t output_forwarded = 0;  // OUTPUT chunks of streaming jobs sent to their submitters
  uint64_t output_dropped = 0;    // ... dropped: the submitter's pipe was full or it was gone
  uint64_t recovered = 0;         // jobs re-queued from the journal at start
  uint64_t retried = 0;           // retryable ERRORs sent out again after a backoff
  uint64_t stale_outcomes = 0;  // worker RESULTs/ERRORs not of a job's current assignment, dropped
  uint64_t overdue = 0;         // jobs taken back from a live worker by the held-job watchdog
  uint64_t quarantined = 0;     // journal rows that failed their checksum (answered JournalDamaged)
  bool journal_failed = false;  // the loop stopped because the journal could not commit
};

// Reads the dashboard's operator token: a file's first line, at least 16 printable characters,
// the file not readable by its group or others; a Failure naming the file.
base::Expected<std::string> read_dashboard_token(const std::string& path);

class Broker {
 public:
  // Checks the security options first (a Failure: CURVE without both allowlists, or plaintext on
  // an endpoint that is not loopback or ipc without allow_plaintext). Opens the journal or the
  // shared queue (a Failure naming the file or server and what is wrong: corrupt, not a journal,
  // unreachable) and re-queues what it holds, then binds both endpoints (a Failure if one cannot
  // be bound). Then starts the metrics server, if asked (a Failure naming the address if it
  // cannot listen). An endpoint's port may be "*" (ephemeral); client_endpoint() and
  // worker_endpoint() tell what was bound. Nothing is left open after a Failure.
  static base::Expected<std::unique_ptr<Broker>> open(Options options);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  std::string client_endpoint() const;
  std::string worker_endpoint() const;
  // The metrics server's bound "HOST:PORT"; "" without one.
  std::string metrics_address() const;
  // The broker's CURVE public key (Z85); "" in plaintext.
  std::string curve_public_key() const;

  // Runs the loop until stop() is called. Returns the counters.
  Stats run();
  void stop() { stop_.store(true); }
  // Reads Options::tenants_file again at the loop's next turn (async-signal-safe: SIGHUP). A file
  // that does not read keeps the limits in force, and the broker logs why.
  void reload() { reload_.store(true); }

 private:
  class Loop;
  explicit Broker(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_{false};
};

}  // namespace paddock::broker
