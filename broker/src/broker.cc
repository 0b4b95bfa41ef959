#include "paddock/broker/broker.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "dashboard/api.h"
#include "loop.h"
#include "paddock/schemas/codes.h"
#include "paddock/wire/zmq_frames.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

namespace {

// Answers held for one slow client before further ones are dropped (and logged).
// Messages read from one socket per loop turn, so neither side starves the other.
constexpr int kBurst = 1000;
// Frames (about one per job) read from submitters per loop turn: a turn's store writes, and so
// its latency (a PONG waits for it), stay bounded however large the SUBMITs.
constexpr size_t kClientFramesPerTurn = 4096;

zmq::socket_t make_router(zmq::context_t& ctx, const std::string& endpoint, int hwm,
                          const std::string& curve_secret_key, const char* zap_domain,
                          std::string& bound) {
  zmq::socket_t s(ctx, zmq::socket_type::router);
  wire::apply_common_options(s);
  if (!curve_secret_key.empty()) {
    // Before bind: every connection on this endpoint is then CURVE, checked by ZAP in `domain`.
    s.set(zmq::sockopt::curve_server, true);
    s.set(zmq::sockopt::curve_secretkey, curve_secret_key);
    s.set(zmq::sockopt::zap_domain, zap_domain);
  }
  s.set(zmq::sockopt::router_mandatory, 1);
  s.set(zmq::sockopt::sndhwm, hwm);
  s.set(zmq::sockopt::rcvhwm, hwm);
  s.bind(endpoint);
  bound = s.get(zmq::sockopt::last_endpoint);
  return s;
}

}  // namespace

Broker::Broker(Options options) : loop_(std::make_unique<Loop>(std::move(options))) {}
Broker::~Broker() = default;
std::string Broker::client_endpoint() const { return loop_->client_endpoint; }
std::string Broker::worker_endpoint() const { return loop_->worker_endpoint; }
std::string Broker::metrics_address() const { return loop_->metrics_address; }
std::string Broker::curve_public_key() const { return loop_->curve_public_key; }
Stats Broker::run() { return loop_->run(stop_); }

Broker::Loop::Loop(Options options)
    : options_(std::move(options)),
      metrics_(!options_.journal_path.empty() || !options_.store_url.empty()) {
  check_security();
  if (!options_.store_url.empty()) {
    if (!options_.journal_path.empty()) {
      throw std::runtime_error("a journal and a shared store exclude each other");
    }
    std::string error;
    PgStore::Settings s;
    s.conninfo = options_.store_url;
    s.broker_name = options_.broker_name;
    s.lease_ms = options_.lease_ms;
    auto store = PgStore::open(std::move(s), error);
    if (!store) throw std::runtime_error(error);
    shared_ = store.get();
    journal_ = std::move(store);
    spdlog::info("{}: shared queue, this broker is {} (lease {} ms)", journal_->describe(),
                 shared_->broker_id(), options_.lease_ms);
  } else if (!options_.journal_path.empty()) {
    std::string error;
    auto journal = Journal::open(options_.journal_path, error);
    if (!journal) throw std::runtime_error(error);
    embedded_ = journal.get();
    journal_ = std::move(journal);
    recover();
  }
  const std::string& key = options_.curve_secret_key;
  if (!key.empty()) {
    curve_public_key = curve::public_of(key);
    zap_ = std::make_unique<ZapHandler>(context, options_.client_allow, options_.worker_allow);
  }
  clients = make_router(context, options_.client_endpoint, options_.client_send_hwm, key,
                        kClientZapDomain, client_endpoint);
  workers = make_router(context, options_.worker_endpoint, options_.send_hwm, key, kWorkerZapDomain,
                        worker_endpoint);
  if (!key.empty()) {
    client_handshakes_ = std::make_unique<HandshakeMonitor>(context, clients, "client");
    worker_handshakes_ = std::make_unique<HandshakeMonitor>(context, workers, "worker");
  }
  if (!options_.metrics_address.empty()) {
    http_ = std::make_unique<metrics::HttpServer>();
    metrics::serve_metrics(*http_, metrics_.registry);
    // Decided on the address asked for (":PORT" is loopback), before anything is served.
    dashboard_access_ = std::make_unique<dashboard::Access>(
        options_.dashboard_token, metrics::is_loopback(options_.metrics_address));
    dashboard_ = std::make_unique<dashboard::Recorder>(options_.dashboard_recent_jobs,
                                                       journal_ != nullptr, now_unix_ms());
    dashboard::serve_dashboard(*http_, dashboard_->box(), *dashboard_access_, store_lookup());
    http_->start(options_.metrics_address);
    metrics_address = http_->address();
  }
}

