// A fake guest agent for tests of the host side of the agent protocol: a thread on one end of a
// socketpair (the transport AgentClient speaks, as in tests/integration/agent_test.cc), reading
// the host's requests with the real codec and answering each as its script says. A script can
// play an honest agent (honest_agent) or an attacker: raw bytes, lies, silence, endless streams.
//
// Thread-safety: the script runs on the agent's thread; the test owns the FakeAgent and the
// AgentClient on host_fd().
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "paddock/agent/protocol.h"

namespace paddock::testing {

namespace agent = paddock::runtime::agent;

class FakeAgent {
 public:
  using Script = std::function<void(FakeAgent&, const agent::Request&)>;

  explicit FakeAgent(Script script) : script_(std::move(script)) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      throw std::system_error(errno, std::generic_category(), "socketpair");
    }
    host_fd_ = sv[0];
    fd_ = sv[1];
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeAgent() {
    stop_ = true;
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  FakeAgent(const FakeAgent&) = delete;
  FakeAgent& operator=(const FakeAgent&) = delete;

  // The host's end; whoever takes it (an AgentClient) closes it.
  int host_fd() const { return host_fd_; }

  // Writes `bytes` in full unless the host went away or the test ended. False then.
  bool send_raw(std::string_view bytes) {
    while (!bytes.empty()) {
      if (stop_ || fd_ < 0) return false;
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 10);
      } else {
        return false;  // EPIPE, ECONNRESET: the host closed its end
      }
    }
    return true;
  }
  bool send_body(std::string_view body) { return send_raw(agent::frame(body)); }
  bool send(const agent::Reply& reply) { return send_body(agent::encode_reply(reply)); }
  // `bytes` again and again, every `pause`, until the host goes away or the test ends.
  void send_forever(std::string_view bytes, std::chrono::milliseconds pause = {}) {
    while (send_raw(bytes)) {
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
  }
  // End of stream for the host.
  void hang_up() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Until the test ends (the host sees silence).
  void stay_silent() {
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int requests_seen() const { return requests_; }

 private:
  void serve() {
    agent::FrameReader reader;
    char buf[64 << 10];
    while (!stop_ && fd_ >= 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return;  // the host closed its end
      }
      reader.feed(std::string_view(buf, static_cast<size_t>(n)));
      while (auto frame = reader.next()) {
        if (!*frame) continue;
        auto request = agent::decode_request(frame->value());
        if (!request) continue;
        ++requests_;
        script_(*this, request.value());
        if (fd_ < 0) return;
      }
    }
  }

  Script script_;
  int host_fd_ = -1;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

// What a well-behaved agent answers: pong "fake-1"; for exec, argv[1..] joined by spaces and a
// newline on stdout, exit code 0, and each file out as "data of <path>"; refreshed with the
// hostname it was given; shutdown.
inline void honest_agent(FakeAgent& a, const agent::Request& r) {
  agent::Reply reply;
  reply.id = r.id;
  switch (r.op) {
    case agent::Op::kPing:
      reply.kind = agent::ReplyKind::kPong;
      reply.agent_version = "fake-1";
      break;
    case agent::Op::kExec: {
      reply.kind = agent::ReplyKind::kResult;
      std::string out;
      for (size_t i = 1; i < r.exec.argv.size(); ++i) out += (i > 1 ? " " : "") + r.exec.argv[i];
      reply.result.stdout_data = out + "\n";
      for (const auto& path : r.exec.files_out) {
        reply.result.files.push_back({path, "data of " + path, false});
      }
      break;
    }
    case agent::Op::kRefresh:
      reply.kind = agent::ReplyKind::kRefreshed;
      reply.refreshed = {"0a1b2c3d-0000-4000-8000-0123456789ab", r.refresh.hostname, true};
      break;
    case agent::Op::kShutdown:
      reply.kind = agent::ReplyKind::kShutdown;
      break;
  }
  a.send(reply);
}

// Answers pings, refreshes and shutdowns honestly and every exec with `fn`.
inline FakeAgent::Script on_exec(std::function<void(FakeAgent&, const agent::Request&)> fn) {
  return [fn = std::move(fn)](FakeAgent& a, const agent::Request& r) {
    if (r.op == agent::Op::kExec) {
      fn(a, r);
    } else {
      honest_agent(a, r);
    }
  };
}

// On exec: sends `bytes` (the start of a frame, say), then stays silent.
inline FakeAgent::Script send_then_silence(std::string bytes) {
  return on_exec([bytes = std::move(bytes)](FakeAgent& a, const agent::Request&) {
    a.send_raw(bytes);
    a.stay_silent();
  });
}

// A result reply to `id`: exit code 0 and the given outputs and files.
inline agent::Reply result_reply(uint64_t id, std::string out, std::string err = "",
                                 std::vector<agent::FileOut> files = {}) {
  agent::Reply r;
  r.id = id;
  r.kind = agent::ReplyKind::kResult;
  r.result.stdout_data = std::move(out);
  r.result.stderr_data = std::move(err);
  r.result.files = std::move(files);
  return r;
}

// An error reply to `id` (ok: false).
inline agent::Reply error_reply(uint64_t id, std::string error) {
  agent::Reply r;
  r.id = id;
  r.kind = agent::ReplyKind::kError;
  r.error = std::move(error);
  return r;
}

}  // namespace paddock::testing
