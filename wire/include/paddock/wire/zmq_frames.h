// Multipart send/receive helpers shared by the client library, the broker and the worker.
// Sends never block when asked not to: "would block" and "peer unreachable" are values.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

namespace paddock::wire {

enum class SendStatus { kOk, kWouldBlock, kUnreachable };

// Receives one whole multipart message without blocking; false when none is waiting.
bool recv_message(zmq::socket_ref socket, std::vector<zmq::message_t>& frames);

// Views of the frames from `first` on (e.g. 1 to skip a ROUTER routing id).
std::vector<std::string_view> views(const std::vector<zmq::message_t>& frames, size_t first = 0);

// Sends `parts`, prefixed by `routing_id` when it is not empty (ROUTER), without blocking.
// kUnreachable: a ROUTER_MANDATORY socket has no such peer (EHOSTUNREACH).
SendStatus send_message(zmq::socket_ref socket, const std::vector<std::string>& parts,
                        std::string_view routing_id = {});

// Options every Paddock socket gets: linger 0, the maximum message size.
void apply_common_options(zmq::socket_ref socket);

}  // namespace paddock::wire