dashboard::StoreLookup Broker::Loop::store_lookup() const {
  dashboard::StoreLookup lookup;
  if (!options_.store_url.empty()) {
    lookup.source = "shared-queue";
    lookup.open = [url = options_.store_url](std::string& error) -> std::unique_ptr<Store> {
      return PgStore::open_reader(url, error);
    };
  } else if (!options_.journal_path.empty()) {
    lookup.source = "journal";
    lookup.open = [path = options_.journal_path](std::string& error) -> std::unique_ptr<Store> {
      return Journal::open(path, error, /*read_only=*/true);
    };
  }
  return lookup;
}

void Broker::Loop::check_security() const {
  if (!options_.curve_secret_key.empty()) {
    if (!curve::valid_key(options_.curve_secret_key)) {
      throw std::runtime_error("the CURVE secret key is not a 40-character Z85 key");
    }
    if (!curve::curve_available()) throw std::runtime_error("this libzmq has no CURVE support");
    if (options_.client_allow.empty() || options_.worker_allow.empty()) {
      throw std::runtime_error(
          "CURVE needs both allowlists: --client-allow (submitters' public keys) and "
          "--worker-allow (workers' public keys)");
    }
    return;
  }
  for (const auto* ep : {&options_.client_endpoint, &options_.worker_endpoint}) {
    if (is_local_endpoint(*ep)) continue;
    if (!options_.allow_plaintext) {
      throw std::runtime_error(
          "endpoint " + *ep +
          " is not loopback or ipc, and without CURVE its jobs and results "
          "would cross the network in plaintext: give --curve-secret-key with --client-allow and "
          "--worker-allow (README.md, \"Operating Paddock\"), or --allow-plaintext to accept that");
    }
    spdlog::warn(
        "PLAINTEXT on {} (--allow-plaintext): jobs, results and the peers' identities are "
        "readable and forgeable by anyone on the network path; use CURVE",
        *ep);
  }
}

