#include "paddock/broker/broker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "answers.h"
#include "dashboard/api.h"
#include "loop.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/codes.h"
#include "paddock/wire/zmq_frames.h"
#include "tenancy.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

namespace {

// Messages read from one socket per loop turn, so neither side starves the other.
constexpr int kBurst = 1000;
// Frames (about one per job) read from submitters per loop turn: a turn's store writes, and so
// its latency (a PONG waits for it), stay bounded however large the SUBMITs.
constexpr size_t kClientFramesPerTurn = 4096;

LifePolicy policy_of(const Options& o) {
  LifePolicy p;
  p.max_attempts = o.max_attempts;
  p.retry_base_ms = o.retry_base_ms;
  p.retry_cap_ms = o.retry_cap_ms;
  p.overdue_margin_ms = o.overdue_margin_ms;
  return p;
}

}  // namespace

base::Expected<std::unique_ptr<Broker>> Broker::open(Options options) {
  auto checked = Loop::checked(std::move(options));
  if (!checked) return std::move(checked).error();
  auto storage = open_storage(*checked);
  if (!storage) return std::move(storage).error();
  auto loop = std::make_unique<Loop>(std::move(checked).value(), std::move(storage).value());
  if (auto started = loop->start(); !started) return std::move(started).error();
  return std::unique_ptr<Broker>(new Broker(std::move(loop)));
}

Broker::Broker(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}
Broker::~Broker() = default;
std::string Broker::client_endpoint() const { return loop_->client_endpoint; }
std::string Broker::worker_endpoint() const { return loop_->worker_endpoint; }
std::string Broker::metrics_address() const { return loop_->metrics_address; }
std::string Broker::curve_public_key() const { return loop_->curve_public_key; }
Stats Broker::run() { return loop_->run(stop_, reload_); }

Broker::Loop::Loop(Options options, OpenedStorage storage)
    : options_(std::move(options)),
      life_(policy_of(options_)),
      store_(make_job_store(std::move(storage), *this)),
      metrics_(store_->persistent()) {}

base::Status Broker::Loop::start() {
  now_ = Clock::now();  // the time of the jobs the store re-queues
  if (!options_.tenants_file.empty()) {
    auto policy = TenantPolicy::load(options_.tenants_file);
    if (!policy) return std::move(policy).error();
    tenants_ = std::move(policy).value();
    spdlog::info("tenants file {}: {} tenant(s) named, defaults for the others",
                 options_.tenants_file, tenants_.named());
  }
  // Dispatch shares (job_queue.h): the policy in force when asked; reload_tenants() asks again.
  life_.jobs().set_shares([this](std::string_view tenant) {
    const TenantLimits& l = tenants_.of(tenant);
    return TenantShare{l.weight, l.max_running};
  });
  if (auto started = store_->start(); !started) return started;
  const std::string& key = options_.curve_secret_key;
  if (!key.empty()) {
    curve_public_key = curve::public_of(key);
    zap_ = std::make_unique<ZapHandler>(context, options_.client_allow, options_.worker_allow);
  }
  Transport::Settings t;
  t.client_endpoint = options_.client_endpoint;
  t.worker_endpoint = options_.worker_endpoint;
  t.client_send_hwm = options_.client_send_hwm;
  t.worker_send_hwm = options_.send_hwm;
  t.curve_secret_key = key;
  t.client_zap_domain = kClientZapDomain;
  t.worker_zap_domain = kWorkerZapDomain;
  t.max_undelivered_bytes_per_client = options_.max_undelivered_bytes_per_client;
  t.max_undelivered_bytes = options_.max_undelivered_bytes;
  try {
    transport_ = std::make_unique<Transport>(context, t);
  } catch (const zmq::error_t& e) {  // cppzmq reports by throwing: a port in use, a bad endpoint
    return base::fail(std::string("cannot bind: ") + e.what());
  }
  client_endpoint = transport_->client_endpoint();
  worker_endpoint = transport_->worker_endpoint();
  if (!key.empty()) {
    client_handshakes_ =
        std::make_unique<HandshakeMonitor>(context, transport_->clients(), "client");
    worker_handshakes_ =
        std::make_unique<HandshakeMonitor>(context, transport_->workers(), "worker");
  }
  if (!options_.metrics_address.empty()) {
    http_ = std::make_unique<metrics::HttpServer>();
    metrics::serve_metrics(*http_, metrics_.registry);
    // Decided on the address asked for (":PORT" is loopback), before anything is served.
    dashboard_access_ = std::make_unique<dashboard::Access>(
        options_.dashboard_token, metrics::is_loopback(options_.metrics_address));
    dashboard_ = std::make_unique<dashboard::Recorder>(options_.dashboard_recent_jobs,
                                                       store_->persistent(), now_unix_ms());
    dashboard::serve_dashboard(*http_, dashboard_->box(), *dashboard_access_, store_->lookup(),
                               options_.local_tenant);
    if (auto serving = http_->start(options_.metrics_address); !serving) return serving;
    metrics_address = http_->address();
  }
  return {};
}

