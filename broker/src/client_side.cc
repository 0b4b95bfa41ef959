// The broker's handlers for submitter messages (PROTOCOL.md, "Client session").
#include <spdlog/spdlog.h>

#include <optional>

#include "answers.h"
#include "loop.h"
#include "paddock/schemas/codes.h"
#include "paddock/wire/zmq_frames.h"
#include "tenancy.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

void Broker::Loop::on_client_message(const std::string& route, std::string_view tenant,
                                     std::span<const std::string_view> parts) {
  auto env = sc::parse_envelope(parts, sc::Direction::kClientToBroker);
  if (!env) {
    reply_invalid(route, "", env.error().message());
    return;
  }
  switch (env->command) {
    case sc::Command::kSubmit:
      on_submit(route, tenant, env->bodies);
      break;
    case sc::Command::kCancel:
      on_cancel(route, tenant, env->bodies[0]);
      break;
    case sc::Command::kFetch:
      on_fetch(route, tenant, env->bodies);
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
  auto e = job_error(job_id, sc::JobCode::kInvalidRequest, message);
  e.index = index;
  return error_message(e);
}

void Broker::Loop::reply_invalid(const std::string& route, std::string job_id,
                                 const std::string& message, std::optional<uint32_t> index) {
  to_client(route, invalid_reply(std::move(job_id), message, index));
}

void Broker::Loop::on_submit(const std::string& route, std::string_view tenant,
                             const std::vector<std::string_view>& bodies) {
  // One reply per body, sent in body order once all are read (PROTOCOL.md, "Client session"):
  // a run of consecutive accepted bodies shares one ACCEPTED.
  std::vector<JobStore::SubmitReply> replies(bodies.size());
  std::vector<Store::Answer> known_answers;  // of finished jobs submitted again
  std::vector<JobStore::NewJob> new_jobs;    // not held here: the store's to take
  size_t admitted = 0;                       // of them, for the tenant's max_queued
  for (size_t i = 0; i < bodies.size(); ++i) {
    const auto body = bodies[i];
    auto request = sc::decode_job_request(body);
    if (!request) {
      replies[i].message =
          invalid_reply(sc::peek_job_id(body), request.error().message(), static_cast<uint32_t>(i));
      continue;
    }
    std::string job_id = std::move(request->job_id);
    request->job_id = job_key(tenant, job_id);  // the broker's name for it from here on
    if (Job* known = life_.jobs().find(request->job_id)) {
      // A job_id names one request: the same one again is idempotent (not queued twice; this
      // connection, the latest to submit it, gets its answer instead of the one before), another
      // one under it is refused.
      if (!same_request(body, *request, known->request.encoded)) {
        replies[i].message =
            invalid_reply(job_id, conflict_message(job_id), static_cast<uint32_t>(i));
        continue;
      }
      known->routes.submitted(route);
      replies[i].accepted = std::move(job_id);
      continue;
    }
    // Not held here: within its tenant's limits (tenant_policy.h), or refused.
    if (auto refused = admit(tenant, *request, static_cast<uint32_t>(i), admitted)) {
      replies[i].message = std::move(*refused);
      continue;
    }
    ++admitted;
    new_jobs.push_back(JobStore::NewJob{std::move(request.value()), body, i});
  }
  if (!new_jobs.empty()) store_->submit(route, new_jobs, replies, known_answers);
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

void Broker::Loop::on_cancel(const std::string& route, std::string_view tenant,
                             std::string_view body) {
  auto ref = sc::decode_job_ref(body);
  if (!ref) {
    reply_invalid(route, sc::peek_job_id(body), ref.error().message(), 0);
    return;
  }
  const std::string key = job_key(tenant, ref->job_id);  // a "tenant" the submitter gave: ignored
  std::optional<Job> ended;
  switch (life_.cancel(key, route, ended)) {
    case JobLife::Cancel::kUnknown:
      store_->cancel_unheld(route, key);
      break;
    case JobLife::Cancel::kEnded:
      answer_error(*ended, sc::JobCode::kCancelled, "cancelled before it started", false);
      break;
    case JobLife::Cancel::kAskWorker:
      store_->cancel_requested(key);
      to_worker(life_.jobs().find(key)->worker,
                sc::make_message(sc::Command::kCancel, {sc::encode(worker_ref(key))}));
      break;
    case JobLife::Cancel::kAsked:
      break;
  }
}

void Broker::Loop::on_fetch(const std::string& route, std::string_view tenant,
                            const std::vector<std::string_view>& bodies) {
  for (size_t i = 0; i < bodies.size(); ++i) {
    auto ref = sc::decode_job_ref(bodies[i]);
    if (!ref) {
      reply_invalid(route, sc::peek_job_id(bodies[i]), ref.error().message(),
                    static_cast<uint32_t>(i));
      continue;
    }
    const std::string key = job_key(tenant, ref->job_id);
    if (Job* job = life_.jobs().find(key)) {
      job->routes.watch(route);  // still queued or running: the answer will come here too
      continue;
    }
    store_->fetch_unheld(route, key);
  }
}

}  // namespace paddock::broker
