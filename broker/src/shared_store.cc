#include "shared_store.h"

#include <spdlog/spdlog.h>

#include <map>

#include "answers.h"
#include "tenancy.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

namespace {

// Claims are tried at least this often while workers have credits this broker has no job for
// (NOTIFY paddock_queued makes them prompt; this covers a notification lost with a connection).
constexpr auto kClaimPoll = std::chrono::milliseconds(500);
// Jobs claimed per image in one turn at most.
constexpr size_t kMaxClaim = 1000;
// Tenants with queued jobs of an image that one claim shares among, at most (by name).
constexpr size_t kMaxTenants = 1000;
// A re-join that failed is tried again after this long.
constexpr auto kRejoinRetry = std::chrono::seconds(1);

}  // namespace

SharedStore::SharedStore(LoopHost& host, std::unique_ptr<PgStore> queue)
    : host_(host), queue_(std::move(queue)) {}

dashboard::StoreLookup SharedStore::lookup() const {
  dashboard::StoreLookup lookup;
  lookup.source = "shared-queue";
  lookup.open = [url = host_.options().store_url]() -> base::Expected<std::unique_ptr<Store>> {
    auto queue = PgStore::open_reader(url);
    if (!queue) return std::move(queue).error();
    return std::unique_ptr<Store>(std::move(queue).value());
  };
  return lookup;
}

std::string SharedStore::fate(size_t held, size_t queued, const Stats&) const {
  return std::to_string(held) + " jobs held (" + std::to_string(queued) +
         " queued) are given back to the shared queue";
}

void SharedStore::on_timer(TimerQueue::Kind kind) {
  // kRejoin: disarmed now, so turn_start() re-joins.
  if (kind == TimerQueue::Kind::kClaim) claim_wanted_ = true;
}

JobStore::Commit SharedStore::commit() {
  flush_answers();
  if (auto committed = queue_->commit(); !committed) {
    // Not fatal: the queue is in the database; this broker forgets its turn and re-joins.
    failed(committed.error().message);
    return Commit::kFailed;
  }
  turn_submits_.clear();
  return Commit::kDone;
}

void SharedStore::flush_answers() {
  if (answers_.empty()) return;
  auto answers = std::move(answers_);
  answers_.clear();
  std::vector<PgStore::Finish> batch;
  batch.reserve(answers.size());
  for (const auto& a : answers) batch.push_back(PgStore::Finish{a.job_id, a.command, a.body});
  std::vector<bool> won;
  if (!queue_->finish_all(batch, host_.now_unix_ms(), won)) {
    // Not stored: the turn fails at its commit. The routes wait for whoever runs the job next.
    for (const auto& a : answers) waiters_[a.job_id].merge(a.routes);
    return;
  }
  std::vector<std::string> lost;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (won[i]) {
      for (const auto& route : answers[i].routes.all()) {
        host_.to_client(route, sc::make_message(static_cast<sc::Command>(answers[i].command),
                                                {answers[i].body}));
      }
    } else {
      lost.push_back(answers[i].job_id);
    }
  }
  if (lost.empty()) return;
  std::unordered_map<std::string, Store::Answer> stored;
  for (auto& [id, a] : queue_->answers_of(lost)) stored.emplace(id, std::move(a));
  for (const auto& a : answers) {
    auto it = stored.find(a.job_id);
    if (it == stored.end()) continue;
    for (const auto& route : a.routes.all()) {
      host_.to_client(
          route, sc::make_message(static_cast<sc::Command>(it->second.command), {it->second.body}));
    }
  }
}

