#include "qemu/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <thread>

#include "os/os_error.h"

namespace paddock::runtime::qemu {

namespace {
constexpr size_t kMaxMessage = 1 << 20;  // QMP answers we ask for are small
}

QmpClient::~QmpClient() { close(); }

void QmpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

std::optional<std::string> QmpClient::connect(const std::string& socket_path,
                                              std::chrono::milliseconds timeout,
                                              const std::function<bool()>& gone) {
  close();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) return "qmp socket path too long: " + socket_path;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  // QEMU creates the socket shortly after it starts: retry until it accepts.
  while (true) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return os::error_message("socket(AF_UNIX) for qmp");
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const int err = errno;
    close();
    if (std::chrono::steady_clock::now() >= deadline || (gone && gone())) {
      return os::error_message("connect " + socket_path, err);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string error;
  auto greeting = read_message(deadline, error);
  if (!greeting || !greeting->contains("QMP")) {
    close();
    return "qmp greeting: " + (error.empty() ? "unexpected message" : error);
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (!execute("qmp_capabilities", nullptr, std::max(left, std::chrono::milliseconds(100)),
               error)) {
    close();
    return "qmp_capabilities: " + error;
  }
  return std::nullopt;
}

std::optional<nlohmann::json> QmpClient::read_message(
    std::chrono::steady_clock::time_point deadline, std::string& error) {
  while (true) {
    const auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded()) {
        error = "malformed qmp message";
        return std::nullopt;
      }
      return parsed;
    }
    if (buffer_.size() > kMaxMessage) {
      error = "qmp message larger than 1 MiB";
      return std::nullopt;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error = "timed out";
      return std::nullopt;
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      error = os::error_message("poll qmp");
      return std::nullopt;
    }
    if (rc == 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n == 0 ? "qmp connection closed by qemu" : os::error_message("read qmp");
      return std::nullopt;
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::optional<nlohmann::json> QmpClient::execute(const std::string& command,
                                                 const nlohmann::json& arguments,
                                                 std::chrono::milliseconds timeout,
                                                 std::string& error) {
  if (fd_ < 0) {
    error = "qmp not connected";
    return std::nullopt;
  }
  const uint64_t id = next_id_++;
  nlohmann::json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  const std::string line = request.dump() + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = os::error_message("send qmp " + command);
      return std::nullopt;
    }
    sent += static_cast<size_t>(n);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto msg = read_message(deadline, error);
    if (!msg) return std::nullopt;
    if (msg->contains("event")) continue;  // asynchronous: STOP, RESUME, SHUTDOWN, ...
    if (!msg->contains("id") || (*msg)["id"] != id) continue;
    if (msg->contains("error")) {
      error = (*msg)["error"].value("desc", std::string("qmp error"));
      return std::nullopt;
    }
    return msg->value("return", nlohmann::json::object());
  }
}

}  // namespace paddock::runtime::qemu
