// The broker's handlers for worker messages (PROTOCOL.md, "Worker session").
#include <spdlog/spdlog.h>

#include <optional>

#include "loop.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/outcome_view.h"
#include "tenancy.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

namespace {

// The address of the peer a message came from, as ZeroMQ tells it ("" if it does not, e.g. over
// inproc).
std::string peer_address(const zmq::message_t& frame) {
  const char* value = zmq_msg_gets(frame.handle(), "Peer-Address");
  return value != nullptr ? value : "";
}

// An outcome decoded for the dashboard, which shows it; the broker itself reads only the view.
struct Shown {
  std::optional<sc::JobResult> result;
  std::optional<sc::JobError> error;
  const sc::JobResult* result_ptr() const { return result ? &*result : nullptr; }
  const sc::JobError* error_ptr() const { return error ? &*error : nullptr; }
};

// REQUIRES: `body` passed view_job_result (`is_result`) or view_job_error, so it decodes too.
Shown decode_for_dashboard(bool is_result, std::string_view body) {
  Shown shown;
  if (is_result) {
    if (auto r = sc::decode_job_result(body)) shown.result = std::move(r.value());
  } else if (auto e = sc::decode_job_error(body)) {
    shown.error = std::move(e.value());
  }
  return shown;
}

}  // namespace

void Broker::Loop::on_worker_message(const std::string& route,
                                     std::span<const std::string_view> parts,
                                     const zmq::message_t& first) {
  WorkerState* w = registry_.find(route);
  if (w != nullptr) w->last_seen = now_;
  auto env = sc::parse_envelope(parts, sc::Direction::kWorkerToBroker);
  if (!env) {
    if (protocol_log_.allow()) {
      spdlog::warn("invalid worker message from {}: {}", w ? w->worker_id : "an unregistered peer",
                   env.error().message());
    }
    if (w == nullptr) to_worker(route, sc::make_message(sc::Command::kDisconnect));
    return;
  }
  if (env->command == sc::Command::kReady) {
    on_ready(route, env->bodies[0], first);
    return;
  }
  if (w == nullptr) {
    // Not registered (e.g. this broker restarted): ask it to reconnect and send READY.
    if (env->command != sc::Command::kDisconnect) {
      to_worker(route, sc::make_message(sc::Command::kDisconnect));
    }
    return;
  }
  switch (env->command) {
    case sc::Command::kHeartbeat: {
      if (env->bodies.empty()) break;
      // Only the dashboard reads it: a bad one is dropped, the heartbeat still counts.
      auto status = sc::decode_worker_status(env->bodies[0]);
      if (status) {
        w->status = std::move(status.value());
      } else if (protocol_log_.allow()) {
        spdlog::warn("worker '{}': bad HEARTBEAT status: {}", w->worker_id,
                     status.error().message());
      }
      break;
    }
    case sc::Command::kCredit: {
      auto credit = sc::decode_credit(env->bodies[0]);
      if (credit) {
        registry_.grant(*w, credit->credits);
        store_->credits_freed();
      } else if (protocol_log_.allow()) {
        spdlog::warn("worker '{}': bad CREDIT: {}", w->worker_id, credit.error().message());
      }
      break;
    }
    case sc::Command::kResult:
    case sc::Command::kError:
      on_outcome(*w, env->command, env->bodies[0]);
      break;
    case sc::Command::kOutput:
      on_output(*w, env->bodies[0]);
      break;
    case sc::Command::kDrain:
      spdlog::info("worker '{}' drains; {} job(s) in flight", w->worker_id, w->jobs.size());
      registry_.drain(*w);
      to_worker(route, sc::make_message(sc::Command::kDrained));
      break;
    case sc::Command::kDisconnect:
      worker_gone(route, "disconnected");
      break;
    default:
      break;
  }
}