base::Expected<Options> Broker::Loop::checked(Options options) {
  constexpr const char* kTenantRule =
      "1-64 characters of [A-Za-z0-9._-], not starting with '.'; it names the tenant "
      "(broker/README.md, \"Tenants\")";
  if (!sc::valid_tenant(options.local_tenant)) {
    return base::fail("--local-tenant '" + options.local_tenant + "': must be " + kTenantRule);
  }
  for (const auto& [key, name] : options.client_allow) {
    if (!sc::valid_tenant(name)) {
      return base::fail("client key " + key + " is named '" + name +
                        "': a client key's name must be " + kTenantRule);
    }
  }
  if (!options.curve_secret_key.empty()) {
    if (!curve::valid_key(options.curve_secret_key)) {
      return base::fail("the CURVE secret key is not a 40-character Z85 key");
    }
    if (!curve::curve_available()) return base::fail("this libzmq has no CURVE support");
    if (options.client_allow.empty() || options.worker_allow.empty()) {
      return base::fail(
          "CURVE needs both allowlists: --client-allow (submitters' public keys) and "
          "--worker-allow (workers' public keys)");
    }
    return options;
  }
  for (const auto* ep : {&options.client_endpoint, &options.worker_endpoint}) {
    if (is_local_endpoint(*ep)) continue;
    if (!options.allow_plaintext) {
      return base::fail(
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
  return options;
}

Stats Broker::Loop::run(const std::atomic<bool>& stop, std::atomic<bool>& reload) {
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
  timers_.set(TimerQueue::Kind::kHeartbeat,
              now_ + std::chrono::milliseconds(options_.heartbeat_ms));
  std::vector<zmq::message_t> frames;
  std::vector<std::string> retries;  // jobs whose backoff ended this turn
  while (!stop.load()) {
    if (reload.exchange(false)) reload_tenants();
    zmq::pollitem_t items[6] = {{transport_->clients().handle(), 0, ZMQ_POLLIN, 0},
                                {transport_->workers().handle(), 0, ZMQ_POLLIN, 0}};
    int n_items = 2;
    if (const int fd = store_->event_socket(); fd >= 0) {
      items[n_items++] = {nullptr, fd, ZMQ_POLLIN, 0};
    }
    if (zap_) {
      items[n_items++] = {zap_->socket().handle(), 0, ZMQ_POLLIN, 0};
      items[n_items++] = {client_handshakes_->socket().handle(), 0, ZMQ_POLLIN, 0};
      items[n_items++] = {worker_handshakes_->socket().handle(), 0, ZMQ_POLLIN, 0};
    }
    // One timeout for every timer: the heartbeat is always armed.
    auto wait = std::chrono::milliseconds(options_.heartbeat_ms);
    if (auto next = timers_.next()) {
      wait = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now());
    }
    if (transport_->holding()) wait = std::min(wait, std::chrono::milliseconds(1));
    try {
      zmq::poll(items, n_items, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal: the loop condition decides
      throw;
    }
    now_ = Clock::now();
    bool heartbeat = false;
    retries.clear();
    for (auto& key : timers_.take_due(now_)) {
      switch (key.kind) {
        case TimerQueue::Kind::kHeartbeat:
          heartbeat = true;
          break;
        case TimerQueue::Kind::kRetry:
          retries.push_back(std::move(key.job_id));
          break;
        case TimerQueue::Kind::kMetrics:
        case TimerQueue::Kind::kDashboard:
          break;  // woke the loop; publish_if_due() publishes
        case TimerQueue::Kind::kClaim:
        case TimerQueue::Kind::kRejoin:
          store_->on_timer(key.kind);
          break;
      }
    }
    const bool ticks = heartbeat || !retries.empty();
    int handled = 0;
    if (zap_) {
      // Handshakes waiting for a verdict go on at once; refusals are logged.
      zap_->handle_waiting();
      client_handshakes_->handle_waiting();
      worker_handshakes_->handle_waiting();
    }
    store_->turn_start();
    // Worker messages first: they free credits and finish jobs.
    for (int i = 0; i < kBurst && transport_->recv_worker(frames); ++i, ++handled) {
      if (frames.size() < 2) continue;  // a routing id alone: nothing to answer
      auto parts = wire::views(frames, 1);
      on_worker_message(frames[0].to_string(), parts, frames[1]);
    }
    size_t client_frames = 0;
    for (int i = 0;
         i < kBurst && client_frames < kClientFramesPerTurn && transport_->recv_client(frames);
         ++i, ++handled) {
      client_frames += frames.size();
      if (frames.size() < 2) continue;
      auto parts = wire::views(frames, 1);
      // The tenant: the name of the client's key on the allowlist, which the ZAP handler gave
      // its connection (CURVE); none without CURVE.
      const char* user = zmq_msg_gets(frames[1].handle(), "User-Id");
      on_client_message(frames[0].to_string(),
                        user != nullptr && *user != '\0' ? std::string_view(user)
                                                         : std::string_view(options_.local_tenant),
                        parts);
    }
    for (const auto& id : retries) life_.release(id);
    store_->before_dispatch();
    dispatch();
    if (heartbeat) tick();
    const bool writes = store_->dirty();
    const auto t0 = Clock::now();
    const auto committed = store_->commit();
    if (committed == JobStore::Commit::kFatal) {
      stats_.journal_failed = true;
      break;
    }
    if (committed == JobStore::Commit::kDone) {
      auto out = std::move(outbox_);
      outbox_.clear();
      for (auto& [route, parts] : out) to_client_now(route, std::move(parts));
    }
    if (writes) metrics_.journal_commit.observe(Clock::now() - t0);
    if (transport_->holding()) stats_.undeliverable += transport_->flush();
    if (http_) publish_if_due(handled > 0 || ticks);
  }
  spdlog::info(
      "broker stopping: {}; accepted {}, results {}, errors {}, rejected {}, invalid {}, "
      "requeued {}, undeliverable {}, stale outcomes {}, overdue {}",
      store_->fate(life_.jobs().size(), life_.jobs().queued(), stats_), stats_.accepted,
      stats_.results, stats_.errors, stats_.rejected, stats_.invalid, stats_.requeued,
      stats_.undeliverable, stats_.stale_outcomes, stats_.overdue);
  for (const auto& id : registry_.routing_ids()) {
    to_worker(id, sc::make_message(sc::Command::kDisconnect));
  }
  store_->leave();
  return stats_;
}

bool Broker::Loop::commit_and_send() {
  if (store_->commit() != JobStore::Commit::kDone) return false;
  auto out = std::move(outbox_);
  outbox_.clear();
  for (auto& [route, parts] : out) to_client_now(route, std::move(parts));
  return true;
}

void Broker::Loop::dispatch() {
  // Passed over this turn: images whose next job no worker can take (none of those that have the
  // image has a credit), and a tenant's image whose next job fits no worker now. Their jobs wait
  // without holding up the others' (no head-of-line blocking across images and tenants).
  blocked_.clear();
  JobQueue& jobs = life_.jobs();
  while (jobs.queued() > 0) {
    const Job* next = jobs.peek(blocked_);
    if (next == nullptr) return;
    const std::string image = next->request.image;
    const Footprint need{next->request.vcpus, next->request.mem_mib};
    bool credit = false;
    WorkerState* w = registry_.next_with_credit(image, need, &credit);
    if (w == nullptr) {
      const auto grace = std::chrono::milliseconds(options_.image_grace_ms);
      Footprint most;
      if (registry_.image_unknown(image, now_, grace)) {
        fail_unknown_image(image);
      } else if (registry_.never_fits(image, need, &most)) {
        fail_too_large(*next, most);
      } else if (!credit) {
        blocked_.images.push_back(image);
      } else {
        blocked_.tenant_images.emplace_back(key_tenant(next->request.job_id), image);
      }
      continue;
    }
    Job* job = &life_.start(*next, w->routing_id);
    const uint64_t now_ms = now_unix_ms();
    if (JobLife::expired(*job, now_ms)) {
      registry_.grant(*w, 0);  // the credit was not spent; keep the worker in the ring
      answer_error(*job, sc::JobCode::kDeadlineExceeded,
                   "deadline passed before a worker could start the job", false);
      life_.finish(job->request.job_id);
      continue;
    }
    const auto queued_us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now_ - job->accepted_at).count());
    // The request as its submitter encoded it (checked on submit), not decoded and encoded again.
    auto status = transport_->to_worker(
        w->routing_id,
        sc::make_message(sc::Command::kJob,
                         {sc::encode_job_dispatch(job->attempt, queued_us, job->request.encoded,
                                                  key_tenant(job->request.job_id))}));
    if (status != wire::SendStatus::kOk) {
      // Not sent: the job keeps its attempt and goes back; the worker's credit is not spent.
      life_.unsent(*job);
      registry_.grant(*w, 0);  // back in its rings
      if (status == wire::SendStatus::kUnreachable) worker_gone(w->routing_id, "is unreachable");
      return;
    }
    --w->credits;
    registry_.hold(*w, job->request.job_id, need);
    life_.sent(*job, now_);
    if (dashboard_) dashboard_->dispatched(*job, w->worker_id, now_ms);
    metrics_.dispatch_latency.observe(now_ - job->accepted_at);
    store_->dispatched(*job);
  }
}

void Broker::Loop::fail_unknown_image(std::string image) {
  const auto images = registry_.images();
  std::string have;
  for (const auto& i : images) have += (have.empty() ? "" : ", ") + i;
  const std::string message = "no connected worker has image '" + image + "' (the " +
                              std::to_string(registry_.size()) +
                              " connected worker(s) have: " + (have.empty() ? "none" : have) + ")";
  auto jobs = life_.jobs().take_image(image);
  if (protocol_log_.allow()) {
    spdlog::warn("{}: {} queued job(s) answered UnknownImage", message, jobs.size());
  }
  for (const Job& job : jobs) answer_error(job, sc::JobCode::kUnknownImage, message, false);
}

void Broker::Loop::fail_too_large(const Job& job, Footprint most) {
  const std::string key = job.request.job_id;
  const std::string message =
      "no connected worker with image '" + job.request.image + "' can ever fit this job: it asks " +
      std::to_string(job.request.vcpus) + " vCPU(s) and " + std::to_string(job.request.mem_mib) +
      " MiB; the most a worker offers is " +
      (most.vcpus == 0 ? std::string("any number of") : std::to_string(most.vcpus)) +
      " vCPU(s) and " +
      (most.mem_mib == 0 ? std::string("any amount of") : std::to_string(most.mem_mib)) + " MiB";
  if (protocol_log_.allow()) spdlog::warn("job '{}': {}", key, message);
  auto ended = life_.finish(key);
  if (ended) answer_error(*ended, sc::JobCode::kTooLarge, message, false);
}

void Broker::Loop::tick() {
  timers_.set(TimerQueue::Kind::kHeartbeat,
              now_ + std::chrono::milliseconds(options_.heartbeat_ms));
  const auto cutoff =
      now_ - std::chrono::milliseconds(uint64_t{options_.heartbeat_ms} * options_.liveness);
  for (const auto& id : registry_.silent_since(cutoff)) worker_gone(id, "missed its heartbeats");
  take_back_overdue();
  for (const auto& id : registry_.routing_ids()) {
    to_worker(id, sc::make_message(sc::Command::kHeartbeat));
  }
  for (Job& job : life_.jobs().take_expired(now_unix_ms())) {
    answer_error(job, sc::JobCode::kDeadlineExceeded,
                 "deadline passed before a worker could start the job", false);
  }
  store_->tick();
}

void Broker::Loop::take_back_overdue() {
  for (const auto& [route, id] : life_.overdue(registry_, now_)) {
    WorkerState* w = registry_.find(route);
    Job* job = life_.jobs().find(id);
    if (w == nullptr || job == nullptr) continue;
    registry_.release(*w, id);  // worker_gone (below, from to_worker) leaves it to this function
    const std::string name = w->worker_id;
    ++stats_.overdue;
    spdlog::warn(
        "worker '{}' held job '{}' (attempt {}) past its timeout ({} ms) plus {} ms "
        "without an answer: taken back{}",
        name, id, job->attempt, job->request.timeout_ms, options_.overdue_margin_ms,
        job->attempt >= options_.max_attempts && !job->cancel_requested ? "; attempts exhausted"
                                                                        : "");
    // The worker stops it if it still runs it; a late outcome of it is stale (dropped).
    to_worker(route, sc::make_message(sc::Command::kCancel, {sc::encode(worker_ref(id))}));
    // (`w` may be gone now: to_worker forgets a worker it finds unreachable.)
    auto loss = life_.lost(id);
    switch (loss.kind) {
      case JobLife::Loss::Kind::kCancelled:
        answer_error(*loss.job, sc::JobCode::kCancelled,
                     "cancelled; its worker held it past its timeout without an answer", false);
        break;
      case JobLife::Loss::Kind::kExhausted:
        answer_error(*loss.job, sc::JobCode::kWorkerLost,
                     "worker '" + name + "' held it past its timeout plus " +
                         std::to_string(options_.overdue_margin_ms) +
                         " ms without an answer, on "
                         "attempt " +
                         std::to_string(loss.job->attempt) + " of " +
                         std::to_string(options_.max_attempts),
                     true);
        break;
      case JobLife::Loss::Kind::kRequeued:
        if (dashboard_) dashboard_->attempt_ended(*loss.held, "overdue");
        break;
    }
  }
}

void Broker::Loop::worker_gone(const std::string& route, const char* why) {
  WorkerState* w = registry_.find(route);
  if (w == nullptr) return;
  spdlog::warn("worker '{}' {}: {} job(s) in flight go back to the queue", w->worker_id, why,
               w->jobs.size());
  const std::string name = w->worker_id;
  for (const auto& job_id : registry_.remove(route, now_)) {
    if (life_.jobs().find(job_id) == nullptr) continue;
    auto loss = life_.lost(job_id);
    switch (loss.kind) {
      case JobLife::Loss::Kind::kCancelled:
        answer_error(*loss.job, sc::JobCode::kCancelled, "cancelled; its worker was lost meanwhile",
                     false);
        break;
      case JobLife::Loss::Kind::kExhausted:
        answer_error(*loss.job, sc::JobCode::kWorkerLost,
                     "worker '" + name + "' was lost on attempt " +
                         std::to_string(loss.job->attempt) + " of " +
                         std::to_string(options_.max_attempts),
                     true);
        break;
      case JobLife::Loss::Kind::kRequeued:
        if (dashboard_) dashboard_->attempt_ended(*loss.held, "worker lost");
        ++stats_.requeued;
        break;
    }
  }
}

void Broker::Loop::answer(const Job& job, sc::Command command, const std::string& body,
                          const sc::JobResult* result, const sc::JobError* error) {
  metrics_.job_latency.observe(now_ - job.accepted_at);
  metrics_.answered(key_tenant(job.request.job_id), command == sc::Command::kResult);
  if (dashboard_) dashboard_->answered(job, result, error, now_, now_unix_ms());
  store_->answer(job, command, body);
}

void Broker::Loop::answer_error(const Job& job, sc::JobCode code, const std::string& message,
                                bool retryable) {
  const auto e = job_error(job.request.job_id, code, message, job.attempt, retryable);
  ++stats_.errors;
  metrics_.failed(e.code, e.variant);
  answer(job, sc::Command::kError, sc::encode(e), nullptr, &e);
}

void Broker::Loop::to_client(const std::string& route, std::vector<std::string> parts) {
  outbox_.emplace_back(route, std::move(parts));
}

size_t Broker::Loop::discard_outbox() {
  const size_t n = outbox_.size();
  outbox_.clear();
  return n;
}

void Broker::Loop::to_client_now(const std::string& route, std::vector<std::string> parts) {
  const auto d = transport_->to_client(route, std::move(parts));
  switch (d.kind) {
    case Transport::Delivery::Kind::kSent:
      break;
    case Transport::Delivery::Kind::kGone:
      ++stats_.undeliverable;
      if (protocol_log_.allow()) spdlog::info("client gone; an answer for it is dropped");
      break;
    case Transport::Delivery::Kind::kOverLimit:
      ++stats_.undeliverable;
      if (protocol_log_.allow()) {
        spdlog::warn(
            "client not reading: {} bytes of answers wait for it ({} for all clients); "
            "an answer of {} bytes is dropped{}",
            d.held_for_client, d.held_in_all, d.size, store_->undelivered_note());
      }
      break;
  }
}

void Broker::Loop::to_worker(const std::string& route, std::vector<std::string> parts) {
  if (transport_->to_worker(route, parts) == wire::SendStatus::kUnreachable) {
    worker_gone(route, "is unreachable");
  }
}

void Broker::Loop::reload_tenants() {
  if (options_.tenants_file.empty()) {
    spdlog::info("reload: no --tenants file; every tenant has the defaults");
    return;
  }
  auto policy = TenantPolicy::load(options_.tenants_file);
  if (!policy) {
    spdlog::error("reload: {}; the limits in force are kept", policy.error().message);
    return;
  }
  tenants_ = std::move(policy).value();
  life_.jobs().refresh_shares();
  spdlog::info("reloaded tenants file {}: {} tenant(s) named, defaults for the others",
               options_.tenants_file, tenants_.named());
}

std::vector<std::string> Broker::Loop::quota_refusal(std::string_view tenant,
                                                     std::string_view job_id, const char* limit,
                                                     std::string message) {
  ++stats_.rejected;
  metrics_.refused(tenant, limit);
  if (protocol_log_.allow()) spdlog::info("job '{}/{}' refused: {}", tenant, job_id, message);
  return error_message(
      job_error(std::string(job_id), sc::JobCode::kQuotaExceeded, std::move(message), 0, true),
      sc::Command::kRejected);
}

std::optional<std::vector<std::string>> Broker::Loop::admit(std::string_view tenant,
                                                            const sc::JobRequest& request,
                                                            uint32_t index, size_t queued_before) {
  const TenantLimits& limits = tenants_.of(tenant);
  const std::string job_id(key_job_id(request.job_id));
  if (auto cap = check_caps(limits, tenant, request)) {
    metrics_.refused(tenant, cap->field == "image" ? "images" : "max_" + cap->field);
    return invalid_reply(job_id, cap->message, index);
  }
  auto refuse = [&](const char* limit, std::string message) {
    return quota_refusal(tenant, job_id, limit, std::move(message));
  };
  const std::string who = "tenant '" + std::string(tenant) + "'";
  // On a shared queue the store counts them over every broker (SharedStore::submit).
  if (!store_->global_tenant_limits() &&
      life_.jobs().queued_of_tenant(tenant) + queued_before >= limits.max_queued) {
    return refuse("max_queued", max_queued_refusal(tenant, limits.max_queued));
  }
  if (limits.submit_rate > 0) {
    auto [it, fresh] = buckets_.try_emplace(std::string(tenant));
    Bucket& b = it->second;
    if (fresh) {
      b.tokens = static_cast<double>(limits.submit_burst);
    } else {
      const double elapsed = std::chrono::duration<double>(now_ - b.at).count();
      b.tokens = std::min(static_cast<double>(limits.submit_burst),
                          b.tokens + elapsed * limits.submit_rate);
    }
    b.at = now_;
    if (b.tokens < 1) {
      const auto wait_ms = static_cast<uint64_t>((1 - b.tokens) / limits.submit_rate * 1000) + 1;
      char rate[32];
      std::snprintf(rate, sizeof rate, "%g", limits.submit_rate);
      return refuse("submit_rate", who + " is over its submit_rate (" + rate + " jobs/s, burst " +
                                       std::to_string(limits.submit_burst) + "); retry in " +
                                       std::to_string(wait_ms) + " ms");
    }
    b.tokens -= 1;
  }
  return std::nullopt;
}

void Broker::Loop::stop_on_worker(const std::string& worker, const std::string& job_id,
                                  bool forget) {
  if (forget) {
    WorkerState* w = registry_.find(worker);
    if (w == nullptr) return;
    registry_.release(*w, job_id);
  }
  to_worker(worker, sc::make_message(sc::Command::kCancel, {sc::encode(worker_ref(job_id))}));
}

void Broker::Loop::publish_if_due(bool changed) {
  publish_pending_ = publish_pending_ || changed;
  if (publish_pending_) {
    if (now_ >= next_publish_) {
      publish_metrics();
    } else if (!timers_.armed(TimerQueue::Kind::kMetrics)) {
      // What this turn changed shows within a publish interval even if no message follows.
      timers_.set(TimerQueue::Kind::kMetrics, next_publish_);
    }
  }
  dashboard_pending_ = dashboard_pending_ || changed;
  if (dashboard_pending_) {
    if (now_ >= next_dashboard_) {
      publish_dashboard();
    } else if (!timers_.armed(TimerQueue::Kind::kDashboard)) {
      timers_.set(TimerQueue::Kind::kDashboard, next_dashboard_);
    }
  }
}

void Broker::Loop::publish_metrics() {
  store_->refresh(stats_);
  const auto totals = registry_.totals();
  LoopGauges g;
  g.queued_by_priority = &life_.jobs().queued_by_priority();
  g.held = life_.jobs().size();
  g.running = totals.jobs;
  g.workers = registry_.size();
  g.credits = totals.credits;
  g.jobs = &life_.jobs();
  metrics_.publish(stats_, g);
  publish_pending_ = false;
  next_publish_ = now_ + BrokerMetrics::kPublishInterval;
}

void Broker::Loop::publish_dashboard() {
  dashboard::Recorder::LoopState state;
  state.jobs = &life_.jobs();
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
