// ZeroMQ message layout, independent of any socket library:
//
//   [routing id, added/removed by ROUTER] "PDK1" <command: 1 byte> <msgpack body>*
//
// The tag names the protocol and its version; a peer speaking another version is refused.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/schemas/codec.h"

namespace paddock::schemas {

inline constexpr std::string_view kProtocolTag = "PDK1";
inline constexpr uint32_t kProtocolVersion = 1;

enum class Command : uint8_t {
  // client -> broker
  kSubmit = 0x01,
  kCancel = 0x02,  // also broker -> worker
  kFetch = 0x03,
  kPing = 0x04,
  // broker -> client
  kAccepted = 0x05,
  kRejected = 0x06,
  kResult = 0x07,  // also worker -> broker
  kError = 0x08,   // also worker -> broker
  kPong = 0x09,
  // worker <-> broker
  kReady = 0x0A,
  kCredit = 0x0B,
  kHeartbeat = 0x0C,   // both ways
  kDisconnect = 0x0D,  // both ways
  kJob = 0x0E,
  kDrain = 0x0F,    // worker -> broker: send me nothing more
  kDrained = 0x10,  // broker -> worker: nothing more will be sent
  kOutput = 0x11,   // worker -> broker -> client: live output of a streaming job
};

// Which peer sent a message; decides the commands that are legal.
enum class Direction { kClientToBroker, kBrokerToClient, kWorkerToBroker, kBrokerToWorker };

std::string_view command_name(Command c);

struct Envelope {
  Command command;
  std::vector<std::string_view> bodies;  // views into the parts passed to parse_envelope
};

// Checks tag, command (legal for the direction) and body count. Views stay valid while `parts`
// does. `parts` excludes the ROUTER routing id.
Decoded<Envelope> parse_envelope(std::span<const std::string_view> parts, Direction direction);

// Frames of a message: tag, command byte, bodies.
std::vector<std::string> make_message(Command c, std::vector<std::string> bodies = {});

}  // namespace paddock::schemas