void Broker::Loop::on_ready(const std::string& route, std::string_view body,
                            const zmq::message_t& first) {
  auto ready = sc::decode_ready(body);
  if (!ready) {
    if (protocol_log_.allow()) spdlog::warn("bad READY: {}", ready.error().message());
    to_worker(route, sc::make_message(sc::Command::kDisconnect));
    return;
  }
  if (registry_.find(route) != nullptr) {
    if (protocol_log_.allow()) spdlog::warn("worker '{}' sent READY twice", ready->worker_id);
    return;
  }
  // Its images: "image:<name>" capabilities; none (a worker that predates images) is "default".
  auto images = sc::images_of(ready->capabilities);
  std::string names;
  for (const auto& i : images) names += (names.empty() ? "" : ", ") + i;
  const auto capacity = sc::capacity_of(ready->capabilities);
  spdlog::info("worker '{}' ready with {} slot(s), {} vCPU(s), {} MiB, images: {}",
               ready->worker_id, ready->slots,
               capacity.vcpus == 0 ? std::string("unsaid") : std::to_string(capacity.vcpus),
               capacity.mem_mib == 0 ? std::string("unsaid") : std::to_string(capacity.mem_mib),
               names.empty() ? "default (none said)" : names);
  WorkerState& w = registry_.add(route, ready->worker_id, ready->slots, now_, std::move(images));
  store_->credits_freed();
  w.ready_slots = ready->slots;
  w.connected_unix_ms = now_unix_ms();
  w.host = peer_address(first);
  w.capacity_vcpus = capacity.vcpus;
  w.capacity_mem_mib = capacity.mem_mib;
  constexpr std::string_view kBackend = "backend:";
  for (const auto& c : ready->capabilities) {
    if (c.rfind(kBackend, 0) == 0) w.backend = c.substr(kBackend.size());
  }
}

std::string Broker::Loop::key_of_answer(const WorkerState& w, std::string_view tenant,
                                        std::string_view job_id) const {
  // The job's key (tenancy.h): the tenant the worker echoed; a worker that echoes none (older
  // than tenants) answers one of its own jobs of that job_id, else the local tenant's.
  if (!tenant.empty()) return job_key(tenant, job_id);
  for (const auto& [key, footprint] : w.jobs) {
    if (key_job_id(key) == job_id) return key;
  }
  return job_key(options_.local_tenant, job_id);
}

void Broker::Loop::on_output(WorkerState& w, std::string_view body) {
  auto chunk = sc::decode_output(body);
  if (!chunk) {
    if (protocol_log_.allow()) {
      spdlog::warn("worker '{}': bad OUTPUT: {}", w.worker_id, chunk.error().message());
    }
    return;
  }
  const std::string key = key_of_answer(w, chunk->tenant, chunk->job_id);
  const Job* job = life_.jobs().find(key);
  // Only the current attempt's, from the worker running it, of a job that asked for it.
  if (job == nullptr || !job->request.stream || job->state != Job::State::kRunning ||
      job->worker != w.routing_id || job->attempt != chunk->attempt) {
    return;
  }
  const auto routes = job->routes.all();
  if (routes.empty()) return;
  // The submitter sees the chunk without the tenant (as it sees a RESULT's job_id: its own).
  chunk->tenant.clear();
  const auto parts = sc::make_message(sc::Command::kOutput, {sc::encode(*chunk)});
  for (const auto& route : routes) {
    if (transport_->output_to_client(route, parts)) {
      ++stats_.output_forwarded;
    } else {
      ++stats_.output_dropped;
    }
  }
}

