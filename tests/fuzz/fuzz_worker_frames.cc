// libFuzzer target: a worker -> broker message, handled as the broker does (parse_envelope,
// then decode_ready / decode_credit / decode_job_result / decode_job_error / decode_worker_status /
// decode_output,
// and view_job_result / view_job_error, which the broker runs instead of the two decoders).
#include <cstddef>
#include <cstdint>

#include "frames.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/outcome_view.h"

namespace sc = paddock::schemas;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto frames = paddock::fuzz::split_frames(data, size);
  auto env = sc::parse_envelope(frames, sc::Direction::kWorkerToBroker);
  paddock::fuzz::check_error(env);
  if (!env) return 0;
  switch (env->command) {
    case sc::Command::kReady: {
      auto r = sc::decode_ready(env->bodies.at(0));
      paddock::fuzz::check_error(r);
      paddock::fuzz::check_round_trip(r, sc::decode_ready);
      break;
    }
    case sc::Command::kCredit: {
      auto r = sc::decode_credit(env->bodies.at(0));
      paddock::fuzz::check_error(r);
      paddock::fuzz::check_round_trip(r, sc::decode_credit);
      break;
    }
    case sc::Command::kResult: {
      auto r = sc::decode_job_result(env->bodies.at(0));
      paddock::fuzz::check_error(r);
      paddock::fuzz::check_round_trip(r, sc::decode_job_result);
      // What the broker runs: the view accepts what the decoder does (fuzz_outcome_view).
      auto v = sc::view_job_result(env->bodies.at(0));
      if (static_cast<bool>(v) != static_cast<bool>(r)) __builtin_trap();
      break;
    }
    case sc::Command::kError: {
      auto r = sc::decode_job_error(env->bodies.at(0));
      paddock::fuzz::check_error(r);
      paddock::fuzz::check_round_trip(r, sc::decode_job_error);
      auto v = sc::view_job_error(env->bodies.at(0));
      if (static_cast<bool>(v) != static_cast<bool>(r)) __builtin_trap();
      break;
    }
    case sc::Command::kHeartbeat: {
      if (env->bodies.size() > 1) __builtin_trap();
      if (env->bodies.empty()) break;
      auto r = sc::decode_worker_status(env->bodies.at(0));
      paddock::fuzz::check_error(r);
      paddock::fuzz::check_round_trip(r, sc::decode_worker_status);
      break;
    }
    case sc::Command::kOutput: {
      auto r = sc::decode_output(env->bodies.at(0));
      paddock::fuzz::check_error(r);
      paddock::fuzz::check_round_trip(r, sc::decode_output);
      // What the broker forwards (tenant removed) decodes as the submitter's client does.
      if (r) {
        auto forwarded = r.value();
        forwarded.tenant.clear();
        if (!sc::decode_output(sc::encode(forwarded))) __builtin_trap();
      }
      break;
    }
    case sc::Command::kDisconnect:
    case sc::Command::kDrain:
      if (!env->bodies.empty()) __builtin_trap();
      break;
    default:
      __builtin_trap();  // parse_envelope let through a command not for workers
  }
  return 0;
}