void SharedStore::turn_start() {
  if (!queue_->healthy()) {
    if (host_.timers().armed(TimerQueue::Kind::kRejoin)) return;
    if (auto joined = queue_->rejoin(); !joined) {
      host_.timers().set(TimerQueue::Kind::kRejoin, host_.now() + kRejoinRetry);
      if (host_.log_limiter().allow()) {
        spdlog::error("{}; trying again in 1 s", joined.error().message);
      }
      return;
    }
    rejoined();
  }
  auto events = queue_->take_events();
  if (events.queued) claim_wanted_ = true;
  deliver_answered(events.answered);
  JobLife& life = host_.life();
  for (const auto& id : events.cancelled) {
    std::optional<Job> ended;
    switch (life.cancel(id, std::string(), ended)) {
      case JobLife::Cancel::kEnded:
        host_.answer_error(*ended, sc::JobCode::kCancelled, "cancelled before it started", false);
        break;
      case JobLife::Cancel::kAskWorker:
        host_.stop_on_worker(life.jobs().find(id)->worker, id, /*forget=*/false);
        break;
      case JobLife::Cancel::kUnknown:
      case JobLife::Cancel::kAsked:
        break;
    }
  }
}

std::vector<std::string> SharedStore::unknown_in_queue(const std::string& job_id) {
  return error_message(job_error(job_id, sc::JobCode::kUnknownJob,
                                 "job '" + std::string(key_job_id(job_id)) +
                                     "' is not in the shared queue (never "
                                     "accepted, or its answer expired)"));
}

void SharedStore::rejoined() {
  claim_wanted_ = true;
  // NOTIFYs sent while this broker was away are lost: look up every job waited for here.
  std::vector<std::string> ids;
  ids.reserve(waiters_.size());
  for (const auto& [id, routes] : waiters_) ids.push_back(id);
  if (ids.empty()) return;
  std::vector<std::string> missing;
  for (auto& [id, a] : queue_->answers_of(ids, &missing)) deliver_answer(id, a);
  // Waited for and not in the queue at all: a FETCH or CANCEL of an unknown job asked while the
  // database was away, or an answer that expired meanwhile (a failed turn's SUBMITs are no longer
  // waited for: failed()). They would wait for ever; they get what one broker says.
  for (const auto& id : missing) {
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;
    for (const auto& route : it->second.all()) host_.to_client(route, unknown_in_queue(id));
    waiters_.erase(it);
  }
}

void SharedStore::deliver_answered(const std::vector<std::string>& job_ids) {
  // One look-up for the lot: of the jobs answered, those waited for here or held here.
  std::vector<std::string> wanted;
  const JobQueue& held = host_.life().jobs();
  for (const auto& id : job_ids) {
    if (waiters_.count(id) != 0 || held.find(id) != nullptr) wanted.push_back(id);
  }
  if (wanted.empty()) return;
  for (auto& [id, a] : queue_->answers_of(wanted)) deliver_answer(id, a);
}

void SharedStore::deliver_answer(const std::string& job_id, const Store::Answer& answer) {
  JobLife& life = host_.life();
  if (Job* job = life.jobs().find(job_id)) {
    // Held here, answered elsewhere (a broker that ran it before this one claimed it again, or a
    // cancel): the stored answer is the job's; this run is dropped.
    if (job->state == Job::State::kRunning) host_.stop_on_worker(job->worker, job_id, true);
    for (const auto& route : job->routes.all()) {
      host_.to_client(route,
                      sc::make_message(static_cast<sc::Command>(answer.command), {answer.body}));
    }
    life.finish(job_id);
  }
  auto it = waiters_.find(job_id);
  if (it == waiters_.end()) return;
  for (const auto& route : it->second.all()) {
    host_.to_client(route,
                    sc::make_message(static_cast<sc::Command>(answer.command), {answer.body}));
  }
  waiters_.erase(it);
}