void Broker::Loop::on_outcome(WorkerState& w, sc::Command command, std::string_view body) {
  // The body is checked as decode_job_result/decode_job_error would (same limits and types) and
  // forwarded as the worker wrote it; the broker reads only the job id and, of an ERROR, its
  // code, variant and retryable. Only the dashboard wants the decoded value.
  const bool is_result = command == sc::Command::kResult;
  auto view = is_result ? sc::view_job_result(body) : sc::view_job_error(body);
  if (!view) {
    if (protocol_log_.allow()) {
      spdlog::warn("worker '{}': bad {}: {}", w.worker_id, is_result ? "RESULT" : "ERROR",
                   view.error().message());
    }
    return;
  }
  const std::string job_id = key_of_answer(w, view->tenant, view->job_id);
  const uint32_t attempt = view->attempt;
  const bool retryable = view->retryable;
  const uint32_t code = view->code;
  const std::string_view variant = view->variant;
  const Shown shown = dashboard_ ? decode_for_dashboard(is_result, body) : Shown{};
  ++w.answered;
  // The jitter of a retry's backoff is drawn only for an outcome that may be retried.
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  auto o = life_.outcome(w.routing_id, job_id, attempt, retryable, retryable ? jitter(rng_) : 1.0);
  switch (o.kind) {
    case JobLife::Outcome::Kind::kRecovered:
      // Dispatched by the broker before a restart: its outcome is the job's answer. If it was
      // sent again meanwhile, that run is cancelled and its outcome will be dropped.
      if (!o.rerun.empty()) stop_on_worker(o.rerun, job_id, /*forget=*/true);
      break;
    case JobLife::Outcome::Kind::kNotHeld:
      // Shared queue: a job this broker forgot (a failed turn) or that another broker holds now.
      // Either way it no longer holds a place on this worker.
      registry_.release(w, job_id);
      if (store_->outcome_unheld(job_id, command, body)) return;
      stale_outcome(w, is_result, job_id, attempt, nullptr);
      return;
    case JobLife::Outcome::Kind::kStale:
      // Its place on this worker is kept only while the job runs there in another attempt.
      if (o.held->state != Job::State::kRunning || o.held->worker != w.routing_id) {
        registry_.release(w, job_id);
      }
      stale_outcome(w, is_result, job_id, attempt, o.held);
      return;
    case JobLife::Outcome::Kind::kRetry:
      registry_.release(w, job_id);
      if (protocol_log_.allow()) {
        spdlog::info("job '{}' failed retryably on '{}' (attempt {} of {}); again in {} ms", job_id,
                     w.worker_id, attempt, options_.max_attempts, o.delay.count());
      }
      if (dashboard_) {
        dashboard_->attempt_ended(*o.held, "retry",
                                  std::string(variant) + " (" + std::to_string(code) + ")");
      }
      timers_.set(TimerQueue::Key{TimerQueue::Kind::kRetry, job_id}, now_ + o.delay);
      ++stats_.retried;
      return;
    case JobLife::Outcome::Kind::kAnswer:
      registry_.release(w, job_id);
      break;
  }
  ++(command == sc::Command::kResult ? stats_.results : stats_.errors);
  if (command == sc::Command::kError) metrics_.failed(code, variant);
  // The body was checked above; forward it as the worker wrote it.
  answer(*o.job, command, std::string(body), shown.result_ptr(), shown.error_ptr());
}

void Broker::Loop::stale_outcome(const WorkerState& w, bool is_result, const std::string& job_id,
                                 uint32_t attempt, const Job* held) {
  // Stale: an attempt re-dispatched after this worker was presumed dead or held it too long, a
  // job answered or cancelled meanwhile, or never sent to it. Each job is answered once, by
  // its current attempt.
  ++stats_.stale_outcomes;
  if (!protocol_log_.allow()) return;
  std::string now_is = "not held";
  if (held != nullptr && held->state == Job::State::kRunning) {
    const WorkerState* on = registry_.find(held->worker);
    now_is = "attempt " + std::to_string(held->attempt) + " on '" +
             (on != nullptr ? on->worker_id : std::string("?")) + "'" +
             (held->worker == w.routing_id ? " (this connection)" : "");
  } else if (held != nullptr) {
    now_is = "attempt " + std::to_string(held->attempt) + ", not running";
  }
  spdlog::warn("worker '{}': stale {} for job '{}' attempt {} dropped (the job is {})", w.worker_id,
               is_result ? "RESULT" : "ERROR", job_id, attempt, now_is);
}

}  // namespace paddock::broker
