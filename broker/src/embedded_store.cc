#include "embedded_store.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "answers.h"
#include "tenancy.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

EmbeddedStore::EmbeddedStore(LoopHost& host, std::unique_ptr<Journal> journal)
    : host_(host), journal_(std::move(journal)) {}

base::Status EmbeddedStore::start() {
  if (!journal_) return {};
  const Options& options = host_.options();
  Stats& stats = host_.stats();
  JobLife& life = host_.life();
  const auto pending = journal_->pending();
  for (const auto& p : pending) {
    // p.job_id is the job's key (tenancy.h); the request names the submitter's job_id.
    auto request = sc::decode_job_request(p.request);
    if (!request || request->job_id != key_job_id(p.job_id)) {
      spdlog::error("journal: job '{}' has an unreadable request; answered as invalid", p.job_id);
      const auto e = job_error(p.job_id, sc::JobCode::kInvalidRequest,
                               "the journal's copy of this job could not be read back");
      journal_->finished(p.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e),
                         host_.now_unix_ms());
      continue;
    }
    request->job_id = p.job_id;
    // No route: its submitter reconnects and FETCHes (or submits it again).
    Job& job = life.jobs().push(QueuedRequest::of(*request, p.request), std::string(), host_.now());
    job.recovered = true;
    job.journal_row = p.row;
    if (p.cancel_requested) {
      // CANCELled while running, and its worker had not answered when the broker stopped.
      job.attempt = p.attempt;
      host_.answer_error(job, sc::JobCode::kCancelled,
                         "cancelled while running; the broker restarted before its worker answered",
                         false);
      life.finish(p.job_id);
      continue;
    }
    // A job that was on a worker when the broker stopped starts its next attempt; that worker's
    // outcome of the attempt before is still taken (JobLife::outcome).
    job.attempt = p.attempt + (p.dispatched ? 1 : 0);
    job.recovered_attempt = p.dispatched ? p.attempt : 0;
    if (job.attempt > options.max_attempts) {
      host_.answer_error(job, sc::JobCode::kWorkerLost,
                         "the broker restarted during attempt " + std::to_string(p.attempt) +
                             " of " + std::to_string(options.max_attempts),
                         true);
      life.finish(p.job_id);
      continue;
    }
    ++stats.recovered;
  }
  if (auto committed = journal_->commit(); !committed) return committed;
  unanswered_at_commit_ = life.jobs().size();
  stats.quarantined = journal_->quarantined();
  spdlog::info("journal {}: {} job(s) re-queued, {} held in all{}", options.journal_path,
               stats.recovered, journal_->size(),
               stats.quarantined == 0
                   ? ""
                   : ", " + std::to_string(stats.quarantined) +
                         " damaged one(s) quarantined and answered JournalDamaged (107)");
  return {};
}

dashboard::StoreLookup EmbeddedStore::lookup() const {
  dashboard::StoreLookup lookup;
  if (!journal_) return lookup;
  lookup.source = "journal";
  lookup.open = [path = host_.options().journal_path]() -> base::Expected<std::unique_ptr<Store>> {
    auto journal = Journal::open(path, /*read_only=*/true);
    if (!journal) return std::move(journal).error();
    return std::unique_ptr<Store>(std::move(journal).value());
  };
  return lookup;
}

std::string EmbeddedStore::fate(size_t held, size_t queued, const Stats& stats) const {
  const std::string jobs =
      std::to_string(held) + " jobs held (" + std::to_string(queued) + " queued)";
  if (!journal_) return jobs + " are dropped (no journal)";
  if (stats.journal_failed) {
    // The journal holds what its last commit stored, not what this loop held after it: the jobs
    // accepted in the failed turn are not in it (their submitters were not told ACCEPTED), and
    // the jobs answered in it are still there unanswered (their answers were not sent).
    return jobs + "; the journal keeps " + std::to_string(unanswered_at_commit_) +
           " unanswered for the next start, as of its last commit (this turn's writes failed)";
  }
  return jobs + " are kept in the journal for the next start";
}

void EmbeddedStore::tick() {
  if (!journal_) return;
  const uint64_t now_ms = host_.now_unix_ms();
  const uint64_t ttl = host_.options().result_ttl_ms;
  if (now_ms > ttl) journal_->expire(now_ms - ttl);
}

