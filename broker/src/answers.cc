#include "answers.h"

#include "paddock/schemas/codec.h"
#include "tenancy.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

sc::JobError job_error(const std::string& job_id, sc::JobCode code, std::string message,
                       uint32_t attempt, bool retryable) {
  sc::JobError e;
  e.job_id = std::string(key_job_id(job_id));  // the submitter's own id, whoever's key it was
  e.code = sc::code(code);
  e.variant = std::string(sc::job_code_name(e.code));
  e.message = std::move(message);
  e.attempt = attempt;
  e.retryable = retryable;
  return e;
}

bool same_request(std::string_view body, const sc::JobRequest& decoded, std::string_view held) {
  if (body == held) return true;
  auto first = sc::decode_job_request(held);
  if (!first) return false;
  first->job_id = decoded.job_id;  // the key or the job_id: the same job_id either way
  return *first == decoded;
}

std::string conflict_message(std::string_view job_id) {
  return "job_id: '" + std::string(job_id) +
         "' already names a different request (a job_id names one request; submit this one "
         "under a new job_id)";
}

sc::JobError conflict_error(std::string_view job_id, size_t index) {
  auto e = job_error(std::string(job_id), sc::JobCode::kInvalidRequest, conflict_message(job_id));
  e.index = static_cast<uint32_t>(index);
  return e;
}

std::vector<std::string> error_message(const sc::JobError& e, sc::Command command) {
  return sc::make_message(command, {sc::encode(e)});
}

}  // namespace paddock::broker
