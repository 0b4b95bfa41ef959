// The host side of Firecracker's hybrid vsock: the guest's AF_VSOCK ports are reached through the
// Unix socket given as the vsock device's uds_path. A host-initiated connection connects to that
// socket, sends "CONNECT <port>\n" and reads Firecracker's "OK <host port>\n" (the host port is
// the connection's local ephemeral port, not the guest's); after that the stream is the guest
// port's. Anything else (the connection closed, another answer, no answer in time) means no
// listener in the guest yet, or a Firecracker that cannot forward it.
//
// Thread-safety: a pure function of its arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "paddock/runtime/error.h"

namespace paddock::runtime::firecracker {

inline constexpr size_t kMaxVsockReply = 32;  // "OK " and a 32-bit number and '\n' fit

// Connects to guest port `port` through the hybrid vsock socket `uds_path` and returns the
// connected stream's fd (the caller owns it; hand it to AgentClient). GuestAgent error naming the
// socket, the port and what went wrong; the whole handshake is bounded by `timeout`.
Result<int> connect_vsock(const std::string& uds_path, uint32_t port,
                          std::chrono::milliseconds timeout);

}  // namespace paddock::runtime::firecracker
