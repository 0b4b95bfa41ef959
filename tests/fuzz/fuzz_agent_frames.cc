// libFuzzer target: bytes arriving on a guest agent channel (runtime/src/agent/protocol.h), cut
// into frames by FrameReader (fed in two pieces, split where the first byte says, so partial
// frames are exercised) and decoded as the guest does (decode_request) and as the host does
// (decode_reply). The whole input is also decoded as one body, so that the decoders are reached
// without a valid length prefix. A decoded value must encode and decode to an equal value; a
// failure must name a field and a reason.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/protocol.h"

namespace agent = paddock::runtime::agent;

namespace {

template <class T>
void check_error(const agent::Decoded<T>& d) {
  if (!d && (d.error().field.empty() || d.error().reason.empty())) __builtin_trap();
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
