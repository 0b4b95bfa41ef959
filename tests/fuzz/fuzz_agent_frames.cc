// libFuzzer target: bytes arriving on a guest agent channel
// (agent/include/paddock/agent/protocol.h), cut into frames by FrameReader (fed in two pieces,
// split where the first byte says, so partial frames are exercised) and decoded as the guest does
// (decode_request) and as the host does (decode_reply). The whole input is also decoded as one
// body, so that the decoders are reached without a valid length prefix. A decoded value must encode
// and decode to an equal value; a failure must name a field and a reason. A decoded result then
// goes through the host's check_result (agent/result_check.h) against a request whose caps come
// from the input: what it accepts keeps the caps and names only files that were asked for, once
// each.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/result_check.h"
#include "paddock/agent/protocol.h"

namespace agent = paddock::runtime::agent;

namespace {

template <class T>
void check_error(const agent::Decoded<T>& d) {
  if (!d && (d.error().field.empty() || d.error().reason.empty())) __builtin_trap();
}

// The host's view of a result: `cap` is the request's output_cap and files_out_cap.
void check_result(agent::ExecOutcome outcome, uint32_t cap) {
  agent::ExecCommand asked;
  asked.files_out = {"out.txt", "a/b"};
  asked.output_cap = cap;
  asked.files_out_cap = cap;
  const agent::ExecOutcome before = outcome;
  const std::string bad = agent::check_result(asked, outcome);
  if (!bad.empty()) return;
  if (outcome.stdout_data.size() > cap || outcome.stderr_data.size() > cap) __builtin_trap();
  if (outcome.stdout_truncated !=
      (before.stdout_truncated || outcome.stdout_data.size() < before.stdout_data.size())) {
    __builtin_trap();
  }
  size_t total = outcome.stdout_data.size() + outcome.stderr_data.size();
  if (outcome.files.size() > asked.files_out.size()) __builtin_trap();
  for (size_t i = 0; i < outcome.files.size(); ++i) {
    const auto& f = outcome.files[i];
    if (f.path != asked.files_out[0] && f.path != asked.files_out[1]) __builtin_trap();
    if (f.data.size() > cap || (f.data.size() < before.files[i].data.size() && !f.truncated)) {
      __builtin_trap();
    }
    total += f.data.size();
  }
  if (total > agent::host_limits::kMaxResultData) __builtin_trap();
  if (outcome.signal < 0 || outcome.signal > agent::host_limits::kMaxSignal) __builtin_trap();
}

void decode_both(std::string_view body) {
  auto request = agent::decode_request(body);
  check_error(request);
  if (request) {
    auto again = agent::decode_request(agent::encode_request(request.value()));
    if (!again || !(again.value() == request.value())) __builtin_trap();
  }
  auto reply = agent::decode_reply(body);
  check_error(reply);
  if (reply && reply.value().kind == agent::ReplyKind::kResult) {
    check_result(reply.value().result, static_cast<uint32_t>(body.size() % 64));
  }
  if (reply) {
    auto again = agent::decode_reply(agent::encode_reply(reply.value()));
    if (!again || !(again.value() == reply.value())) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  decode_both(input);
  if (size == 0) return 0;
  const size_t split = static_cast<size_t>(data[0]) % size;
  agent::FrameReader reader;
  const auto drain = [&] {
    while (auto frame = reader.next()) {
      check_error(*frame);
      if (*frame) {
        if (frame->value().empty() || frame->value().size() > agent::limits::kMaxFrameBytes) {
          __builtin_trap();
        }
        decode_both(frame->value());
      }
    }
  };
  reader.feed(input.substr(0, split));
  drain();
  reader.feed(input.substr(split));
  drain();
  return 0;
}
