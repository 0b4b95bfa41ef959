// The broker on a shared PostgreSQL queue (broker/README.md, "Several brokers on PostgreSQL";
// pg_store.h has the store's side). What changes from one broker with its journal:
// - SUBMIT stores the job in the database and does not queue it here: every broker claims queued
//   jobs for the credits of its own workers, so a job runs wherever a worker is free.
// - The answer reaches the submitter through the broker it is connected to: either that broker
//   ran the job (the job's routes), or it waits for the database's NOTIFY (waiters_).
// - A failed turn is not fatal: the queue is in the database; the broker forgets its jobs and
//   re-joins under a new id, and its old claims go back to the queue.
#include <spdlog/spdlog.h>

#include <map>

#include "loop.h"
#include "paddock/schemas/codes.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

namespace {

// Claims are tried at least this often while workers have credits this broker has no job for
// (NOTIFY paddock_queued makes them prompt; this covers a notification lost with a connection).
constexpr auto kClaimPoll = std::chrono::milliseconds(500);
// Jobs claimed per image in one statement at most.
constexpr size_t kMaxClaim = 1000;

sc::JobError error_frame(const std::string& job_id, sc::JobCode code, std::string message,
                         uint32_t attempt, bool retryable) {
  sc::JobError e;
  e.job_id = job_id;
  e.code = sc::code(code);
  e.variant = std::string(sc::job_code_name(e.code));
  e.message = std::move(message);
  e.attempt = attempt;
  e.retryable = retryable;
  return e;
}

}  // namespace

void Broker::Loop::flush_shared_answers() {
  if (shared_answers_.empty()) return;
  auto answers = std::move(shared_answers_);
  shared_answers_.clear();
  std::vector<PgStore::Finish> batch;
  batch.reserve(answers.size());
  for (const auto& a : answers) batch.push_back(PgStore::Finish{a.job_id, a.command, a.body});
  std::vector<bool> won;
  if (!shared_->finish_all(batch, now_unix_ms(), won)) {
    // Not stored: the turn fails at its commit. The routes wait for whoever runs the job next.
    for (const auto& a : answers) waiters_[a.job_id].merge(a.routes);
    return;
  }
  std::vector<std::string> lost;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (won[i]) {
      for (const auto& route : answers[i].routes.all()) {
        to_client(route, sc::make_message(static_cast<sc::Command>(answers[i].command),
                                          {answers[i].body}));
      }
    } else {
      lost.push_back(answers[i].job_id);
    }
  }
  if (lost.empty()) return;
  std::unordered_map<std::string, Store::Answer> stored;
  for (auto& [id, a] : shared_->answers_of(lost)) stored.emplace(id, std::move(a));
  for (const auto& a : answers) {
    auto it = stored.find(a.job_id);
    if (it == stored.end()) continue;
    for (const auto& route : a.routes.all()) {
      to_client(route,
                sc::make_message(static_cast<sc::Command>(it->second.command), {it->second.body}));
    }
  }
}

void Broker::Loop::shared_turn_start() {
  if (!shared_->healthy()) {
    if (now_ < next_rejoin_) return;
    std::string error;
    if (!shared_->rejoin(error)) {
      next_rejoin_ = now_ + std::chrono::seconds(1);
      if (protocol_log_.allow()) spdlog::error("{}; trying again in 1 s", error);
      return;
    }
    rejoined();
  }
  auto events = shared_->take_events();
  if (events.queued) claim_wanted_ = true;
  deliver_answered(events.answered);
  for (const auto& id : events.cancelled) {
    Job* job = jobs_.find(id);
    if (job == nullptr) continue;
    if (job->state != Job::State::kRunning) {
      answer_error(*job, sc::JobCode::kCancelled, "cancelled before it started", false);
      jobs_.remove(id);
    } else if (!job->cancel_requested) {
      job->cancel_requested = true;
      to_worker(job->worker, sc::make_message(sc::Command::kCancel, {sc::encode(sc::JobRef{id})}));
    }
  }
}

std::vector<std::string> Broker::Loop::unknown_in_queue(const std::string& job_id) {
  const auto u = error_frame(job_id, sc::JobCode::kUnknownJob,
                             "job '" + job_id +
                                 "' is not in the shared queue (never accepted, "
                                 "or its answer expired)",
                             0, false);
  return sc::make_message(sc::Command::kError, {sc::encode(u)});
}

