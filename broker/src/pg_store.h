// The shared queue on PostgreSQL (issue 11; broker/README.md "Several brokers on PostgreSQL"):
// any number of brokers keep one queue in one database, active-active.
//
// - A job is stored (INSERT … ON CONFLICT DO NOTHING: idempotent by job_id) in the turn's
//   transaction; the broker says ACCEPTED after the commit.
// - A broker *claims* queued jobs for the credits its workers gave it (`FOR UPDATE SKIP LOCKED`, so
//   brokers never wait on each other's claims) and holds them under its lease: a row in
//   paddock_brokers that it renews every heartbeat. A broker whose lease lapsed is dead; any
//   broker then puts its claimed jobs back in the queue (`reap`), one attempt further on for a job
//   that had been dispatched, as a restarted single broker does.
// - The first answer stored for a job wins (`WHERE state <> answered`). Storing it NOTIFYs
//   `paddock_answered` with the job id (a trigger, so no answer is stored without it), which
//   every broker LISTENs to: the broker the submitter is connected to reads the answer and sends
//   it on. Storing a queued job NOTIFYs `paddock_queued` (idle brokers claim at once), and a
//   cancel of a job claimed elsewhere NOTIFYs `paddock_cancel`.
// - Every time is the database's clock (now()), never a broker host's: brokers on several hosts
//   need not agree on the time for leases to work.
//
// A failed statement fails the turn: commit() returns false and the broker forgets what it holds
// and re-joins with a new broker id (`rejoin`), handing its old claims back to the queue.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/schemas/messages.h"
#include "store.h"

struct pg_conn;

namespace paddock::broker {

class PgStore final : public Store {
 public:
  struct Settings {
    std::string conninfo;  // a libpq connection string or URI: "postgresql://…", "host=… dbname=…"
    std::string broker_name;     // prefix of this broker's id (host and pid are added)
    uint32_t lease_ms = 10'000;  // a broker that has not renewed its lease for this long is dead
    uint32_t connect_timeout_s = 5;
  };
  // Connects, creates or checks the schema (under an advisory lock: brokers starting together do
  // not race), and registers this broker with a fresh lease; or says why it cannot (naming the
  // server, never its password).
  static base::Expected<std::unique_ptr<PgStore>> open(Settings settings);
  // For tools that read (paddock dead-letters): connects, checks that the schema is there, and
  // neither creates anything nor registers as a broker.
  static base::Expected<std::unique_ptr<PgStore>> open_reader(const std::string& conninfo);
  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  // Store
  std::string describe() const override;
  void dispatched(std::string_view job_id, uint32_t attempt, int64_t row = 0) override;
  void cancel_requested(std::string_view job_id) override;
  void finished(std::string_view job_id, uint8_t command, std::string_view body, uint64_t unix_ms,
                int64_t row = 0) override;
  base::Status commit() override;
  bool dirty() const override { return in_transaction_; }
  std::optional<Answer> answer_of(std::string_view job_id) override;
  uint64_t expire(uint64_t cutoff_unix_ms) override;
  uint64_t size() override;
  std::vector<Failed> failed(size_t limit) override;
  std::optional<Stored> stored(std::string_view job_id) override;

  // Answers of many jobs in one statement (rows locked in job_id order, so that brokers storing
  // overlapping answers never deadlock). `won[i]`: finish_first()'s for `answers[i]`. false: the
  // statement failed and the turn fails at commit().
  struct Finish {
    std::string_view job_id;
    uint8_t command;
    std::string_view body;
  };
  bool finish_all(const std::vector<Finish>& answers, uint64_t unix_ms, std::vector<bool>& won);

  // finished() that says whether this answer is the job's: false if another was stored first (a
  // concurrent one waits for the other broker's commit, on the row's lock) or the statement failed.
  bool finish_first(std::string_view job_id, uint8_t command, std::string_view body,
                    uint64_t unix_ms);

  // What SUBMIT of one job did.
  enum class Submitted {
    kNew,       // stored now
    kHeld,      // stored before, not answered yet
    kAnswered,  // stored before and answered: `answer`
    kConflict,  // its job_id names another request (stored before, or earlier in the batch)
    kFailed,    // the statement failed: the turn fails at commit()
  };

  // SUBMIT of many jobs in two statements (an INSERT of all, then a look-up of those already
  // there). `outcome[i]` and `answers[i]` are submit()'s for `requests[i]`. false: the statement
  // failed and the turn fails at commit().
  struct Submission {
    const schemas::JobRequest* request;
    std::string_view body;
  };
  bool submit_all(const std::vector<Submission>& submissions, uint64_t unix_ms,
                  std::vector<Submitted>& outcome, std::vector<std::optional<Answer>>& answers);

