// libFuzzer target: a JOB body as a worker decodes it (decode_job_dispatch), with the
// round-trip property, plus the broker -> worker envelope when the input looks framed, and
// peek_dispatch (what a worker reads of a JOB it cannot decode) against the decoder.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "frames.h"
#include "paddock/schemas/frames.h"

namespace sc = paddock::schemas;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto d = sc::decode_job_dispatch(body);
  paddock::fuzz::check_error(d);
  if (d) {
    if (d->attempt < 1) __builtin_trap();
    if (sc::validate(d->request)) __builtin_trap();
  }
  paddock::fuzz::check_round_trip(d, sc::decode_job_dispatch);
  // The worker's last resort for a JOB it cannot decode: what it reads must be what a decoder
  // reads, when both read something.
  const auto ref = sc::peek_dispatch(body);
  if (ref && d && (ref->job_id != d->request.job_id || ref->attempt != d->attempt)) {
    __builtin_trap();
  }

  // The whole message as the worker receives it: tag, command, body.
  const auto frames = sc::make_message(sc::Command::kJob, {std::string(body)});
  std::vector<std::string_view> views(frames.begin(), frames.end());
  auto env = sc::parse_envelope(views, sc::Direction::kBrokerToWorker);
  if (!env || env->command != sc::Command::kJob || env->bodies.size() != 1) __builtin_trap();
  return 0;
}
