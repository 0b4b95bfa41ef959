// What the broker needs of a worker's RESULT or ERROR body, read in place. The broker forwards
// such a body to its submitter as the worker wrote it, so it needs only the job it answers (and,
// the attempt it answers, and for an ERROR, whether to retry it and its code and variant for the
// metrics), not a decoded copy.
//
// view_job_result and view_job_error accept exactly the bodies decode_job_result and
// decode_job_error accept — the same msgpack limits, types, ranges, required fields and
// duplicate-key refusals, down to the nested maps (timings, usage, files) — and refuse the rest
// with a DecodeError naming the field. They build no object tree and allocate nothing unless the
// body is refused. tests/unit/outcome_view_test.cc and tests/fuzz/fuzz_outcome_view.cc check the
// two pairs against each other.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "paddock/schemas/codec.h"

namespace paddock::schemas {

// Views into the body passed in: valid while it is.
struct OutcomeView {
  std::string_view job_id;  // a RESULT's is required; an ERROR's may be empty
  std::string_view tenant;  // the tenant the worker echoed ("" if none)
  // The attempt it answers, as the decoders read it: a RESULT without one is of attempt 1, an
  // ERROR without one of none (0). The broker matches it against the job's current attempt.
  uint32_t attempt = 0;
  // ERROR only; a RESULT's view leaves them as they are here.
  uint32_t code = 0;
  std::string_view variant;
  bool retryable = false;
};

Decoded<OutcomeView> view_job_result(std::string_view bytes);
Decoded<OutcomeView> view_job_error(std::string_view bytes);

}  // namespace paddock::schemas