void Broker::Loop::rejoined() {
  claim_wanted_ = true;
  // NOTIFYs sent while this broker was away are lost: look up every job waited for here.
  std::vector<std::string> ids;
  ids.reserve(waiters_.size());
  for (const auto& [id, routes] : waiters_) ids.push_back(id);
  if (ids.empty()) return;
  std::vector<std::string> missing;
  for (auto& [id, a] : shared_->answers_of(ids, &missing)) deliver_answer(id, a);
  // Waited for and not in the queue at all: a FETCH or CANCEL of an unknown job asked while the
  // database was away, or an answer that expired meanwhile (a failed turn's SUBMITs are no longer
  // waited for: shared_failed). They would wait for ever; they get what one broker says.
  for (const auto& id : missing) {
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;
    for (const auto& route : it->second.all()) to_client(route, unknown_in_queue(id));
    waiters_.erase(it);
  }
}

void Broker::Loop::deliver_answered(const std::vector<std::string>& job_ids) {
  // One look-up for the lot: of the jobs answered, those waited for here or held here.
  std::vector<std::string> wanted;
  for (const auto& id : job_ids) {
    if (waiters_.count(id) != 0 || jobs_.find(id) != nullptr) wanted.push_back(id);
  }
  if (wanted.empty()) return;
  for (auto& [id, a] : shared_->answers_of(wanted)) deliver_answer(id, a);
}

void Broker::Loop::deliver_answer(const std::string& job_id, const Store::Answer& answer) {
  const Store::Answer* a = &answer;
  if (Job* job = jobs_.find(job_id)) {
    // Held here, answered elsewhere (a broker that ran it before this one claimed it again, or a
    // cancel): the stored answer is the job's; this run is dropped.
    if (job->state == Job::State::kRunning) {
      if (WorkerState* w = registry_.find(job->worker)) {
        w->jobs.erase(job_id);
        to_worker(job->worker,
                  sc::make_message(sc::Command::kCancel, {sc::encode(sc::JobRef{job_id})}));
      }
    }
    for (const auto& route : job->routes.all()) {
      to_client(route, sc::make_message(static_cast<sc::Command>(a->command), {a->body}));
    }
    jobs_.remove(job_id);
  }
  auto it = waiters_.find(job_id);
  if (it == waiters_.end()) return;
  for (const auto& route : it->second.all()) {
    to_client(route, sc::make_message(static_cast<sc::Command>(a->command), {a->body}));
  }
  waiters_.erase(it);
}

void Broker::Loop::submit_shared(const std::string& route, const std::vector<SharedSubmit>& jobs,
                                 std::vector<SubmitReply>& replies,
                                 std::vector<Store::Answer>& known_answers) {
  auto reject = [&](const SharedSubmit& job, const std::string& message) {
    ++stats_.rejected;
    auto e = error_frame(job.request.job_id, sc::JobCode::kQueueFull, message, 0, true);
    replies[job.index].message = sc::make_message(sc::Command::kRejected, {sc::encode(e)});
  };
  if (!shared_->healthy()) {
    for (const auto& job : jobs) {
      reject(job, "the shared queue (" + journal_->describe() + ") cannot be reached; retry later");
    }
    return;
  }
  std::vector<PgStore::Submission> batch;
  std::vector<size_t> index;  // of each batch entry, in the message
  for (const auto& job : jobs) {
    if (shared_unanswered_ + batch.size() >= options_.max_queue) {
      reject(job, "queue full (" + std::to_string(options_.max_queue) +
                      " jobs in the shared queue); retry later");
      continue;
    }
    batch.push_back(PgStore::Submission{&job.request, job.body});
    index.push_back(job.index);
  }
  if (!batch.empty()) {
    auto& ids = turn_submits_.emplace_back(route, std::vector<std::string>{}).second;
    ids.reserve(batch.size());
    for (const auto& b : batch) ids.push_back(b.request->job_id);
  }
  std::vector<PgStore::Submitted> outcome;
  std::vector<std::optional<Store::Answer>> answers;
  if (!shared_->submit_all(batch, now_unix_ms(), outcome, answers)) {
    return;  // the turn fails at its commit: the batch is REJECTED then (shared_failed)
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    const std::string& id = batch[i].request->job_id;
    switch (outcome[i]) {
      case PgStore::Submitted::kNew:
        ++stats_.accepted;
        ++shared_unanswered_;
        claim_wanted_ = true;
        [[fallthrough]];
      case PgStore::Submitted::kHeld:
        replies[index[i]].accepted = id;
        waiters_[id].submitted(route);  // the latest submitter here replaces the one before
        break;
      case PgStore::Submitted::kAnswered:
        replies[index[i]].accepted = id;
        known_answers.push_back(std::move(*answers[i]));
        break;
      case PgStore::Submitted::kFailed:
        break;
    }
  }
}