Stats Broker::Loop::run(const std::atomic<bool>& stop) {
  spdlog::info("broker listening: clients on {}, workers on {} ({})", client_endpoint,
               worker_endpoint,
               curve_public_key.empty() ? "plaintext" : "CURVE, public key " + curve_public_key);
  if (http_) {
    spdlog::info("metrics on http://{}/metrics", metrics_address);
    if (!metrics::is_loopback(metrics_address)) {
      spdlog::warn("metrics on {} are served without authentication to whoever can reach it",
                   metrics_address);
    }
    if (!dashboard_access_->served()) {
      spdlog::warn(
          "dashboard NOT served on {}: it is not a loopback address and no operator "
          "token was given (--dashboard-token-file)",
          metrics_address);
    } else {
      spdlog::info("dashboard on http://{}/dashboard/ ({})", metrics_address,
                   dashboard_access_->token_required()
                       ? "operator token required: Authorization: Bearer, or /login?token= once"
                       : "loopback, no token");
    }
  }
  now_ = Clock::now();
  publish_metrics();
  if (dashboard_) publish_dashboard();
  next_tick_ = now_ + std::chrono::milliseconds(options_.heartbeat_ms);
  std::vector<zmq::message_t> frames;
  while (!stop.load()) {
    zmq::pollitem_t items[6] = {{clients.handle(), 0, ZMQ_POLLIN, 0},
                                {workers.handle(), 0, ZMQ_POLLIN, 0}};
    int n_items = 2;
    if (shared_ && shared_->socket() >= 0) {
      items[n_items++] = {nullptr, shared_->socket(), ZMQ_POLLIN, 0};  // NOTIFYs
    }
    if (zap_) {
      items[n_items++] = {zap_->socket().handle(), 0, ZMQ_POLLIN, 0};
      items[n_items++] = {client_handshakes_->socket().handle(), 0, ZMQ_POLLIN, 0};
      items[n_items++] = {worker_handshakes_->socket().handle(), 0, ZMQ_POLLIN, 0};
    }
    auto wake = next_tick_;
    if (!retry_at_.empty()) wake = std::min(wake, retry_at_.begin()->first);
    if (shared_) {
      // The next claim poll; while the database is away, the next re-join instead (a claim time
      // left in the past would make every poll return at once).
      wake = std::min(wake, shared_->healthy() ? next_claim_ : next_rejoin_);
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now());
    if (pending_total_ > 0) wait = std::min(wait, std::chrono::milliseconds(1));
    if (publish_pending_) {
      // What this turn changed shows within a publish interval even if no message follows.
      wait = std::min(wait,
                      std::chrono::ceil<std::chrono::milliseconds>(next_publish_ - Clock::now()));
    }
    if (dashboard_pending_) {
      wait = std::min(wait,
                      std::chrono::ceil<std::chrono::milliseconds>(next_dashboard_ - Clock::now()));
    }
    try {
      zmq::poll(items, n_items, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal: the loop condition decides
      throw;
    }
    now_ = Clock::now();
    const bool ticks =
        now_ >= next_tick_ || (!retry_at_.empty() && retry_at_.begin()->first <= now_);
    int handled = 0;
    if (zap_) {
      // Handshakes waiting for a verdict go on at once; refusals are logged.
      zap_->handle_waiting();
      client_handshakes_->handle_waiting();
      worker_handshakes_->handle_waiting();
    }
    if (shared_) shared_turn_start();
    // Worker messages first: they free credits and finish jobs.
    for (int i = 0; i < kBurst && wire::recv_message(workers, frames); ++i, ++handled) {
      if (frames.size() < 2) continue;  // a routing id alone: nothing to answer
      auto parts = wire::views(frames, 1);
      on_worker_message(frames[0].to_string(), parts, frames[1]);
    }
    size_t client_frames = 0;
    for (int i = 0;
         i < kBurst && client_frames < kClientFramesPerTurn && wire::recv_message(clients, frames);
         ++i, ++handled) {
      client_frames += frames.size();
      if (frames.size() < 2) continue;
      auto parts = wire::views(frames, 1);
      on_client_message(frames[0].to_string(), parts);
    }
    if (!retry_at_.empty()) release_retries();
    if (shared_) claim_for_credits();
    dispatch();
    if (Clock::now() >= next_tick_) tick();
    if (journal_) {
      const bool writes = journal_->dirty();
      const auto t0 = Clock::now();
      if (!commit_and_send()) {
        if (!shared_) {
          stats_.journal_failed = true;
          break;
        }
      }
      if (writes) metrics_.journal_commit.observe(Clock::now() - t0);
    }
    if (pending_total_ > 0) flush_pending();
    if (http_) {
      publish_pending_ = publish_pending_ || handled > 0 || ticks;
      if (publish_pending_ && now_ >= next_publish_) publish_metrics();
      dashboard_pending_ = dashboard_pending_ || handled > 0 || ticks;
      if (dashboard_pending_ && now_ >= next_dashboard_) publish_dashboard();
    }
  }
  std::string fate;
  if (shared_) {
    fate = std::to_string(jobs_.size()) + " jobs held (" + std::to_string(jobs_.queued()) +
           " queued) are given back to the shared queue";
  } else if (journal_ && stats_.journal_failed) {
    // The journal holds what its last commit stored, not what this loop held after it: the jobs
    // accepted in the failed turn are not in it (their submitters were not told ACCEPTED), and
    // the jobs answered in it are still there unanswered (their answers were not sent).
    fate = std::to_string(jobs_.size()) + " jobs held (" + std::to_string(jobs_.queued()) +
           " queued); the journal keeps " + std::to_string(unanswered_at_commit_) +
           " unanswered for the next start, as of its last commit (this turn's writes failed)";
  } else if (journal_) {
    fate = std::to_string(jobs_.size()) + " jobs held (" + std::to_string(jobs_.queued()) +
           " queued) are kept in the journal for the next start";
  } else {
    fate = std::to_string(jobs_.size()) + " jobs held (" + std::to_string(jobs_.queued()) +
           " queued) are dropped (no journal)";
  }
  spdlog::info(
      "broker stopping: {}; accepted {}, results {}, errors {}, rejected {}, invalid {}, "
      "requeued {}, undeliverable {}, stale outcomes {}, overdue {}",
      fate, stats_.accepted, stats_.results, stats_.errors, stats_.rejected, stats_.invalid,
      stats_.requeued, stats_.undeliverable, stats_.stale_outcomes, stats_.overdue);
  for (const auto& id : registry_.routing_ids()) {
    to_worker(id, sc::make_message(sc::Command::kDisconnect));
  }
  if (shared_) shared_->leave();
  return stats_;
}

void Broker::Loop::dispatch() {
  // Images whose next job no worker can take this turn (none of those that have the image has a
  // credit): their jobs wait without holding up other images' (no head-of-line blocking).
  blocked_images_.clear();
  while (jobs_.queued() > 0) {
    const std::string* image = jobs_.next_image(blocked_images_);
    if (image == nullptr) return;
    WorkerState* w = registry_.next_with_credit(*image);
    if (w == nullptr) {
      const auto grace = std::chrono::milliseconds(options_.image_grace_ms);
      if (registry_.image_unknown(*image, now_, grace)) {
        fail_unknown_image(*image);
      } else {
        blocked_images_.push_back(*image);
      }
      continue;
    }
    Job* job = jobs_.pop_next(*image, w->routing_id);
    const uint64_t now_ms = now_unix_ms();
    if (job->request.deadline_ms != 0 && job->request.deadline_ms <= now_ms) {
      registry_.grant(*w, 0);  // the credit was not spent; keep the worker in the ring
      answer_error(*job, sc::JobCode::kDeadlineExceeded,
                   "deadline passed before a worker could start the job", false);
      jobs_.remove(job->request.job_id);
      continue;
    }
    const auto queued_us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now_ - job->accepted_at).count());
    // The request as its submitter encoded it (checked on submit), not decoded and encoded again.
    auto status = wire::send_message(
        workers,
        sc::make_message(sc::Command::kJob,
                         {sc::encode_job_dispatch(job->attempt, queued_us, job->request.encoded)}),
        w->routing_id);
    if (status != wire::SendStatus::kOk) {
      // Not sent: the job keeps its attempt and goes back; the worker's credit is not spent.
      jobs_.requeue(*job);
      registry_.grant(*w, 0);  // back in its rings
      if (status == wire::SendStatus::kUnreachable) worker_gone(w->routing_id, "is unreachable");
      return;
    }
    --w->credits;
    w->jobs.insert(job->request.job_id);
    job->dispatched_at = now_;
    if (dashboard_) dashboard_->dispatched(*job, w->worker_id, now_ms);
    metrics_.dispatch_latency.observe(now_ - job->accepted_at);
    if (journal_) journal_->dispatched(job->request.job_id, job->attempt, job->journal_row);
  }
}