void SharedStore::submit(const std::string& route, std::vector<NewJob>& jobs,
                         std::vector<SubmitReply>& replies,
                         std::vector<Store::Answer>& known_answers) {
  Stats& stats = host_.stats();
  const Options& options = host_.options();
  auto reject = [&](const NewJob& job, const std::string& message) {
    ++stats.rejected;
    replies[job.index].message =
        error_message(job_error(job.request.job_id, sc::JobCode::kQueueFull, message, 0, true),
                      sc::Command::kRejected);
  };
  auto unreachable = [&] {
    for (const auto& job : jobs) {
      reject(job, "the shared queue (" + queue_->describe() + ") cannot be reached; retry later");
    }
  };
  if (!queue_->healthy()) return unreachable();
  // One connection is one tenant: the SUBMIT's jobs are all its.
  const std::string tenant(key_tenant(jobs.front().request.job_id));
  const TenantLimits& limits = host_.limits_of(tenant);
  // The tenant's max_queued over every broker: its queued jobs counted and the new ones stored in
  // one step, under its lock, in a transaction of their own (committed before, so that it holds
  // nothing while it waits for the lock, and after, so that nobody waits for it long).
  const bool limited = limits.max_queued < TenantLimits{}.max_queued;
  uint64_t room = UINT64_MAX;
  if (limited) {
    if (queue_->dirty()) (void)host_.commit_and_send();  // a failure re-joins (failed())
    if (!queue_->healthy()) return unreachable();
    queue_->lock_tenants({tenant});
    const auto queued =
        queue_->count_of_tenant(tenant, PgStore::JobState::kQueued, limits.max_queued);
    if (!queued) {
      // The turn fails at its commit: the jobs are REJECTED then (failed()).
      auto& ids = turn_submits_.emplace_back(route, std::vector<std::string>{}).second;
      for (const auto& job : jobs) ids.push_back(job.request.job_id);
      return;
    }
    room = limits.max_queued - std::min(*queued, limits.max_queued);
  }
  std::vector<PgStore::Submission> batch;
  std::vector<size_t> index;  // of each batch entry, in the message
  for (const auto& job : jobs) {
    if (unanswered_ + batch.size() >= options.max_queue) {
      reject(job, "queue full (" + std::to_string(options.max_queue) +
                      " jobs in the shared queue); retry later");
      continue;
    }
    if (batch.size() >= room) {
      replies[job.index].message =
          host_.quota_refusal(tenant, key_job_id(job.request.job_id), "max_queued",
                              max_queued_refusal(tenant, limits.max_queued));
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
  if (!queue_->submit_all(batch, host_.now_unix_ms(), outcome, answers)) {
    return;  // the turn fails at its commit: the batch is REJECTED then (failed())
  }
  // The tenant's lock goes with this commit; one that fails REJECTED the batch (failed()).
  if (limited && !host_.commit_and_send()) return;
  for (size_t i = 0; i < batch.size(); ++i) {
    const std::string& id = batch[i].request->job_id;
    switch (outcome[i]) {
      case PgStore::Submitted::kNew:
        ++stats.accepted;
        ++unanswered_;
        claim_wanted_ = true;
        [[fallthrough]];
      case PgStore::Submitted::kHeld:
        replies[index[i]].accepted = key_job_id(id);
        waiters_[id].submitted(route);  // the latest submitter here replaces the one before
        break;
      case PgStore::Submitted::kAnswered:
        replies[index[i]].accepted = key_job_id(id);
        known_answers.push_back(std::move(*answers[i]));
        break;
      case PgStore::Submitted::kConflict:
        ++stats.invalid;
        replies[index[i]].message = error_message(conflict_error(key_job_id(id), index[i]));
        break;
      case PgStore::Submitted::kFailed:
        break;
    }
  }
}

void SharedStore::cancel_unheld(const std::string& route, const std::string& job_id) {
  const auto e = job_error(job_id, sc::JobCode::kCancelled, "cancelled before it started", 1);
  const std::string body = sc::encode(e);
  switch (queue_->cancel(job_id, static_cast<uint8_t>(sc::Command::kError), body,
                         host_.now_unix_ms())) {
    case PgStore::Cancel::kQueued:
      ++host_.stats().errors;
      host_.metrics().failed(e.code, e.variant);
      // The NOTIFY of the stored answer tells every waiter, this route among them.
      waiters_[job_id].watch(route);
      break;
    case PgStore::Cancel::kRunning:
      waiters_[job_id].watch(route);
      break;
    case PgStore::Cancel::kAnswered:
      if (auto a = queue_->answer_of(job_id)) {
        host_.to_client(route, sc::make_message(static_cast<sc::Command>(a->command), {a->body}));
      }
      break;
    case PgStore::Cancel::kUnknown:
      host_.to_client(route, unknown_in_queue(job_id));
      break;
    case PgStore::Cancel::kFailed:
      break;  // the turn fails at its commit
  }
}

void SharedStore::fetch_unheld(const std::string& route, const std::string& job_id) {
  auto s = queue_->healthy() ? queue_->stored(job_id) : std::nullopt;
  if (!queue_->healthy()) {
    // Not known either way while the database is away: after the re-join the answer comes (or
    // the FETCH is answered then, when it is asked again).
    waiters_[job_id].watch(route);
    return;
  }
  if (s && s->answer) {
    host_.to_client(
        route, sc::make_message(static_cast<sc::Command>(s->answer->command), {s->answer->body}));
    return;
  }
  if (s) {
    waiters_[job_id].watch(route);  // queued or running somewhere: the NOTIFY brings it here
    return;
  }
  host_.to_client(route, unknown_in_queue(job_id));
}

bool SharedStore::outcome_unheld(const std::string& job_id, sc::Command command,
                                 std::string_view body) {
  queue_->finished(job_id, static_cast<uint8_t>(command), body, host_.now_unix_ms());
  return true;
}

void SharedStore::dispatched(const Job& job) {
  queue_->dispatched(job.request.job_id, job.attempt, job.journal_row);
}

void SharedStore::cancel_requested(const std::string& job_id) { queue_->cancel_requested(job_id); }

void SharedStore::answer(const Job& job, sc::Command command, const std::string& body) {
  answers_.push_back(Answer{job.request.job_id, static_cast<uint8_t>(command), body, job.routes});
}

void SharedStore::before_dispatch() {
  if (!queue_->healthy()) return;
  if (!claim_wanted_) return;
  // Credits per image that this broker has no queued job for. A worker with several images counts
  // in each: a claim may take a few more jobs than run at once, never fewer.
  std::map<std::string, size_t> want;
  host_.workers().for_each([&](const WorkerState& w) {
    if (w.draining || w.credits == 0) return;
    if (w.images.empty()) {
      want["default"] += w.credits;
    } else {
      for (const auto& i : w.images) want[i] += w.credits;
    }
  });
  claim_wanted_ = false;
  host_.timers().set(TimerQueue::Kind::kClaim, host_.now() + kClaimPoll);
  for (auto& [image, credits] : want) {
    const size_t have = host_.life().jobs().queued_of(image);
    if (credits <= have) continue;
    const size_t n = std::min(credits - have, kMaxClaim);
    const size_t got = claim_fairly(image, n);
    if (!queue_->healthy()) return;
    if (got == n) claim_wanted_ = true;  // there may be more
  }
}

size_t SharedStore::claim_fairly(const std::string& image, size_t n) {
  const auto names = queue_->queued_tenants(image, kMaxTenants);
  if (names.empty()) return 0;
  std::vector<ClaimShare::Tenant> tenants;
  tenants.reserve(names.size());
  std::vector<std::string> capped;  // tenants with a max_running
  for (const auto& name : names) {
    const TenantLimits& l = host_.limits_of(name);
    tenants.push_back(ClaimShare::Tenant{name, l.weight, UINT64_MAX});
    if (l.max_running < TenantLimits{}.max_running) capped.push_back(name);
  }
  if (!capped.empty()) {
    // Their max_running over every broker: a job claimed anywhere counts as running. Counted and
    // claimed in one step, under their locks, in a transaction of its own (as in submit()).
    if (queue_->dirty() && !host_.commit_and_send()) return 0;
    if (!queue_->healthy()) return 0;
    queue_->lock_tenants(capped);
    for (auto& t : tenants) {
      const uint64_t cap = host_.limits_of(t.name).max_running;
      if (cap >= TenantLimits{}.max_running) continue;
      const auto claimed = queue_->count_of_tenant(t.name, PgStore::JobState::kClaimed, cap);
      if (!claimed) return 0;  // the turn fails at its commit
      t.allowance = cap - std::min(*claimed, cap);
    }
  }
  // Split by fair share; a tenant that had fewer than its part (other brokers took them, or it
  // had no more) is done, and what it left goes to the others in the next round.
  size_t total = 0;
  std::vector<bool> done(tenants.size(), false);
  for (int round = 0; round < 3 && total < n; ++round) {
    std::vector<ClaimShare::Tenant> open;
    std::vector<size_t> where;
    for (size_t i = 0; i < tenants.size(); ++i) {
      if (done[i] || tenants[i].allowance == 0) continue;
      open.push_back(tenants[i]);
      where.push_back(i);
    }
    if (open.empty()) break;
    const auto parts = share_.split(open, n - total);
    for (size_t k = 0; k < open.size(); ++k) {
      if (parts[k] == 0) continue;
      auto claimed = queue_->claim(image, open[k].name, parts[k]);
      if (!queue_->healthy()) return total;
      share_.settle(open[k], parts[k], claimed.size());
      if (claimed.size() < parts[k]) done[where[k]] = true;
      tenants[where[k]].allowance -= std::min<uint64_t>(claimed.size(), open[k].allowance);
      total += claimed.size();
      take(claimed);
    }
  }
  // The tenants' locks go with this commit (one that fails forgets what was taken: failed()).
  if (!capped.empty()) (void)host_.commit_and_send();
  return total;
}

void SharedStore::take(std::vector<PgStore::Claimed>& claimed) {
  JobLife& life = host_.life();
  const uint32_t max_attempts = host_.options().max_attempts;
  const uint64_t now_ms = host_.now_unix_ms();
  for (auto& c : claimed) {
    // c.job_id is the job's key (tenancy.h); the request names the submitter's job_id.
    auto request = sc::decode_job_request(c.request);
    if (!request || request->job_id != key_job_id(c.job_id)) {
      spdlog::error("shared queue: job '{}' has an unreadable request; answered as invalid",
                    c.job_id);
      const auto e =
          job_error(c.job_id, sc::JobCode::kInvalidRequest,
                    "the shared queue's copy of this job could not be read back", c.attempt, false);
      queue_->finished(c.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e), now_ms);
      continue;
    }
    request->job_id = c.job_id;
    // Its age counts from its acceptance, on whichever broker that was.
    const auto age =
        std::chrono::milliseconds(now_ms > c.accepted_unix_ms ? now_ms - c.accepted_unix_ms : 0);
    Job& job = life.jobs().push(QueuedRequest::of(*request, std::move(c.request)), std::string(),
                                host_.now() - age);
    if (auto w = waiters_.find(c.job_id); w != waiters_.end()) {
      job.routes = std::move(w->second);
      waiters_.erase(w);
    }
    job.attempt = c.attempt;
    // A worker of this broker's earlier generation may still report it.
    job.recovered = c.attempt > 1;
    job.recovered_attempt = c.attempt - 1;
    if (c.cancelled) {
      host_.answer_error(job, sc::JobCode::kCancelled,
                         "cancelled while running; the broker that held it was lost", false);
      life.finish(c.job_id);
    } else if (job.attempt > max_attempts) {
      host_.answer_error(job, sc::JobCode::kWorkerLost,
                         "the broker that held it was lost during attempt " +
                             std::to_string(job.attempt - 1) + " of " +
                             std::to_string(max_attempts),
                         true);
      life.finish(c.job_id);
    }
  }
}

void SharedStore::tick() {
  const uint64_t ttl = host_.options().result_ttl_ms;
  if (const uint64_t now_ms = host_.now_unix_ms(); now_ms > ttl) queue_->expire(now_ms - ttl);
  if (!queue_->healthy()) return;
  const auto images = host_.workers().images();
  if (!queue_->renew(images)) {
    // The lease lapsed (this broker was stalled, or cut off from the database): other brokers may
    // already run its jobs. Forget them and re-join.
    // What this turn stored is true (answers keep the first-wins rule): commit it and send what
    // depended on it, then forget the jobs held and re-join.
    // (commit_and_send fails the turn itself when the commit fails.)
    if (host_.commit_and_send()) {
      failed("postgresql: this broker's lease (" + queue_->broker_id() + ") had lapsed");
    }
    return;
  }
  if (const uint64_t n = queue_->reap(); n > 0) {
    spdlog::warn("shared queue: {} job(s) of broker(s) whose lease lapsed went back to the queue",
                 n);
    claim_wanted_ = true;
  }
  Stats& stats = host_.stats();
  const uint64_t now_ms = host_.now_unix_ms();
  for (auto& c : queue_->claim_expired(now_ms, kMaxClaim)) {
    const auto e =
        job_error(c.job_id, sc::JobCode::kDeadlineExceeded,
                  "deadline passed before a worker could start the job", c.attempt, false);
    ++stats.errors;
    host_.metrics().failed(e.code, e.variant);
    queue_->finished(c.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e), now_ms);
  }
  // Images no broker's workers have (every broker publishes its workers' images with its lease):
  // after the grace, answered as one broker would.
  const uint64_t grace = host_.options().image_grace_ms;
  if (now_ms > grace) {
    std::string have;
    for (const auto& i : images) have += (have.empty() ? "" : ", ") + i;
    for (auto& c : queue_->claim_unknown_image(now_ms - grace, kMaxClaim)) {
      auto request = sc::decode_job_request(c.request);
      const std::string image = request ? request->image : "?";
      const auto e =
          job_error(c.job_id, sc::JobCode::kUnknownImage,
                    "no worker of any broker has image '" + image +
                        "' (this broker's workers have: " + (have.empty() ? "none" : have) + ")",
                    c.attempt, false);
      ++stats.errors;
      host_.metrics().failed(e.code, e.variant);
      queue_->finished(c.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e), now_ms);
    }
  }
  unanswered_ = queue_->unanswered();
}

