// libFuzzer target: a RESULT or ERROR body as the broker checks it in place (view_job_result,
// view_job_error), each against the decoder it stands in for. Both must accept exactly the same
// bodies and read the same job_id (and code, variant, retryable): a view that accepted more would
// let the broker forward a body the decoders' limits refuse.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "frames.h"
#include "paddock/schemas/outcome_view.h"

namespace sc = paddock::schemas;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const auto result_view = sc::view_job_result(body);
  const auto result = sc::decode_job_result(body);
  paddock::fuzz::check_error(result_view);
  if (static_cast<bool>(result_view) != static_cast<bool>(result)) __builtin_trap();
  if (result && result_view->job_id != result->job_id) __builtin_trap();

  const auto error_view = sc::view_job_error(body);
  const auto error = sc::decode_job_error(body);
  paddock::fuzz::check_error(error_view);
  if (static_cast<bool>(error_view) != static_cast<bool>(error)) __builtin_trap();
  if (error &&
      (error_view->job_id != error->job_id || error_view->code != error->code ||
       error_view->variant != error->variant || error_view->retryable != error->retryable)) {
    __builtin_trap();
  }
  return 0;
}
