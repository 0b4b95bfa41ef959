// The embedded storage mode (broker/README.md, "Journal"): one broker. The jobs it holds are all
// the jobs there are (JobLife); with a journal (SQLite, journal.h) each is stored before ACCEPTED,
// its answer is kept for FETCH until it expires, and a restart re-queues what was unanswered
// (start()). Without one, nothing outlives the process and an answer goes once to its routes.
//
// A journal that cannot commit stops the loop (Commit::kFatal): what the turn would have said
// depends on writes that did not happen. Submitters retry (submit is idempotent) once a broker
// runs again on an intact journal.
#pragma once

#include <memory>
#include <string>

#include "job_store.h"
#include "journal.h"

namespace paddock::broker {

class EmbeddedStore final : public JobStore {
 public:
  // `journal`: nullptr for none.
  EmbeddedStore(LoopHost& host, std::unique_ptr<Journal> journal);

  // Re-queues the journal's unanswered jobs (a job that was on a worker starts its next attempt;
  // that worker's outcome of the attempt before still answers it); a Failure if the journal
  // cannot commit.
  base::Status start() override;
  dashboard::StoreLookup lookup() const override;
  bool persistent() const override { return journal_ != nullptr; }
  std::string fate(size_t held, size_t queued, const Stats& stats) const override;

  void tick() override;
  bool dirty() const override { return journal_ != nullptr && journal_->dirty(); }
  Commit commit() override;
  void refresh(Stats& stats) override;

  void submit(const std::string& route, std::vector<NewJob>& jobs,
              std::vector<SubmitReply>& replies,
              std::vector<Store::Answer>& known_answers) override;
  void cancel_unheld(const std::string& route, const std::string& job_id) override;
  void fetch_unheld(const std::string& route, const std::string& job_id) override;
  void dispatched(const Job& job) override;
  void cancel_requested(const std::string& job_id) override;
  void answer(const Job& job, schemas::Command command, const std::string& body) override;
  const char* undelivered_note() const override {
    return journal_ ? " (it stays in the journal for FETCH)" : "";
  }

 private:
  LoopHost& host_;
  std::unique_ptr<Journal> journal_;
  // Jobs stored without an answer as of the journal's last commit (what a restart re-queues).
  size_t unanswered_at_commit_ = 0;
};

}  // namespace paddock::broker
