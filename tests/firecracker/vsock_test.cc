// The hybrid vsock handshake against a fake vsock listener (a unix socket that answers like
// Firecracker's host side of the vsock device), and the handover of the stream to the agent.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "fake_firecracker.h"
#include "firecracker/vsock.h"

using namespace paddock::runtime;
using namespace paddock::runtime::firecracker;
using namespace std::chrono_literals;

namespace {

// Listens on a unix socket; for one connection reads the CONNECT line into `received`, answers
// `answer` (nothing if empty), then writes `after` and waits for the peer to close. With
// `hang_up`, it closes right after the CONNECT line instead, as Firecracker does when no guest
// program listens on the port.
class FakeVsockListener {
 public:
  explicit FakeVsockListener(std::string answer, std::string after = {}, bool hang_up = false)
      : dir_(paddock::test::fresh_temp_dir("fcvsock-")), path_((dir_ / "v.sock").string()) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    thread_ = std::thread([this, answer, after, hang_up] {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char ch = 0;
      while (::recv(c, &ch, 1, 0) == 1) {
        received_ += ch;
        if (ch == '\n') break;
      }
      if (hang_up) {
        ::close(c);
        return;
      }
      if (!answer.empty()) (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      if (!after.empty()) (void)::send(c, after.data(), after.size(), MSG_NOSIGNAL);
      while (::recv(c, &ch, 1, 0) == 1) {
      }
      ::close(c);
    });
  }
  ~FakeVsockListener() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
    std::filesystem::remove_all(dir_);
  }
  const std::string& path() const { return path_; }
  std::string received() {
    return received_;  // REQUIRES: the handshake finished (the client got its answer)
  }

 private:
  std::filesystem::path dir_;
  std::string path_;
  int fd_ = -1;
  std::thread thread_;
  std::string received_;
};

}  // namespace

TEST_CASE("firecracker vsock: CONNECT then OK hands over the stream") {
  FakeVsockListener fake("OK 1073741825\n", "guest bytes");
  auto fd = connect_vsock(fake.path(), 52, 2s);
  REQUIRE_MESSAGE(fd, (fd ? "" : fd.error().detail()));
  CHECK(fake.received() == "CONNECT 52\n");
  // What the guest sent after the OK line stays in the stream for the agent client.
  std::string got;
  char buf[64];
  while (got.size() < 11) {
    const ssize_t n = ::recv(fd.value(), buf, sizeof buf, 0);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (n == 0) break;
  }
  CHECK(got == "guest bytes");
  ::close(fd.value());
}

TEST_CASE("firecracker vsock: a closed connection is a GuestAgent error") {
  FakeVsockListener fake("", "", /*hang_up=*/true);
  auto fd = connect_vsock(fake.path(), 52, 2s);
  REQUIRE_FALSE(fd);
  CHECK(fd.error().variant() == Variant::kGuestAgent);
  CHECK(fd.error().detail().find("closed before answering CONNECT") != std::string::npos);
}

TEST_CASE("firecracker vsock: a silent listener times out") {
  FakeVsockListener fake("");
  const auto t0 = std::chrono::steady_clock::now();
  auto fd = connect_vsock(fake.path(), 52, 300ms);
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  REQUIRE_FALSE(fd);
  CHECK(fd.error().variant() == Variant::kGuestAgent);
  CHECK(fd.error().detail().find("no answer to CONNECT within 300 ms") != std::string::npos);
}

TEST_CASE("firecracker vsock: an unexpected answer is refused") {
  FakeVsockListener fake("NO 52\n");
  auto fd = connect_vsock(fake.path(), 52, 2s);
  REQUIRE_FALSE(fd);
  CHECK(fd.error().detail().find("unexpected answer to CONNECT: 'NO 52'") != std::string::npos);
}

TEST_CASE("firecracker vsock: an endless answer is bounded") {
  FakeVsockListener fake(std::string(1000, 'O'));
  auto fd = connect_vsock(fake.path(), 52, 2s);
  REQUIRE_FALSE(fd);
  CHECK(fd.error().detail().find("answer longer than 32 bytes") != std::string::npos);
}

TEST_CASE("firecracker vsock: no listener is a GuestAgent error naming the socket") {
  auto fd = connect_vsock("/nonexistent/v.sock", 52, 1s);
  REQUIRE_FALSE(fd);
  CHECK(fd.error().variant() == Variant::kGuestAgent);
  CHECK(fd.error().detail().find("vsock /nonexistent/v.sock port 52: connect") !=
        std::string::npos);
}
