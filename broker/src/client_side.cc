// The broker's handlers for submitter messages (PROTOCOL.md, "Client session").
#include <spdlog/spdlog.h>

#include <optional>

#include "loop.h"
#include "paddock/schemas/codes.h"
#include "paddock/wire/zmq_frames.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

void Broker::Loop::on_client_message(const std::string& route,
                                     std::span<const std::string_view> parts) {
  auto env = sc::parse_envelope(parts, sc::Direction::kClientToBroker);
  if (!env) {
    reply_invalid(route, "", env.error().message());
    return;
  }
  switch (env->command) {
    case sc::Command::kSubmit:
      on_submit(route, env->bodies);
      break;
    case sc::Command::kCancel:
      on_cancel(route, env->bodies[0]);
      break;
    case sc::Command::kFetch:
      on_fetch(route, env->bodies);
      break;
    case sc::Command::kPing: {
      std::vector<std::string> echo;
      if (!env->bodies.empty()) {
        // Echoed only if it is a body by the protocol's rules (a map, string keys, UTF-8).
        if (auto bad = sc::check_any_map(env->bodies[0])) {
          reply_invalid(route, "", bad->message());
          break;
        }
        echo.emplace_back(env->bodies[0]);
      }
      to_client(route, sc::make_message(sc::Command::kPong, std::move(echo)));
      break;
    }
    default:
      break;  // parse_envelope admits client commands only
  }
}

std::vector<std::string> Broker::Loop::invalid_reply(std::string job_id, const std::string& message,
                                                     std::optional<uint32_t> index) {
  ++stats_.invalid;
  if (protocol_log_.allow()) {
    spdlog::warn("invalid client message{}{}: {}", index ? " body " + std::to_string(*index) : "",
                 job_id.empty() ? "" : " for job '" + job_id + "'", message);
  }
  sc::JobError e;
  e.job_id = std::move(job_id);
  e.code = sc::code(sc::JobCode::kInvalidRequest);
  e.variant = std::string(sc::job_code_name(e.code));
  e.message = message;
  e.index = index;
  return sc::make_message(sc::Command::kError, {sc::encode(e)});
}

void Broker::Loop::reply_invalid(const std::string& route, std::string job_id,
                                 const std::string& message, std::optional<uint32_t> index) {
  to_client(route, invalid_reply(std::move(job_id), message, index));
}

void Broker::Loop::on_submit(const std::string& route,
                             const std::vector<std::string_view>& bodies) {
  // One reply per body, sent in body order once all are read (PROTOCOL.md, "Client session"):
  // a run of consecutive accepted bodies shares one ACCEPTED.
  std::vector<SubmitReply> replies(bodies.size());
  std::vector<Store::Answer> known_answers;  // of finished jobs submitted again
  std::vector<SharedSubmit> to_share;        // shared queue: stored together below
  for (size_t i = 0; i < bodies.size(); ++i) {
    const auto body = bodies[i];
    auto request = sc::decode_job_request(body);
    if (!request) {
      replies[i].message =
          invalid_reply(sc::peek_job_id(body), request.error().message(), static_cast<uint32_t>(i));
      continue;
    }
    if (Job* known = jobs_.find(request->job_id)) {
      // Idempotent: a job_id already held is not queued twice; this connection, the latest to
      // submit it, gets its answer instead of the one before.
      known->routes.submitted(route);
      replies[i].accepted = request->job_id;
      continue;
    }
    if (shared_) {
      to_share.push_back(SharedSubmit{std::move(request.value()), body, i});
      continue;
    }
    if (journal_) {
      // Finished before (this broker or an earlier one): its stored answer, never a second run.
      if (auto known_answer = journal_->answer_of(request->job_id)) {
        replies[i].accepted = request->job_id;
        known_answers.push_back(std::move(*known_answer));
        continue;
      }
    }
    if (jobs_.size() >= options_.max_queue) {
      ++stats_.rejected;
      sc::JobError e;
      e.job_id = request->job_id;
      e.code = sc::code(sc::JobCode::kQueueFull);
      e.variant = std::string(sc::job_code_name(e.code));
      e.message = "queue full (" + std::to_string(options_.max_queue) + " jobs); retry later";
      e.retryable = true;
      replies[i].message = sc::make_message(sc::Command::kRejected, {sc::encode(e)});
      continue;
    }
    replies[i].accepted = request->job_id;
    const int64_t row = embedded_ ? embedded_->accepted(request->job_id, body, now_unix_ms()) : 0;
    jobs_.push(QueuedRequest::of(*request, std::string(body)), route, now_).journal_row = row;
    ++stats_.accepted;
  }
  if (!to_share.empty()) submit_shared(route, to_share, replies, known_answers);
  sc::Accepted run;  // consecutive accepted bodies
  auto flush_run = [&] {
    if (run.job_ids.empty()) return;
    to_client(route, sc::make_message(sc::Command::kAccepted, {sc::encode(run)}));
    run.job_ids.clear();
  };
  for (auto& reply : replies) {
    if (!reply.accepted.empty()) {
      run.job_ids.push_back(std::move(reply.accepted));
      continue;
    }
    flush_run();
    // Neither: a shared-queue turn that fails at its commit answers it REJECTED then.
    if (!reply.message.empty()) to_client(route, std::move(reply.message));
  }
  flush_run();
  for (auto& a : known_answers) {
    to_client(route, sc::make_message(static_cast<sc::Command>(a.command), {std::move(a.body)}));
  }
}