JobStore::Commit EmbeddedStore::commit() {
  if (!journal_) return Commit::kDone;
  if (auto committed = journal_->commit(); !committed) {
    // Fail-stop: what this turn would have said depends on writes that did not happen.
    spdlog::critical("{}; stopping without sending {} message(s) of this turn",
                     committed.error().message, host_.discard_outbox());
    return Commit::kFatal;
  }
  // Every job held is stored unanswered now, and no other job is (answered jobs leave the loop
  // in the turn their answer is written).
  unanswered_at_commit_ = host_.life().jobs().size();
  return Commit::kDone;
}

void EmbeddedStore::refresh(Stats& stats) {
  if (journal_) stats.quarantined = journal_->quarantined();
}

void EmbeddedStore::submit(const std::string& route, std::vector<NewJob>& jobs,
                           std::vector<SubmitReply>& replies,
                           std::vector<Store::Answer>& known_answers) {
  JobQueue& held = host_.life().jobs();
  const Options& options = host_.options();
  Stats& stats = host_.stats();
  for (auto& job : jobs) {
    SubmitReply& reply = replies[job.index];
    const std::string& id = job.request.job_id;  // the key (tenancy.h)
    const std::string job_id(key_job_id(id));
    if (Job* known = held.find(id)) {
      // Submitted earlier in this message: held now, as for a job held before it.
      if (!same_request(job.body, job.request, known->request.encoded)) {
        reply.message = error_message(conflict_error(job_id, job.index));
        ++stats.invalid;
        continue;
      }
      known->routes.submitted(route);
      reply.accepted = job_id;
      continue;
    }
    if (journal_) {
      // Finished before (this broker or an earlier one): its stored answer, never a second run;
      // unless the job_id named another request then. (A stored request that fails its checksum
      // reads as empty: its answer, JournalDamaged, says so.)
      if (auto known_answer = journal_->answer_of(id)) {
        // Rare (a finished job submitted again), so its request is read only then.
        if (auto before = journal_->stored(id);
            before && !before->request.empty() &&
            !same_request(job.body, job.request, before->request)) {
          reply.message = error_message(conflict_error(job_id, job.index));
          ++stats.invalid;
          continue;
        }
        reply.accepted = job_id;
        known_answers.push_back(std::move(*known_answer));
        continue;
      }
    }
    if (held.size() >= options.max_queue) {
      ++stats.rejected;
      const auto e = job_error(
          id, sc::JobCode::kQueueFull,
          "queue full (" + std::to_string(options.max_queue) + " jobs); retry later", 0, true);
      reply.message = error_message(e, sc::Command::kRejected);
      continue;
    }
    reply.accepted = job_id;
    const int64_t row = journal_ ? journal_->accepted(id, job.body, host_.now_unix_ms()) : 0;
    held.push(QueuedRequest::of(job.request, std::string(job.body)), route, host_.now())
        .journal_row = row;
    ++stats.accepted;
  }
}

void EmbeddedStore::cancel_unheld(const std::string& route, const std::string& job_id) {
  host_.to_client(
      route, error_message(job_error(job_id, sc::JobCode::kUnknownJob,
                                     "job '" + std::string(key_job_id(job_id)) +
                                         "' is not held by this broker (unknown or finished)")));
}

void EmbeddedStore::fetch_unheld(const std::string& route, const std::string& job_id) {
  if (journal_) {
    if (auto a = journal_->answer_of(job_id)) {
      host_.to_client(route,
                      sc::make_message(static_cast<sc::Command>(a->command), {std::move(a->body)}));
      return;
    }
  }
  host_.to_client(route,
                  error_message(job_error(
                      job_id, sc::JobCode::kUnknownJob,
                      "job '" + std::string(key_job_id(job_id)) + "' is not known to this broker" +
                          (journal_ ? " (never accepted, or its answer expired)"
                                    : " (it runs without a journal and keeps no answers "
                                      "after delivery)"))));
}

void EmbeddedStore::dispatched(const Job& job) {
  if (journal_) journal_->dispatched(job.request.job_id, job.attempt, job.journal_row);
}

void EmbeddedStore::cancel_requested(const std::string& job_id) {
  if (journal_) journal_->cancel_requested(job_id);
}

void EmbeddedStore::answer(const Job& job, sc::Command command, const std::string& body) {
  if (journal_) {
    journal_->finished(job.request.job_id, static_cast<uint8_t>(command), body, host_.now_unix_ms(),
                       job.journal_row);
  }
  for (const auto& route : job.routes.all()) {
    host_.to_client(route, sc::make_message(command, {body}));
  }
}

}  // namespace paddock::broker
