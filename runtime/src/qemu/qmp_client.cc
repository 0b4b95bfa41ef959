#include "qemu/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "os/json_depth.h"
#include "os/peer_text.h"
#include "paddock/base/os_error.h"

namespace paddock::runtime::qemu {

namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline`, for poll(): 0 when it has passed.
int ms_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 60'000));
}

}  // namespace

std::optional<std::string> QmpLineBuffer::next_line() {
  const auto nl = buffer_.find('\n', scanned_);
  if (nl == std::string::npos) {
    scanned_ = buffer_.size();
    return std::nullopt;
  }
  std::string line = buffer_.substr(0, nl);
  buffer_.erase(0, nl + 1);
  scanned_ = 0;
  return line;
}

bool QmpLineBuffer::overflowed() const { return scanned_ > qmp_limits::kMaxLine; }

std::optional<QmpMessage> parse_qmp_message(std::string_view line, std::string& error) {
  if (line.size() > qmp_limits::kMaxLine) {
    error = "qmp message larger than " + std::to_string(qmp_limits::kMaxLine) + " bytes";
    return std::nullopt;
  }
  if (os::json_nested_deeper_than(line, qmp_limits::kMaxDepth)) {
    error = "qmp message nested deeper than " + std::to_string(qmp_limits::kMaxDepth);
    return std::nullopt;
  }
  try {
    auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      error = "malformed qmp message: " + os::peer_text(line, 64);
      return std::nullopt;
    }
    if (!j.is_object()) {
      error = std::string("qmp message is not an object but ") + j.type_name();
      return std::nullopt;
    }
    QmpMessage m;
    if (auto id = j.find("id"); id != j.end() && id->is_number_unsigned()) {
      m.id = id->get<uint64_t>();
    }
    if (j.contains("QMP")) {
      m.kind = QmpMessage::Kind::kGreeting;
    } else if (j.contains("event")) {
      m.kind = QmpMessage::Kind::kEvent;
    } else if (auto r = j.find("return"); r != j.end()) {
      m.kind = QmpMessage::Kind::kReturn;
      m.value = std::move(*r);
    } else if (auto e = j.find("error"); e != j.end()) {
      m.kind = QmpMessage::Kind::kError;
      m.error = qmp_string(*e, "desc", "qmp error");
      // An empty desc says nothing: the caller's message still needs a reason.
      if (m.error.empty()) m.error = "qmp error (empty desc)";
    }
    return m;
  } catch (const std::exception& e) {
    error = std::string("malformed qmp message: ") + e.what();
    return std::nullopt;
  }
}

std::string qmp_string(const nlohmann::json& value, std::string_view key,
                       const std::string& fallback) {
  if (!value.is_object()) return fallback;
  const auto it = value.find(key);
  if (it == value.end() || !it->is_string()) return fallback;
  return os::peer_text(it->get_ref<const std::string&>(), qmp_limits::kMaxText);
}

QmpClient::~QmpClient() { close(); }

void QmpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  lines_.clear();
}

std::optional<std::string> QmpClient::connect(const std::string& socket_path,
                                              std::chrono::milliseconds timeout,
                                              const std::function<bool()>& gone) {
  close();
  const auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) return "qmp socket path too long: " + socket_path;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  // QEMU creates the socket shortly after it starts: retry until it accepts.
  while (true) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return base::error_message("socket(AF_UNIX) for qmp");
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const int err = errno;
    close();
    if (Clock::now() >= deadline || (gone && gone())) {
      return base::error_message("connect " + socket_path, err);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string error;
  auto greeting = read_message(deadline, error);
  if (!greeting || greeting->kind != QmpMessage::Kind::kGreeting) {
    close();
    return "qmp greeting: " + (error.empty() ? "unexpected message" : error);
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (!execute("qmp_capabilities", nullptr, std::max(left, std::chrono::milliseconds(100)),
               error)) {
    close();
    return "qmp_capabilities: " + error;
  }
  return std::nullopt;
}

std::optional<QmpMessage> QmpClient::read_message(Clock::time_point deadline, std::string& error) {
  while (true) {
    if (auto line = lines_.next_line()) return parse_qmp_message(*line, error);
    if (lines_.overflowed()) {
      error = "qmp message larger than " + std::to_string(qmp_limits::kMaxLine) + " bytes";
      return std::nullopt;
    }
    if (Clock::now() >= deadline) {
      error = "timed out";
      return std::nullopt;
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, ms_until(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      error = base::error_message("poll qmp");
      return std::nullopt;
    }
    if (rc == 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) {
      error = n == 0 ? "qmp connection closed by qemu" : base::error_message("read qmp");
      return std::nullopt;
    }
    lines_.feed(std::string_view(buf, static_cast<size_t>(n)));
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
  const auto deadline = Clock::now() + timeout;
  const uint64_t id = next_id_++;
  nlohmann::json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  const std::string line = request.dump() + "\n";
  // A QEMU that stops reading its socket must not hold us past the deadline.
  size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n =
        ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      error = base::error_message("send qmp " + command);
      return std::nullopt;
    }
    if (Clock::now() >= deadline) {
      // A command cut short would garble the next one: this connection is done.
      close();
      error = "send qmp " + command + ": timed out (qemu does not read its socket)";
      return std::nullopt;
    }
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, ms_until(deadline)) < 0 && errno != EINTR) {
      error = base::error_message("poll qmp");
      return std::nullopt;
    }
  }
  while (true) {
    auto msg = read_message(deadline, error);
    if (!msg) return std::nullopt;
    // Events (STOP, RESUME, SHUTDOWN, ...) and late answers to commands given up on are skipped.
    if (msg->id != id) continue;
    if (msg->kind == QmpMessage::Kind::kError) {
      error = msg->error;
      return std::nullopt;
    }
    if (msg->kind == QmpMessage::Kind::kReturn) return std::move(msg->value);
  }
}

}  // namespace paddock::runtime::qemu