void Broker::Loop::on_cancel(const std::string& route, std::string_view body) {
  auto ref = sc::decode_job_ref(body);
  if (!ref) {
    reply_invalid(route, sc::peek_job_id(body), ref.error().message(), 0);
    return;
  }
  Job* job = jobs_.find(ref->job_id);
  if (job == nullptr && shared_) {
    cancel_shared(route, ref->job_id);
    return;
  }
  if (job == nullptr) {
    sc::JobError e;
    e.job_id = ref->job_id;
    e.code = sc::code(sc::JobCode::kUnknownJob);
    e.variant = std::string(sc::job_code_name(e.code));
    e.message = "job '" + ref->job_id + "' is not held by this broker (unknown or finished)";
    to_client(route, sc::make_message(sc::Command::kError, {sc::encode(e)}));
    return;
  }
  job->routes.watch(route);  // the canceller hears the outcome too
  if (job->state != Job::State::kRunning) {
    answer_error(*job, sc::JobCode::kCancelled, "cancelled before it started", false);
    jobs_.remove(ref->job_id);
    return;
  }
  if (!job->cancel_requested) {
    job->cancel_requested = true;
    if (journal_) journal_->cancel_requested(ref->job_id);
    to_worker(job->worker, sc::make_message(sc::Command::kCancel, {sc::encode(*ref)}));
  }
}

void Broker::Loop::on_fetch(const std::string& route, const std::vector<std::string_view>& bodies) {
  for (size_t i = 0; i < bodies.size(); ++i) {
    auto ref = sc::decode_job_ref(bodies[i]);
    if (!ref) {
      reply_invalid(route, sc::peek_job_id(bodies[i]), ref.error().message(),
                    static_cast<uint32_t>(i));
      continue;
    }
    if (Job* job = jobs_.find(ref->job_id)) {
      job->routes.watch(route);  // still queued or running: the answer will come here too
      continue;
    }
    if (shared_) {
      fetch_shared(route, ref->job_id);
      continue;
    }
    if (journal_) {
      if (auto a = journal_->answer_of(ref->job_id)) {
        to_client(route,
                  sc::make_message(static_cast<sc::Command>(a->command), {std::move(a->body)}));
        continue;
      }
    }
    sc::JobError e;
    e.job_id = ref->job_id;
    e.code = sc::code(sc::JobCode::kUnknownJob);
    e.variant = std::string(sc::job_code_name(e.code));
    e.message = "job '" + ref->job_id + "' is not known to this broker" +
                (journal_ ? " (never accepted, or its answer expired)"
                          : " (it runs without a journal and keeps no answers after delivery)");
    to_client(route, sc::make_message(sc::Command::kError, {sc::encode(e)}));
  }
}

}  // namespace paddock::broker