void Broker::Loop::fail_unknown_image(std::string image) {
  const auto images = registry_.images();
  std::string have;
  for (const auto& i : images) have += (have.empty() ? "" : ", ") + i;
  const std::string message = "no connected worker has image '" + image + "' (the " +
                              std::to_string(registry_.size()) +
                              " connected worker(s) have: " + (have.empty() ? "none" : have) + ")";
  auto jobs = jobs_.take_image(image);
  if (protocol_log_.allow()) {
    spdlog::warn("{}: {} queued job(s) answered UnknownImage", message, jobs.size());
  }
  for (const Job& job : jobs) answer_error(job, sc::JobCode::kUnknownImage, message, false);
}

void Broker::Loop::tick() {
  next_tick_ = now_ + std::chrono::milliseconds(options_.heartbeat_ms);
  const auto cutoff =
      now_ - std::chrono::milliseconds(uint64_t{options_.heartbeat_ms} * options_.liveness);
  for (const auto& id : registry_.silent_since(cutoff)) worker_gone(id, "missed its heartbeats");
  take_back_overdue();
  for (const auto& id : registry_.routing_ids()) {
    to_worker(id, sc::make_message(sc::Command::kHeartbeat));
  }
  for (Job& job : jobs_.take_expired(now_unix_ms())) {
    answer_error(job, sc::JobCode::kDeadlineExceeded,
                 "deadline passed before a worker could start the job", false);
  }
  if (journal_) {
    const uint64_t now_ms = now_unix_ms();
    if (now_ms > options_.result_ttl_ms) journal_->expire(now_ms - options_.result_ttl_ms);
  }
  if (shared_) shared_tick();
}

