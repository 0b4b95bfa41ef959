#include "answers.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

sc::JobError job_error(const std::string& job_id, sc::JobCode code, std::string message,
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

std::vector<std::string> error_message(const sc::JobError& e, sc::Command command) {
  return sc::make_message(command, {sc::encode(e)});
}

}  // namespace paddock::broker
