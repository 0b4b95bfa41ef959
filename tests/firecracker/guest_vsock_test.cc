// The guest agent's side of the Firecracker channel (agent/guest/: paddock.channel=vsock). In a
// VM the agent listens on AF_VSOCK port 1024 and serves connection after connection; the same
// code serves a unix socket in the host test mode (--serve-unix), which is what runs here. The
// AF_VSOCK accept path itself is NOT exercised on this machine (no vsock transport to connect
// through): only that the listener is made (bind and listen) is.
#include <doctest/doctest.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include "channel.h"
#include "fake_firecracker.h"
#include "paddock/runtime/agent_client.h"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace rt = paddock::runtime;

namespace {

// The real agent in its host test mode, serving connection after connection on `sock`.
struct ServingAgent {
  fs::path dir = paddock::test::fresh_temp_dir("agentvs-");
  std::string sock = (dir / "agent.sock").string();
  pid_t pid = -1;

  ServingAgent() {
    pid = ::fork();
    if (pid == 0) {
      const std::string work = dir.string();
      const char* argv[] = {PADDOCK_AGENT_BIN, "--serve-unix", sock.c_str(),
                            "--work-dir",      work.c_str(),   nullptr};
      ::execv(argv[0], const_cast<char**>(argv));
      ::_exit(127);
    }
  }
  ~ServingAgent() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  // A new connection (retrying while the agent starts), or -1.
  int connect() const {
    for (int i = 0; i < 500; ++i) {
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
      ::close(fd);
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  // The exit status once it exits within `limit`.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return status;
      }
      std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
  }
};

rt::ExecRequest pwd() {
  rt::ExecRequest r;
  r.argv = {"pwd"};
  return r;
}

}  // namespace

TEST_CASE("guest vsock channel: the agent serves connection after connection until shutdown") {
  ServingAgent agent;
  {
    rt::AgentClient first(agent.connect());
    REQUIRE(first.ping(5s));
    auto r = first.exec(pwd(), std::stop_token{}, 10s);
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    CHECK(r.value().stdout_data == agent.dir.string() + "\n");
  }  // the host goes away (as across a snapshot restore)
  rt::AgentClient second(agent.connect());
  CHECK(second.ping(5s));
  CHECK(second.shutdown(5s).ok());
  const auto status = agent.wait_exit(5s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK_FALSE(fs::exists(agent.sock));
}

TEST_CASE("guest vsock channel: a new connection replaces the one being served") {
  ServingAgent agent;
  rt::AgentClient stale(agent.connect());
  REQUIRE(stale.ping(5s));
  // The host reconnects without closing the old connection (a restored clone's host does: its
  // old stream died with the snapshot's vsock device).
  rt::AgentClient fresh(agent.connect());
  CHECK(fresh.ping(5s));
  auto r = fresh.exec(pwd(), std::stop_token{}, 10s);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
  CHECK_FALSE(stale.ping(1s));  // closed by the agent
  CHECK(fresh.ping(5s));
}

TEST_CASE("guest vsock channel: the kernel command line switch and the AF_VSOCK listener") {
  CHECK(paddock::guest::wants_vsock("console=ttyS0 paddock.channel=vsock reboot=k"));
  CHECK(paddock::guest::wants_vsock("paddock.channel=vsock"));
  CHECK_FALSE(paddock::guest::wants_vsock("console=ttyS0 reboot=k"));
  CHECK_FALSE(paddock::guest::wants_vsock("paddock.channel=vsock2 xpaddock.channel=vsock"));
  CHECK_FALSE(paddock::guest::wants_vsock("paddock.channel=virtio"));
  // Where this host's kernel has AF_VSOCK, the listener is made and bound to the port; whether a
  // host can connect to it through Firecracker is not tested here.
  std::string error;
  const unsigned port = 40000 + std::random_device{}() % 20000;
  const int fd = paddock::guest::listen_vsock(port, error);
  if (fd < 0) {
    MESSAGE("AF_VSOCK is not available on this host (" << error
                                                       << "): the vsock listener was NOT made");
    CHECK(error.find("AF_VSOCK") != std::string::npos);
    return;
  }
  sockaddr_vm addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  CHECK(addr.svm_family == AF_VSOCK);
  CHECK(addr.svm_port == port);
  int listening = 0;
  len = sizeof listening;
  REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0);
  CHECK(listening == 1);
  ::close(fd);
}
