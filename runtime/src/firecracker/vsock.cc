#include "firecracker/vsock.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include "os/peer_text.h"
#include "paddock/base/os_error.h"

namespace paddock::runtime::firecracker {

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on fd until the deadline: false on timeout or error.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  while (true) {
    const int rc = ::poll(&p, 1, ms_left(deadline));
    if (rc > 0) return true;
    if (rc == 0 || errno != EINTR) return false;
  }
}

}  // namespace

Result<int> connect_vsock(const std::string& uds_path, uint32_t port,
                          std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string what = "vsock " + uds_path + " port " + std::to_string(port);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (uds_path.size() >= sizeof addr.sun_path) {
    return Error::guest_agent(what + ": socket path too long");
  }
  std::memcpy(addr.sun_path, uds_path.c_str(), uds_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Error::guest_agent(base::error_message(what + ": socket"));
  auto fail = [&](const std::string& why) -> Result<int> {
    ::close(fd);
    return Error::guest_agent(what + ": " + why);
  };
  // A unix stream connect completes at once or fails (EAGAIN: the backlog is full).
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return fail(base::error_message("connect"));
  }
  const std::string request = "CONNECT " + std::to_string(port) + "\n";
  size_t sent = 0;
  while (sent < request.size()) {
    if (!wait_for(fd, POLLOUT, deadline)) return fail("no room to send CONNECT in time");
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail(base::error_message("send CONNECT"));
    sent += static_cast<size_t>(n);
  }
  // Byte by byte: what follows the line is the guest's, and must stay in the socket.
  std::string reply;
  while (reply.empty() || reply.back() != '\n') {
    if (reply.size() >= kMaxVsockReply) {
      return fail("answer longer than " + std::to_string(kMaxVsockReply) + " bytes: '" +
                  os::peer_text(reply, kMaxVsockReply) + "'");
    }
    if (!wait_for(fd, POLLIN, deadline)) {
      return fail("no answer to CONNECT within " + std::to_string(timeout.count()) + " ms");
    }
    char c = 0;
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail(base::error_message("recv"));
    if (n == 0) {
      return fail("closed before answering CONNECT (no listener on that guest port yet?)" +
                  (reply.empty() ? std::string() : ": '" + os::peer_text(reply, 32) + "'"));
    }
    reply += c;
  }
  const std::string_view line(reply.data(), reply.size() - 1);
  uint32_t host_port = 0;
  const char* digits = line.data() + 3;
  auto [end, ec] = std::from_chars(digits, line.data() + line.size(), host_port);
  if (line.rfind("OK ", 0) != 0 || ec != std::errc() || end != line.data() + line.size() ||
      digits == end) {
    return fail("unexpected answer to CONNECT: '" + os::peer_text(line, 32) + "'");
  }
  // Left non-blocking: AgentClient polls with deadlines and never blocks either.
  return fd;
}

}  // namespace paddock::runtime::firecracker
