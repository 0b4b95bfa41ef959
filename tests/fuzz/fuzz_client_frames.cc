// libFuzzer target: a client -> broker message, handled as the broker does (parse_envelope,
// then the decoder of each body of the command; peek_job_id for a request that failed; the PING
// body check). A decoded body encodes again to an equal value: its text is valid UTF-8 (encoders
// repair what is not, so a decoder that let invalid UTF-8 through would fail the round trip).
#include <cstddef>
#include <cstdint>

#include "frames.h"
#include "paddock/schemas/frames.h"

namespace sc = paddock::schemas;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto frames = paddock::fuzz::split_frames(data, size);
  auto env = sc::parse_envelope(frames, sc::Direction::kClientToBroker);
  paddock::fuzz::check_error(env);
  if (!env) return 0;
  for (std::string_view body : env->bodies) {
    switch (env->command) {
      case sc::Command::kSubmit: {
        auto r = sc::decode_job_request(body);
        paddock::fuzz::check_error(r);
        if (r) {
          if (sc::validate(r.value())) __builtin_trap();  // decoded implies valid
          if (sc::peek_job_id(body) != r->job_id) __builtin_trap();
        } else {
          (void)sc::peek_job_id(body);
        }
        paddock::fuzz::check_round_trip(r, sc::decode_job_request);
        break;
      }
      case sc::Command::kCancel:
      case sc::Command::kFetch: {
        auto r = sc::decode_job_ref(body);
        paddock::fuzz::check_error(r);
        paddock::fuzz::check_round_trip(r, sc::decode_job_ref);
        break;
      }
      case sc::Command::kPing: {
        // Echoed as is if it passes: then it is a map any strict decoder reads.
        if (auto err = sc::check_any_map(body)) {
          if (err->field.empty() || err->reason.empty()) __builtin_trap();
        }
        break;
      }
      default:
        __builtin_trap();  // parse_envelope let through a command not for clients
    }
  }
  return 0;
}