void Broker::Loop::take_back_overdue() {
  // O(jobs on workers) once per heartbeat. A worker says nothing of a job between JOB and its
  // outcome (protocol version 1), so the bound counts from the dispatch.
  std::vector<std::pair<std::string, std::string>> overdue;  // (worker route, job id)
  const auto margin = std::chrono::milliseconds(options_.overdue_margin_ms);
  registry_.for_each([&](const WorkerState& w) {
    for (const auto& id : w.jobs) {
      const Job* job = jobs_.find(id);
      if (job == nullptr || job->state != Job::State::kRunning) continue;
      if (now_ - job->dispatched_at > std::chrono::milliseconds(job->request.timeout_ms) + margin) {
        overdue.emplace_back(w.routing_id, id);
      }
    }
  });
  for (const auto& [route, id] : overdue) {
    WorkerState* w = registry_.find(route);
    Job* job = jobs_.find(id);
    if (w == nullptr || job == nullptr) continue;
    w->jobs.erase(id);  // worker_gone (below, from to_worker) leaves it to this function
    const std::string name = w->worker_id;
    ++stats_.overdue;
    spdlog::warn(
        "worker '{}' held job '{}' (attempt {}) past its timeout ({} ms) plus {} ms "
        "without an answer: taken back{}",
        name, id, job->attempt, job->request.timeout_ms, options_.overdue_margin_ms,
        job->attempt >= options_.max_attempts && !job->cancel_requested ? "; attempts exhausted"
                                                                        : "");
    // The worker stops it if it still runs it; a late outcome of it is stale (dropped).
    to_worker(route, sc::make_message(sc::Command::kCancel, {sc::encode(sc::JobRef{id})}));
    // (`w` may be gone now: to_worker forgets a worker it finds unreachable.)
    if (job->cancel_requested) {
      answer_error(*job, sc::JobCode::kCancelled,
                   "cancelled; its worker held it past its timeout without an answer", false);
      jobs_.remove(id);
    } else if (job->attempt >= options_.max_attempts) {
      answer_error(*job, sc::JobCode::kWorkerLost,
                   "worker '" + name + "' held it past its timeout plus " +
                       std::to_string(options_.overdue_margin_ms) +
                       " ms without an answer, on "
                       "attempt " +
                       std::to_string(job->attempt) + " of " +
                       std::to_string(options_.max_attempts),
                   true);
      jobs_.remove(id);
    } else {
      if (dashboard_) dashboard_->attempt_ended(*job, "overdue");
      ++job->attempt;
      jobs_.requeue(*job);
    }
  }
}

void Broker::Loop::release_retries() {
  while (!retry_at_.empty() && retry_at_.begin()->first <= now_) {
    const std::string id = retry_at_.begin()->second;
    retry_at_.erase(retry_at_.begin());
    Job* job = jobs_.find(id);
    if (job != nullptr && job->state == Job::State::kWaiting) jobs_.requeue(*job);
  }
}

void Broker::Loop::recover() {
  const auto pending = embedded_->pending();
  now_ = Clock::now();
  for (const auto& p : pending) {
    auto request = sc::decode_job_request(p.request);
    if (!request || request->job_id != p.job_id) {
      spdlog::error("journal: job '{}' has an unreadable request; answered as invalid", p.job_id);
      sc::JobError e;
      e.job_id = p.job_id;
      e.code = sc::code(sc::JobCode::kInvalidRequest);
      e.variant = std::string(sc::job_code_name(e.code));
      e.message = "the journal's copy of this job could not be read back";
      journal_->finished(p.job_id, static_cast<uint8_t>(sc::Command::kError), sc::encode(e),
                         now_unix_ms());
      continue;
    }
    // No route: its submitter reconnects and FETCHes (or submits it again).
    Job& job = jobs_.push(QueuedRequest::of(*request, p.request), std::string(), now_);
    job.recovered = true;
    job.journal_row = p.row;
    if (p.cancel_requested) {
      // CANCELled while running, and its worker had not answered when the broker stopped.
      job.attempt = p.attempt;
      answer_error(job, sc::JobCode::kCancelled,
                   "cancelled while running; the broker restarted before its worker answered",
                   false);
      jobs_.remove(p.job_id);
      continue;
    }
    // A job that was on a worker when the broker stopped starts its next attempt; that worker's
    // outcome of the attempt before is still taken (worker_side.cc, on_outcome).
    job.attempt = p.attempt + (p.dispatched ? 1 : 0);
    job.recovered_attempt = p.dispatched ? p.attempt : 0;
    if (job.attempt > options_.max_attempts) {
      answer_error(job, sc::JobCode::kWorkerLost,
                   "the broker restarted during attempt " + std::to_string(p.attempt) + " of " +
                       std::to_string(options_.max_attempts),
                   true);
      jobs_.remove(p.job_id);
      continue;
    }
    ++stats_.recovered;
  }
  std::string error;
  if (!journal_->commit(error)) throw std::runtime_error(error);
  unanswered_at_commit_ = jobs_.size();
  stats_.quarantined = embedded_->quarantined();
  spdlog::info("journal {}: {} job(s) re-queued, {} held in all{}", options_.journal_path,
               stats_.recovered, journal_->size(),
               stats_.quarantined == 0
                   ? ""
                   : ", " + std::to_string(stats_.quarantined) +
                         " damaged one(s) quarantined and answered JournalDamaged (107)");
}

