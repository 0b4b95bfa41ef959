// The shared storage mode (broker/README.md, "Several brokers on PostgreSQL"; pg_store.h has the
// database's side): several brokers on one queue. What changes from one broker with its journal:
// - SUBMIT stores the job in the database and does not queue it here: every broker claims queued
//   jobs for the credits of its own workers (before_dispatch), so a job runs wherever a worker is
//   free. The jobs this broker claimed are the ones its JobLife holds.
// - Tenants: claims are split among the tenants with queued jobs by fair share (claim_share.h);
//   a tenant's max_queued and max_running are counted over every broker in the database, under
//   the tenant's lock, in a short transaction of their own (submit(), claim_fairly()).
// - The answer reaches the submitter through the broker it is connected to: either that broker
//   ran the job (the job's routes), or it waits for the database's NOTIFY (waiters_).
// - A failed turn is not fatal (Commit::kFailed): the queue is in the database; the broker forgets
//   its jobs and re-joins under a new id, and its old claims go back to the queue.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "claim_share.h"
#include "job_store.h"
#include "pg_store.h"

namespace paddock::broker {

class SharedStore final : public JobStore {
 public:
  SharedStore(LoopHost& host, std::unique_ptr<PgStore> queue);

  dashboard::StoreLookup lookup() const override;
  bool persistent() const override { return true; }
  bool global_tenant_limits() const override { return true; }
  std::string fate(size_t held, size_t queued, const Stats& stats) const override;
  void leave() override { queue_->leave(); }

  // NOTIFYs arrive on the connection's socket.
  int event_socket() const override { return queue_->socket(); }
  // Re-joins after a failed turn (at most once a second), then takes what other brokers notified.
  void turn_start() override;
  void on_timer(TimerQueue::Kind kind) override;
  void credits_freed() override { claim_wanted_ = true; }
  // Claims queued jobs for the credits workers gave and this broker has no queued job for, shared
  // fairly among the tenants that have some (claim_share.h) within their max_running.
  void before_dispatch() override;
  // Every heartbeat: expiry, the lease, dead brokers' jobs, expired deadlines, unknown images,
  // the queue's size.
  void tick() override;
  bool dirty() const override { return queue_->dirty(); }
  // Stores the turn's answers (one statement), then commits.
  Commit commit() override;

  void submit(const std::string& route, std::vector<NewJob>& jobs,
              std::vector<SubmitReply>& replies,
              std::vector<Store::Answer>& known_answers) override;
  void cancel_unheld(const std::string& route, const std::string& job_id) override;
  void fetch_unheld(const std::string& route, const std::string& job_id) override;
  // The store keeps the first answer; a broker running it again drops its run on the NOTIFY.
  bool outcome_unheld(const std::string& job_id, schemas::Command command,
                      std::string_view body) override;
  void dispatched(const Job& job) override;
  void cancel_requested(const std::string& job_id) override;
  // Stored with the turn's other answers, in one statement before its commit: what its
  // submitters hear is then the job's stored answer.
  void answer(const Job& job, schemas::Command command, const std::string& body) override;
  const char* undelivered_note() const override { return " (it stays in the journal for FETCH)"; }

 private:
  // A turn's writes did not commit: nothing of it is sent, every job this broker held is
  // forgotten (the store gives them back to the queue when it re-joins).
  void failed(const std::string& error);
  // After a re-join: claims wanted, and the answers stored while away go to their waiters.
  void rejoined();
  void flush_answers();
  // Claims up to `n` jobs of `image` by fair share: how many it got.
  size_t claim_fairly(const std::string& image, size_t n);
  // Claimed jobs into JobLife (a cancelled one, or one past its attempts, is answered at once).
  void take(std::vector<PgStore::Claimed>& claimed);
  // Answers another broker (or this one) stored: to the routes waiting for them here.
  void deliver_answered(const std::vector<std::string>& job_ids);
  void deliver_answer(const std::string& job_id, const Store::Answer& answer);
  // The ERROR UnknownJob of a job the shared queue does not hold.
  std::vector<std::string> unknown_in_queue(const std::string& job_id);

  LoopHost& host_;
  std::unique_ptr<PgStore> queue_;
  // The answers of this turn's jobs, stored in one statement before the commit. Where another
  // broker answered a job first (it ran it before this one claimed it again), its stored answer
  // goes to the job's routes instead: a submitter hears one answer per job.
  struct Answer {
    std::string job_id;
    uint8_t command = 0;
    std::string body;
    Routes routes;
  };
  std::vector<Answer> answers_;
  // The jobs each route SUBMITted this turn (sent ACCEPTED at its commit). If the turn fails they
  // are REJECTED (retryable) instead of left unanswered: the submitter knows to submit again.
  std::vector<std::pair<std::string, std::vector<std::string>>> turn_submits_;
  // Routes waiting for jobs this broker does not hold (another broker claimed them, or nobody yet).
  std::unordered_map<std::string, Routes> waiters_;
  // A NOTIFY said jobs were queued, or the last claim got all it asked for, or the claim timer
  // (TimerQueue::Kind::kClaim) came due: claim when credits free.
  bool claim_wanted_ = true;
  ClaimShare share_;
  uint64_t unanswered_ = 0;  // jobs in the shared queue without an answer, as of a tick
};

}  // namespace paddock::broker