  // Claims up to `n` queued jobs of `tenant` and `image` for this broker, best first (priority,
  // then acceptance order). A claimed job is marked dispatched: if this broker dies holding it,
  // its next claim is a further attempt. (Which tenants, and how many of each: SharedStore's fair
  // share.)
  struct Claimed {
    std::string job_id;
    std::string request;  // the encoded JobRequest
    uint32_t attempt = 1;
    bool cancelled = false;  // CANCELled while a broker that died held it
    uint64_t accepted_unix_ms = 0;
  };
  std::vector<Claimed> claim(std::string_view image, std::string_view tenant, size_t n);
  // The tenants with queued jobs of `image` (at most `limit`, by name).
  std::vector<std::string> queued_tenants(std::string_view image, size_t limit);

  // A tenant's global limits (SharedStore): lock_tenants() takes the tenants' locks, in one
  // order, until the commit, so that a count and what is done on it are one step across brokers;
  // count_of_tenant() counts its jobs in a state, up to `cap` (nullopt: the statement failed).
  // The caller keeps such transactions short and holding nothing else: it commits before and
  // after.
  enum class JobState : int { kQueued = 0, kClaimed = 1 };
  void lock_tenants(std::vector<std::string> tenants);
  std::optional<uint64_t> count_of_tenant(std::string_view tenant, JobState state, uint64_t cap);

  // CANCEL of a job this broker does not hold. kQueued: it was in the queue and is now answered
  // with `answer` (the caller's encoded Cancelled error); kRunning: another broker holds it and
  // is told (NOTIFY paddock_cancel); kAnswered: too late; kUnknown: never stored or expired.
  enum class Cancel { kQueued, kRunning, kAnswered, kUnknown, kFailed };
  Cancel cancel(std::string_view job_id, uint8_t command, std::string_view answer,
                uint64_t unix_ms);

  // The stored answers of those of `job_ids` that have one (one statement per 1000 ids). With
  // `missing`, also the ids the queue does not hold at all (never stored, or expired); not filled
  // if a statement failed.
  std::vector<std::pair<std::string, Answer>> answers_of(
      const std::vector<std::string>& job_ids, std::vector<std::string>* missing = nullptr);

  // Renews this broker's lease (and the images its workers have, for the others to see). false if
  // the lease had lapsed (the row is gone: other brokers may have taken its jobs).
  bool renew(const std::vector<std::string>& images);
  // Puts the jobs claimed by brokers whose lease lapsed back in the queue and forgets those
  // brokers. Returns how many jobs.
  uint64_t reap();
  // Jobs stored and not answered, for the queue limit (refreshed by the caller now and then).
  uint64_t unanswered();
  // Queued jobs whose deadline (unix ms) passed: claimed here, for the caller to answer.
  std::vector<Claimed> claim_expired(uint64_t now_unix_ms, size_t limit);

  // Queued jobs accepted before `accepted_before_unix_ms` whose image no live broker's workers
  // have, while some broker has workers: claimed here, for the caller to answer UnknownImage.
  std::vector<Claimed> claim_unknown_image(uint64_t accepted_before_unix_ms, size_t limit);

  // What other brokers said since the last call (NOTIFY). Reads without blocking.
  struct Events {
    std::vector<std::string> answered;   // job ids whose answer was stored
    std::vector<std::string> cancelled;  // job ids whose CANCEL reached another broker
    bool queued = false;                 // jobs were stored: worth a claim
  };
  Events take_events();
  // The connection's socket, for poll (readable: notifications); -1 while disconnected.
  int socket() const;

  // After a failed turn: connect again if needed, register under a new broker id, and hand every
  // job the old id held back to the queue; or says why not (the server cannot be reached yet):
  // call again later.
  base::Status rejoin();
  bool healthy() const override { return healthy_; }
  const std::string& broker_id() const { return broker_id_; }
  // Clean shutdown: this broker's claims go back to the queue now, its lease is dropped.
  void leave();

 private:
  explicit PgStore(Settings settings) : settings_(std::move(settings)) {}
  base::Status connect(bool reader = false);
  base::Status register_broker();
  // Gives the claims of broker `id` back to the queue and removes its lease row: how many jobs it
  // held, or nullopt if a statement failed.
  std::optional<uint64_t> release(const std::string& id);
  void begin();
  void fail(const std::string& what);

  Settings settings_;
  pg_conn* conn_ = nullptr;
  std::string broker_id_;
  uint32_t generation_ = 0;
  bool in_transaction_ = false;
  bool healthy_ = true;
  std::string write_error_;  // the first statement that failed in this turn
};

}  // namespace paddock::broker