void Broker::Loop::cancel_shared(const std::string& route, const std::string& job_id) {
  const auto e =
      error_frame(job_id, sc::JobCode::kCancelled, "cancelled before it started", 1, false);
  const std::string body = sc::encode(e);
  switch (shared_->cancel(job_id, static_cast<uint8_t>(sc::Command::kError), body, now_unix_ms())) {
    case PgStore::Cancel::kQueued:
      ++stats_.errors;
      metrics_.failed(e.code, e.variant);
      // The NOTIFY of the stored answer tells every waiter, this route among them.
      waiters_[job_id].watch(route);
      break;
    case PgStore::Cancel::kRunning:
      waiters_[job_id].watch(route);
      break;
    case PgStore::Cancel::kAnswered:
      if (auto a = shared_->answer_of(job_id)) {
        to_client(route, sc::make_message(static_cast<sc::Command>(a->command), {a->body}));
      }
      break;
    case PgStore::Cancel::kUnknown: {
      to_client(route, unknown_in_queue(job_id));
      break;
    }
    case PgStore::Cancel::kFailed:
      break;  // the turn fails at its commit
  }
}

void Broker::Loop::fetch_shared(const std::string& route, const std::string& job_id) {
  auto s = shared_->healthy() ? shared_->stored(job_id) : std::nullopt;
  if (!shared_->healthy()) {
    // Not known either way while the database is away: after the re-join the answer comes (or
    // the FETCH is answered then, when it is asked again).
    waiters_[job_id].watch(route);
    return;
  }
  if (s && s->answer) {
    to_client(route,
              sc::make_message(static_cast<sc::Command>(s->answer->command), {s->answer->body}));
    return;
  }
  if (s) {
    waiters_[job_id].watch(route);  // queued or running somewhere: the NOTIFY brings it here
    return;
  }
  to_client(route, unknown_in_queue(job_id));
}

void Broker::Loop::claim_for_credits() {
  if (!shared_->healthy()) return;
  if (!claim_wanted_ && now_ < next_claim_) return;
  // Credits per image that this broker has no queued job for. A worker with several images counts
  // in each: a claim may take a few more jobs than run at once, never fewer.
  std::map<std::string, size_t> want;
  registry_.for_each([&](const WorkerState& w) {
    if (w.draining || w.credits == 0) return;
    if (w.images.empty()) {
      want["default"] += w.credits;
    } else {
      for (const auto& i : w.images) want[i] += w.credits;
    }
  });
  claim_wanted_ = false;
  next_claim_ = now_ + kClaimPoll;
  for (auto& [image, credits] : want) {
    const size_t have = jobs_.queued_of(image);
    if (credits <= have) continue;
    const size_t n = std::min(credits - have, kMaxClaim);
    auto claimed = shared_->claim(image, n);
    if (claimed.size() == n) claim_wanted_ = true;  // there may be more
    const uint64_t now_ms = now_unix_ms();
    for (auto& c : claimed) {
      auto request = sc::decode_job_request(c.request);
      if (!request || request->job_id != c.job_id) {
        spdlog::error("shared queue: job '{}' has an unreadable request; answered as invalid",
                      c.job_id);
        auto e = error_frame(c.job_id, sc::JobCode::kInvalidRequest,
                             "the shared queue's copy of this job could not be read back",
                             c.attempt, false);
        journal_->finished(c.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e),
                           now_ms);
        continue;
      }
      // Its age counts from its acceptance, on whichever broker that was.
      const auto age =
          std::chrono::milliseconds(now_ms > c.accepted_unix_ms ? now_ms - c.accepted_unix_ms : 0);
      Job& job =
          jobs_.push(QueuedRequest::of(*request, std::move(c.request)), std::string(), now_ - age);
      if (auto w = waiters_.find(c.job_id); w != waiters_.end()) {
        job.routes = std::move(w->second);
        waiters_.erase(w);
      }
      job.attempt = c.attempt;
      // A worker of this broker's earlier generation may still report it.
      job.recovered = c.attempt > 1;
      job.recovered_attempt = c.attempt - 1;
      if (c.cancelled) {
        answer_error(job, sc::JobCode::kCancelled,
                     "cancelled while running; the broker that held it was lost", false);
        jobs_.remove(c.job_id);
      } else if (job.attempt > options_.max_attempts) {
        answer_error(job, sc::JobCode::kWorkerLost,
                     "the broker that held it was lost during attempt " +
                         std::to_string(job.attempt - 1) + " of " +
                         std::to_string(options_.max_attempts),
                     true);
        jobs_.remove(c.job_id);
      }
    }
  }
}

