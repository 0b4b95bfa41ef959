#include "paddock/schemas/frames.h"

#include "paddock/schemas/codes.h"
#include "paddock/schemas/limits.h"

namespace paddock::schemas {
namespace {

struct Rule {
  Command command;
  size_t min_bodies;
  size_t max_bodies;
};

// Legal commands per direction and their body counts.
constexpr Rule kClientToBroker[] = {{Command::kSubmit, 1, limits::kMaxBodiesPerMessage},
                                    {Command::kCancel, 1, 1},
                                    {Command::kFetch, 1, limits::kMaxBodiesPerMessage},
                                    {Command::kPing, 0, 1}};
constexpr Rule kBrokerToClient[] = {{Command::kAccepted, 1, 1}, {Command::kRejected, 1, 1},
                                    {Command::kResult, 1, 1},   {Command::kError, 1, 1},
                                    {Command::kPong, 0, 1},     {Command::kOutput, 1, 1}};
constexpr Rule kWorkerToBroker[] = {{Command::kReady, 1, 1},     {Command::kCredit, 1, 1},
                                    {Command::kHeartbeat, 0, 1}, {Command::kResult, 1, 1},
                                    {Command::kError, 1, 1},     {Command::kDisconnect, 0, 0},
                                    {Command::kDrain, 0, 0},     {Command::kOutput, 1, 1}};
constexpr Rule kBrokerToWorker[] = {{Command::kJob, 1, 1},
                                    {Command::kCancel, 1, 1},
                                    {Command::kHeartbeat, 0, 0},
                                    {Command::kDisconnect, 0, 0},
                                    {Command::kDrained, 0, 0}};

std::span<const Rule> rules_for(Direction d) {
  switch (d) {
    case Direction::kClientToBroker:
      return kClientToBroker;
    case Direction::kBrokerToClient:
      return kBrokerToClient;
    case Direction::kWorkerToBroker:
      return kWorkerToBroker;
    case Direction::kBrokerToWorker:
      return kBrokerToWorker;
  }
  return {};
}

}  // namespace

std::string_view job_code_name(uint32_t code) {
  switch (static_cast<JobCode>(code)) {
    case JobCode::kInvalidRequest:
      return "InvalidRequest";
    case JobCode::kCancelled:
      return "Cancelled";
    case JobCode::kWorkerLost:
      return "WorkerLost";
    case JobCode::kQueueFull:
      return "QueueFull";
    case JobCode::kDeadlineExceeded:
      return "DeadlineExceeded";
    case JobCode::kUnknownJob:
      return "UnknownJob";
    case JobCode::kUnknownImage:
      return "UnknownImage";
    case JobCode::kJournalDamaged:
      return "JournalDamaged";
    case JobCode::kQuotaExceeded:
      return "QuotaExceeded";
    case JobCode::kTooLarge:
      return "TooLarge";
  }
  return "Unknown";
}

std::string_view command_name(Command c) {
  switch (c) {
    case Command::kSubmit:
      return "SUBMIT";
    case Command::kCancel:
      return "CANCEL";
    case Command::kFetch:
      return "FETCH";
    case Command::kPing:
      return "PING";
    case Command::kAccepted:
      return "ACCEPTED";
    case Command::kRejected:
      return "REJECTED";
    case Command::kResult:
      return "RESULT";
    case Command::kError:
      return "ERROR";
    case Command::kPong:
      return "PONG";
    case Command::kReady:
      return "READY";
    case Command::kCredit:
      return "CREDIT";
    case Command::kHeartbeat:
      return "HEARTBEAT";
    case Command::kDisconnect:
      return "DISCONNECT";
    case Command::kJob:
      return "JOB";
    case Command::kDrain:
      return "DRAIN";
    case Command::kDrained:
      return "DRAINED";
    case Command::kOutput:
      return "OUTPUT";
  }
  return "UNKNOWN";
}

Decoded<Envelope> parse_envelope(std::span<const std::string_view> parts, Direction direction) {
  if (parts.empty()) return DecodeError{"frame", "empty message"};
  if (parts[0] != kProtocolTag) {
    return DecodeError{"tag", "expected protocol tag PDK1 (protocol version 1)"};
  }
  if (parts.size() < 2) return DecodeError{"command", "missing command frame"};
  if (parts[1].size() != 1) return DecodeError{"command", "command frame must be one byte"};
  const auto cmd = static_cast<Command>(static_cast<uint8_t>(parts[1][0]));
  const size_t bodies = parts.size() - 2;
  for (const Rule& rule : rules_for(direction)) {
    if (rule.command != cmd) continue;
    if (bodies < rule.min_bodies || bodies > rule.max_bodies) {
      return DecodeError{"frame", std::string(command_name(cmd)) + " takes " +
                                      std::to_string(rule.min_bodies) + ".." +
                                      std::to_string(rule.max_bodies) + " bodies, got " +
                                      std::to_string(bodies)};
    }
    for (size_t i = 2; i < parts.size(); ++i) {
      if (parts[i].size() > limits::kMaxFrameBytes) {
        return DecodeError{"frame", "body larger than the frame limit"};
      }
    }
    return Envelope{cmd, std::vector<std::string_view>(parts.begin() + 2, parts.end())};
  }
  return DecodeError{"command", "command 0x" + [&] {
                       static const char* hex = "0123456789abcdef";
                       const auto b = static_cast<uint8_t>(parts[1][0]);
                       return std::string{hex[b >> 4], hex[b & 15]};
                     }() + " is not valid here"};
}

std::vector<std::string> make_message(Command c, std::vector<std::string> bodies) {
  std::vector<std::string> parts;
  parts.reserve(bodies.size() + 2);
  parts.emplace_back(kProtocolTag);
  parts.emplace_back(1, static_cast<char>(c));
  for (auto& b : bodies) parts.push_back(std::move(b));
  return parts;
}

}  // namespace paddock::schemas