bool Broker::Loop::commit_and_send() {
  if (shared_) flush_shared_answers();
  std::string error;
  if (!journal_->commit(error)) {
    if (shared_) {
      // Not fatal: the queue is in the database; this broker forgets its turn and re-joins.
      shared_failed(error);
      return false;
    }
    // Fail-stop: what this turn would have said depends on writes that did not happen. The
    // submitters retry (submit is idempotent) once a broker runs again on an intact journal.
    spdlog::critical("{}; stopping without sending {} message(s) of this turn", error,
                     outbox_.size());
    outbox_.clear();
    return false;
  }
  turn_submits_.clear();
  // Every job held is stored unanswered now, and no other job is (answered jobs leave jobs_ in
  // the turn their answer is written).
  unanswered_at_commit_ = jobs_.size();
  auto out = std::move(outbox_);
  outbox_.clear();
  for (auto& [route, parts] : out) send_to_client(route, std::move(parts));
  return true;
}

void Broker::Loop::worker_gone(const std::string& route, const char* why) {
  WorkerState* w = registry_.find(route);
  if (w == nullptr) return;
  spdlog::warn("worker '{}' {}: {} job(s) in flight go back to the queue", w->worker_id, why,
               w->jobs.size());
  const std::string name = w->worker_id;
  for (const auto& job_id : registry_.remove(route, now_)) {
    Job* job = jobs_.find(job_id);
    if (job == nullptr) continue;
    if (job->cancel_requested) {
      answer_error(*job, sc::JobCode::kCancelled, "cancelled; its worker was lost meanwhile",
                   false);
      jobs_.remove(job_id);
    } else if (job->attempt >= options_.max_attempts) {
      answer_error(*job, sc::JobCode::kWorkerLost,
                   "worker '" + name + "' was lost on attempt " + std::to_string(job->attempt) +
                       " of " + std::to_string(options_.max_attempts),
                   true);
      jobs_.remove(job_id);
    } else {
      if (dashboard_) dashboard_->attempt_ended(*job, "worker lost");
      ++job->attempt;
      ++stats_.requeued;
      jobs_.requeue(*job);
    }
  }
}

void Broker::Loop::answer(const Job& job, sc::Command command, const std::string& body,
                          const sc::JobResult* result, const sc::JobError* error) {
  metrics_.job_latency.observe(now_ - job.accepted_at);
  if (dashboard_) dashboard_->answered(job, result, error, now_, now_unix_ms());
  if (shared_) {
    // Stored with the turn's other answers, in one statement before its commit
    // (flush_shared_answers): what its submitters hear is then the job's stored answer.
    shared_answers_.push_back(
        SharedAnswer{job.request.job_id, static_cast<uint8_t>(command), body, job.routes});
    return;
  } else if (journal_) {
    journal_->finished(job.request.job_id, static_cast<uint8_t>(command), body, now_unix_ms(),
                       job.journal_row);
  }
  for (const auto& route : job.routes.all()) to_client(route, sc::make_message(command, {body}));
}

