// The result convention of Paddock's decoders (the wire codec, codec.h, and the guest agent
// protocol, paddock/agent/protocol.h): a decoded value, or a DecodeError naming the offending
// field. Decoders never throw.
#pragma once

#include <cstdint>
#include <string>

#include "paddock/base/expected.h"

namespace paddock::schemas {

struct DecodeError {
  std::string field;   // dotted path of the offending field ("argv[3]", "egress[0].cidr"), or
                       // "body"/"frame"/"tag"/"command"
  std::string reason;  // what is wrong with it ("expected string, got integer")
  // The message's id, for a protocol whose messages carry one (the guest agent's), when it could
  // be read before the failure, so that the error can be answered; else 0.
  uint64_t id = 0;
  std::string message() const { return field + ": " + reason; }
};

// A decoded value or the reason it could not be decoded (paddock/base/expected.h).
template <class T>
using Decoded = base::Expected<T, DecodeError>;

}  // namespace paddock::schemas
