#include "outcome.h"

#include "exit_codes.h"
#include "paddock/schemas/codes.h"

namespace paddock::cli {

std::string variant_of(const schemas::JobError& e) {
  if (!e.variant.empty()) return e.variant;
  if (e.code >= schemas::kFirstRuntimeCode && e.code < schemas::kFirstJobCode) {
    return std::string(schemas::runtime_variant_name(e.code));
  }
  return std::string(schemas::job_code_name(e.code));
}

std::string describe_error(const schemas::JobError& e) {
  return variant_of(e) + " (code " + std::to_string(e.code) + "): " + e.message;
}

std::string describe_result(const schemas::JobResult& r) {
  if (r.timed_out) return "timed out";
  if (r.oom_killed) return "killed for memory (guest OOM)";
  if (r.signal != 0) return "signal " + std::to_string(r.signal);
  return "exit " + std::to_string(r.exit_code);
}

int exit_status_of(const schemas::JobResult& r) {
  if (r.timed_out) return exit_code::kTimedOut;
  if (r.signal > 0 && r.signal < 128) return exit_code::kSignalBase + r.signal;
  if (r.exit_code < 0 || r.exit_code > 255) return 255;
  return r.exit_code;
}

}  // namespace paddock::cli