void SharedStore::failed(const std::string& error) {
  JobLife& life = host_.life();
  spdlog::error(
      "{}; {} message(s) of this turn are not sent (their writes did not commit), the "
      "{} job(s) held here are forgotten, and the broker re-joins the shared queue",
      error, host_.discard_outbox(), life.jobs().size());
  for (const auto& a : answers_) waiters_[a.job_id].merge(a.routes);
  answers_.clear();
  // Their submitters still wait: their routes now wait here for whoever runs the job next.
  life.jobs().for_each([&](const Job& job) { waiters_[job.request.job_id].merge(job.routes); });
  life.reset();
  host_.timers().cancel_all(TimerQueue::Kind::kRetry);
  // This turn's submits, after the routes above were kept (these are not waited for here, not
  // even if this turn claimed them): nothing says they were stored. REJECTED (retryable) says
  // so now, and depends on no write; the submitter sends them again (idempotent by job_id).
  Stats& stats = host_.stats();
  size_t rejected = 0;
  for (auto& [route, ids] : turn_submits_) {
    for (const auto& id : ids) {
      if (auto w = waiters_.find(id); w != waiters_.end()) {
        w->second.forget(route);
        if (w->second.empty()) waiters_.erase(w);
      }
      const auto e = job_error(id, sc::JobCode::kQueueFull,
                               "the shared queue (" + queue_->describe() +
                                   ") failed before this job was stored; submit it again",
                               0, true);
      ++stats.rejected;
      ++rejected;
      host_.to_client_now(route, error_message(e, sc::Command::kRejected));
    }
  }
  turn_submits_.clear();
  if (rejected > 0) {
    spdlog::warn("shared queue: {} job(s) of this turn's SUBMITs REJECTED", rejected);
  }
  if (auto joined = queue_->rejoin(); joined) {
    rejoined();
  } else {
    spdlog::error("{}; trying again in 1 s", joined.error().message);
    host_.timers().set(TimerQueue::Kind::kRejoin, host_.now() + kRejoinRetry);
  }
}

}  // namespace paddock::broker