void Broker::Loop::shared_tick() {
  if (!shared_->healthy()) return;
  const auto images = registry_.images();
  if (!shared_->renew(images)) {
    // The lease lapsed (this broker was stalled, or cut off from the database): other brokers may
    // already run its jobs. Forget them and re-join.
    // What this turn stored is true (answers keep the first-wins rule): commit it and send what
    // depended on it, then forget the jobs held and re-join.
    // (commit_and_send calls shared_failed itself when the commit fails.)
    if (commit_and_send()) {
      shared_failed("postgresql: this broker's lease (" + shared_->broker_id() + ") had lapsed");
    }
    return;
  }
  if (const uint64_t n = shared_->reap(); n > 0) {
    spdlog::warn("shared queue: {} job(s) of broker(s) whose lease lapsed went back to the queue",
                 n);
    claim_wanted_ = true;
  }
  const uint64_t now_ms = now_unix_ms();
  for (auto& c : shared_->claim_expired(now_ms, kMaxClaim)) {
    auto e = error_frame(c.job_id, sc::JobCode::kDeadlineExceeded,
                         "deadline passed before a worker could start the job", c.attempt, false);
    ++stats_.errors;
    metrics_.failed(e.code, e.variant);
    journal_->finished(c.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e), now_ms);
  }
  // Images no broker's workers have (every broker publishes its workers' images with its lease):
  // after the grace, answered as one broker would.
  if (now_ms > options_.image_grace_ms) {
    const auto images = registry_.images();
    std::string have;
    for (const auto& i : images) have += (have.empty() ? "" : ", ") + i;
    for (auto& c : shared_->claim_unknown_image(now_ms - options_.image_grace_ms, kMaxClaim)) {
      auto request = sc::decode_job_request(c.request);
      const std::string image = request ? request->image : "?";
      auto e =
          error_frame(c.job_id, sc::JobCode::kUnknownImage,
                      "no worker of any broker has image '" + image +
                          "' (this broker's workers have: " + (have.empty() ? "none" : have) + ")",
                      c.attempt, false);
      ++stats_.errors;
      metrics_.failed(e.code, e.variant);
      journal_->finished(c.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e),
                         now_ms);
    }
  }
  shared_unanswered_ = shared_->unanswered();
}

void Broker::Loop::shared_failed(const std::string& error) {
  spdlog::error(
      "{}; {} message(s) of this turn are not sent (their writes did not commit), the "
      "{} job(s) held here are forgotten, and the broker re-joins the shared queue",
      error, outbox_.size(), jobs_.size());
  outbox_.clear();
  for (const auto& a : shared_answers_) waiters_[a.job_id].merge(a.routes);
  shared_answers_.clear();
  // Their submitters still wait: their routes now wait here for whoever runs the job next.
  jobs_.for_each([&](const Job& job) { waiters_[job.request.job_id].merge(job.routes); });
  jobs_ = JobQueue();
  retry_at_.clear();
  // This turn's submits, after the routes above were kept (these are not waited for here, not
  // even if this turn claimed them): nothing says they were stored. REJECTED (retryable) says
  // so now, and depends on no write; the submitter sends them again (idempotent by job_id).
  size_t rejected = 0;
  for (auto& [route, ids] : turn_submits_) {
    for (const auto& id : ids) {
      if (auto w = waiters_.find(id); w != waiters_.end()) {
        w->second.forget(route);
        if (w->second.empty()) waiters_.erase(w);
      }
      auto e = error_frame(id, sc::JobCode::kQueueFull,
                           "the shared queue (" + journal_->describe() +
                               ") failed before this job was stored; submit it again",
                           0, true);
      ++stats_.rejected;
      ++rejected;
      send_to_client(route, sc::make_message(sc::Command::kRejected, {sc::encode(e)}));
    }
  }
  turn_submits_.clear();
  if (rejected > 0) {
    spdlog::warn("shared queue: {} job(s) of this turn's SUBMITs REJECTED", rejected);
  }
  std::string rejoin_error;
  if (shared_->rejoin(rejoin_error)) {
    rejoined();
  } else {
    spdlog::error("{}; trying again in 1 s", rejoin_error);
    next_rejoin_ = now_ + std::chrono::seconds(1);
  }
}

}  // namespace paddock::broker
