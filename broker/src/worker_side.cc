// The broker's handlers for worker messages (PROTOCOL.md, "Worker session").
#include <spdlog/spdlog.h>

#include <optional>

#include "loop.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/outcome_view.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

namespace {

// The address of the peer a message came from, as ZeroMQ tells it ("" if it does not, e.g. over
// inproc).
std::string peer_address(const zmq::message_t& frame) {
  const char* value = zmq_msg_gets(frame.handle(), "Peer-Address");
  return value != nullptr ? value : "";
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
        claim_wanted_ = true;  // shared queue: free slots are worth a claim
      } else if (protocol_log_.allow()) {
        spdlog::warn("worker '{}': bad CREDIT: {}", w->worker_id, credit.error().message());
      }
      break;
    }
    case sc::Command::kResult:
    case sc::Command::kError:
      on_outcome(*w, env->command, env->bodies[0]);
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
  spdlog::info("worker '{}' ready with {} slot(s), images: {}", ready->worker_id, ready->slots,
               names.empty() ? "default (none said)" : names);
  WorkerState& w = registry_.add(route, ready->worker_id, ready->slots, now_, std::move(images));
  claim_wanted_ = true;
  w.ready_slots = ready->slots;
  w.connected_unix_ms = now_unix_ms();
  w.host = peer_address(first);
  constexpr std::string_view kBackend = "backend:";
  for (const auto& c : ready->capabilities) {
    if (c.rfind(kBackend, 0) == 0) w.backend = c.substr(kBackend.size());
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
  const std::string job_id(view->job_id);
  const uint32_t attempt = view->attempt;
  const bool retryable = view->retryable;
  const uint32_t code = view->code;
  const std::string_view variant = view->variant;
  std::optional<sc::JobResult> result;
  std::optional<sc::JobError> error;
  if (dashboard_) {
    // Accepted by the view, so these decode too.
    if (is_result) {
      if (auto r = sc::decode_job_result(body)) result = std::move(r.value());
    } else if (auto e = sc::decode_job_error(body)) {
      error = std::move(e.value());
    }
  }
  ++w.answered;
  const sc::JobResult* result_ptr = result ? &*result : nullptr;
  const sc::JobError* error_ptr = error ? &*error : nullptr;
  Job* held = jobs_.find(job_id);
  // An outcome answers the job only if it is of the current assignment: the job, on this worker's
  // connection, at the attempt sent to it (PROTOCOL.md, "Worker session").
  const bool current = held != nullptr && held->state == Job::State::kRunning &&
                       held->worker == w.routing_id && held->attempt == attempt;
  if (!current) {
    if (held != nullptr && held->recovered_attempt != 0 && attempt == held->recovered_attempt) {
      // Dispatched by the broker before a restart: its outcome is the job's answer. If it was
      // sent again meanwhile, that run is cancelled and its outcome will be dropped.
      if (held->state == Job::State::kRunning) {
        if (WorkerState* other = registry_.find(held->worker)) {
          other->jobs.erase(job_id);
          to_worker(held->worker,
                    sc::make_message(sc::Command::kCancel, {sc::encode(sc::JobRef{job_id})}));
        }
      }
      auto job = jobs_.remove(job_id);
      ++(command == sc::Command::kResult ? stats_.results : stats_.errors);
      if (command == sc::Command::kError) metrics_.failed(code, variant);
      answer(*job, command, std::string(body), result_ptr, error_ptr);
      return;
    }
    if (shared_ && held == nullptr) {
      // Shared queue: a job this broker forgot (a failed turn) or that another broker holds now.
      // The store keeps the first answer; a broker running it again drops its run on the NOTIFY.
      journal_->finished(job_id, static_cast<uint8_t>(command), body, now_unix_ms());
      return;
    }
    // Stale: an attempt re-dispatched after this worker was presumed dead or held it too long, a
    // job answered or cancelled meanwhile, or never sent to it. Each job is answered once, by
    // its current attempt.
    ++stats_.stale_outcomes;
    if (protocol_log_.allow()) {
      std::string now_is = "not held";
      if (held != nullptr && held->state == Job::State::kRunning) {
        const WorkerState* on = registry_.find(held->worker);
        now_is = "attempt " + std::to_string(held->attempt) + " on '" +
                 (on != nullptr ? on->worker_id : std::string("?")) + "'" +
                 (held->worker == w.routing_id ? " (this connection)" : "");
      } else if (held != nullptr) {
        now_is = "attempt " + std::to_string(held->attempt) + ", not running";
      }
      spdlog::warn("worker '{}': stale {} for job '{}' attempt {} dropped (the job is {})",
                   w.worker_id, is_result ? "RESULT" : "ERROR", job_id, attempt, now_is);
    }
    return;
  }
  w.jobs.erase(job_id);
  if (retryable && !held->cancel_requested && held->attempt < options_.max_attempts) {
    // A host-side fault on that worker: worth another try, after a backoff with jitter.
    const uint64_t exp = std::min<uint64_t>(
        uint64_t{options_.retry_base_ms} << std::min<uint32_t>(held->attempt - 1, 20),
        options_.retry_cap_ms);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    const auto delay = std::chrono::milliseconds(static_cast<uint64_t>(exp * jitter(rng_)));
    if (protocol_log_.allow()) {
      spdlog::info("job '{}' failed retryably on '{}' (attempt {} of {}); again in {} ms", job_id,
                   w.worker_id, held->attempt, options_.max_attempts, delay.count());
    }
    if (dashboard_) {
      dashboard_->attempt_ended(*held, "retry",
                                std::string(variant) + " (" + std::to_string(code) + ")");
    }
    ++held->attempt;
    held->state = Job::State::kWaiting;
    held->worker.clear();
    retry_at_.emplace(now_ + delay, job_id);
    ++stats_.retried;
    return;
  }
  auto job = jobs_.remove(job_id);
  ++(command == sc::Command::kResult ? stats_.results : stats_.errors);
  if (command == sc::Command::kError) metrics_.failed(code, variant);
  // The body was decoded and checked above; forward it as the worker wrote it.
  answer(*job, command, std::string(body), result_ptr, error_ptr);
}

}  // namespace paddock::broker
