#include "paddock/wire/zmq_frames.h"

#include "paddock/schemas/limits.h"

namespace paddock::wire {

bool recv_message(zmq::socket_ref socket, std::vector<zmq::message_t>& frames) {
  frames.clear();
  while (true) {
    zmq::message_t m;
    // Once the first frame is here, the rest of the message is too (ZeroMQ delivers atomically).
    if (!socket.recv(m, zmq::recv_flags::dontwait)) return !frames.empty();
    const bool more = m.more();
    frames.push_back(std::move(m));
    if (!more) return true;
  }
}

std::vector<std::string_view> views(const std::vector<zmq::message_t>& frames, size_t first) {
  std::vector<std::string_view> out;
  out.reserve(frames.size() > first ? frames.size() - first : 0);
  for (size_t i = first; i < frames.size(); ++i) {
    out.emplace_back(frames[i].data<char>(), frames[i].size());
  }
  return out;
}

SendStatus send_message(zmq::socket_ref socket, const std::vector<std::string>& parts,
                        std::string_view routing_id) {
  try {
    if (!routing_id.empty()) {
      if (!socket.send(zmq::buffer(routing_id),
                       zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return SendStatus::kWouldBlock;
      }
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      auto flags = zmq::send_flags::dontwait;
      if (i + 1 < parts.size()) flags = flags | zmq::send_flags::sndmore;
      if (!socket.send(zmq::buffer(parts[i]), flags)) return SendStatus::kWouldBlock;
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return SendStatus::kUnreachable;
    throw;
  }
  return SendStatus::kOk;
}

void apply_common_options(zmq::socket_ref socket) {
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::maxmsgsize,
             static_cast<int64_t>(schemas::limits::kMaxFrameBytes + (64 << 10)));
}

}  // namespace paddock::wire