void Broker::Loop::answer_error(const Job& job, sc::JobCode code, const std::string& message,
                                bool retryable) {
  sc::JobError e;
  e.job_id = job.request.job_id;
  e.code = sc::code(code);
  e.variant = std::string(sc::job_code_name(e.code));
  e.message = message;
  e.attempt = job.attempt;
  e.retryable = retryable;
  ++stats_.errors;
  metrics_.failed(e.code, e.variant);
  answer(job, sc::Command::kError, sc::encode(e), nullptr, &e);
}

void Broker::Loop::to_client(const std::string& route, std::vector<std::string> parts) {
  if (journal_) {
    outbox_.emplace_back(route, std::move(parts));
    return;
  }
  send_to_client(route, std::move(parts));
}

namespace {

size_t bytes_of(const std::vector<std::string>& parts) {
  size_t n = 0;
  for (const auto& p : parts) n += p.size();
  return n;
}

}  // namespace

void Broker::Loop::send_to_client(const std::string& route, std::vector<std::string> parts) {
  auto it = pending_.find(route);
  if (it == pending_.end()) {
    auto status = wire::send_message(clients, parts, route);
    if (status == wire::SendStatus::kOk) return;
    if (status == wire::SendStatus::kUnreachable) {
      ++stats_.undeliverable;
      if (protocol_log_.allow()) spdlog::info("client gone; an answer for it is dropped");
      return;
    }
    it = pending_.emplace(route, PendingAnswers{}).first;
  }
  const size_t size = bytes_of(parts);
  if (it->second.bytes + size > options_.max_undelivered_bytes_per_client ||
      pending_bytes_ + size > options_.max_undelivered_bytes) {
    ++stats_.undeliverable;
    if (protocol_log_.allow()) {
      spdlog::warn(
          "client not reading: {} bytes of answers wait for it ({} for all clients); an "
          "answer of {} bytes is dropped{}",
          it->second.bytes, pending_bytes_, size,
          journal_ ? " (it stays in the journal for FETCH)" : "");
    }
    if (it->second.queue.empty()) pending_.erase(it);
    return;
  }
  it->second.queue.push_back(std::move(parts));
  it->second.bytes += size;
  pending_bytes_ += size;
  ++pending_total_;
}

void Broker::Loop::flush_pending() {
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto& p = it->second;
    while (!p.queue.empty()) {
      auto status = wire::send_message(clients, p.queue.front(), it->first);
      if (status == wire::SendStatus::kWouldBlock) break;
      if (status == wire::SendStatus::kUnreachable) {
        stats_.undeliverable += p.queue.size();
        pending_total_ -= p.queue.size();
        pending_bytes_ -= p.bytes;
        p.queue.clear();
        p.bytes = 0;
        break;
      }
      const size_t size = bytes_of(p.queue.front());
      p.bytes -= size;
      pending_bytes_ -= size;
      --pending_total_;
      p.queue.pop_front();
    }
    it = p.queue.empty() ? pending_.erase(it) : std::next(it);
  }
}

void Broker::Loop::to_worker(const std::string& route, std::vector<std::string> parts) {
  // Control messages only (jobs go through dispatch()): a full pipe drops a heartbeat, which the
  // next tick repeats; an unreachable worker is gone.
  if (wire::send_message(workers, parts, route) == wire::SendStatus::kUnreachable) {
    worker_gone(route, "is unreachable");
  }
}

void Broker::Loop::publish_metrics() {
  if (embedded_) stats_.quarantined = embedded_->quarantined();
  const auto totals = registry_.totals();
  LoopGauges g;
  g.queued_by_priority = &jobs_.queued_by_priority();
  g.held = jobs_.size();
  g.running = totals.jobs;
  g.workers = registry_.size();
  g.credits = totals.credits;
  metrics_.publish(stats_, g);
  publish_pending_ = false;
  next_publish_ = now_ + BrokerMetrics::kPublishInterval;
}

void Broker::Loop::publish_dashboard() {
  dashboard::Recorder::LoopState state;
  state.jobs = &jobs_;
  state.workers = &registry_;
  state.stats = &stats_;
  state.running = registry_.totals().jobs;
  dashboard_->publish(state, now_, now_unix_ms());
  dashboard_pending_ = false;
  next_dashboard_ = now_ + dashboard::kPublishInterval;
}

uint64_t Broker::Loop::now_unix_ms() const {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace paddock::broker
