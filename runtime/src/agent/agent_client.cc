#include "paddock/runtime/agent_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "agent/result_check.h"
#include "os/peer_text.h"
#include "paddock/agent/protocol.h"
#include "paddock/base/os_error.h"

namespace paddock::runtime {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How often a wait looks at its stop_token.
constexpr milliseconds kCancelSlice{10};
constexpr size_t kReadChunk = 256u << 10;
// Bytes of the guest's own text (an error it answered, a field its reply broke) quoted in ours:
// with the console tail QemuVm adds, a JobError message stays under its 4 KiB.
constexpr size_t kMaxQuoted = 1024;
// Requests given up on whose late replies are still accepted (and skipped). Older ones are
// forgotten: a reply to one of those is then taken for a reply to nothing.
constexpr size_t kMaxAbandoned = 1024;

// Milliseconds to wait in one poll(): up to the deadline, in slices when there is a stop_token.
int poll_ms(Clock::time_point deadline, bool sliced) {
  auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
  if (sliced) left = std::min(left, kCancelSlice);
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 60'000));
}

ExecResult cancelled_result() {
  ExecResult r;
  r.cancelled = true;
  return r;
}

}  // namespace

AgentClient::AgentClient(int fd) : fd_(fd), reader_(std::make_unique<agent::FrameReader>()) {
  // Every wait is a poll() with a deadline; reads and writes never block.
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) {
    broken_ = base::error_message("set the agent channel non-blocking");
  }
}

AgentClient::~AgentClient() {
  if (fd_ >= 0) ::close(fd_);
}

AgentClient::Wait AgentClient::broke(std::string reason) {
  if (broken_.empty()) broken_ = reason;
  failure_ = std::move(reason);
  return Wait::kFailed;
}

AgentClient::Wait AgentClient::send(const std::string& frame, Deadline deadline,
                                    const std::stop_token* cancel) {
  if (!healthy()) {
    failure_ = "agent channel unusable: " + broken_;
    return Wait::kFailed;
  }
  size_t sent = 0;
  while (sent < frame.size()) {
    const ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return broke(base::error_message("write agent channel"));
    }
    const bool cancelled = cancel != nullptr && cancel->stop_requested();
    if (cancelled || Clock::now() >= deadline) {
      // A frame cut short leaves the guest waiting for bytes that will never come.
      if (sent > 0) broke("write agent channel: request abandoned part way");
      return cancelled ? Wait::kCancelled : Wait::kTimeout;
    }
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, poll_ms(deadline, cancel != nullptr)) < 0 && errno != EINTR) {
      return broke(base::error_message("poll agent channel"));
    }
  }
  return Wait::kDone;
}

void AgentClient::abandon(uint64_t id) {
  abandoned_.insert(id);
  if (abandoned_.size() > kMaxAbandoned) abandoned_.erase(abandoned_.begin());
}

AgentClient::Wait AgentClient::await_reply(uint64_t id, Deadline deadline,
                                           const std::stop_token* cancel, agent::Reply& reply) {
  std::vector<char> chunk;
  for (;;) {
    while (auto next = reader_->next()) {
      if (!*next) {
        return broke("agent reply: " + os::peer_text(next->error().message(), kMaxQuoted));
      }
      auto decoded = agent::decode_reply(next->value());
      const uint64_t got = decoded ? decoded.value().id : decoded.error().id;
      if (decoded && decoded.value().kind == agent::ReplyKind::kOutput) {
        // A piece of a streaming exec's output: of this one (given to its sink), or of one given
        // up on (skipped; its result is still to come).
        if (got != id && abandoned_.count(got) > 0) continue;
        const agent::OutputPiece& piece = decoded.value().output;
        if (got != id || on_output_ == nullptr) {
          return broke("agent reply: output for id " + std::to_string(got) +
                       ", which is no streaming exec in flight");
        }
        if (piece.offset + piece.data.size() > output_cap_) {
          return broke("agent reply: output past the exec's output_cap of " +
                       std::to_string(output_cap_) + " bytes");
        }
        if (*on_output_) (*on_output_)(piece.stream, piece.offset, piece.data);
        continue;
      }
      if (got != id && got != 0) {
        // The late reply to a request given up on is skipped; a reply to anything else (a
        // request never made, one answered already) means the guest does not follow the protocol.
        if (abandoned_.erase(got) > 0) continue;
        return broke("agent reply: id " + std::to_string(got) + " answers no request in flight " +
                     "(waiting for " + std::to_string(id) + ")");
      }
      if (!decoded) {
        failure_ = "agent reply: " + os::peer_text(decoded.error().message(), kMaxQuoted);
        return Wait::kFailed;
      }
      // id 0: the agent could not read the id of a request (ours: we never send id 0), which
      // only an error can answer.
      if (got == 0 && decoded.value().kind != agent::ReplyKind::kError) {
        return broke("agent reply: a " + std::string(agent::reply_kind_name(decoded.value().kind)) +
                     " with id 0 (only an error may have it)");
      }
      reply = std::move(decoded.value());
      return Wait::kDone;
    }
    if (!healthy()) {
      failure_ = "agent channel unusable: " + broken_;
      return Wait::kFailed;
    }
    if (cancel != nullptr && cancel->stop_requested()) return Wait::kCancelled;
    if (Clock::now() >= deadline) return Wait::kTimeout;
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, poll_ms(deadline, cancel != nullptr));
    if (rc < 0 && errno != EINTR) return broke(base::error_message("poll agent channel"));
    if (rc <= 0) continue;
    if (chunk.empty()) chunk.resize(kReadChunk);
    const ssize_t n = ::read(fd_, chunk.data(), chunk.size());
    if (n > 0) {
      reader_->feed(std::string_view(chunk.data(), static_cast<size_t>(n)));
    } else if (n == 0) {
      return broke(reader_->mid_frame()
                       ? "read agent channel: the guest closed it in the middle of a reply"
                       : "read agent channel: closed by the guest");
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      return broke(base::error_message("read agent channel"));
    }
  }
}

AgentClient::Wait AgentClient::round_trip(uint64_t id, std::string_view body, Deadline deadline,
                                          const std::stop_token* cancel, agent::Reply& reply) {
  Wait w = send(agent::frame(body), deadline, cancel);
  if (w == Wait::kDone) w = await_reply(id, deadline, cancel, reply);
  // Given up on with the stream intact: its reply may still come, and is then skipped. (A
  // request cut short broke the stream.)
  if ((w == Wait::kTimeout || w == Wait::kCancelled) && healthy()) abandon(id);
  return w;
}

bool AgentClient::ping(milliseconds timeout) {
  agent::Request request;
  request.id = next_id_++;
  request.op = agent::Op::kPing;
  agent::Reply reply;
  if (round_trip(request.id, agent::encode_request(request), Clock::now() + timeout, nullptr,
                 reply) != Wait::kDone) {
    return false;
  }
  if (reply.kind != agent::ReplyKind::kPong) return false;
  agent_version_ = reply.agent_version;
  return true;
}

Result<ExecResult> AgentClient::exec(const ExecRequest& request, std::stop_token cancel,
                                     milliseconds deadline, const OutputSink& on_output) {
  const auto until = Clock::now() + deadline;
  agent::Request r;
  r.id = next_id_++;
  r.op = agent::Op::kExec;
  r.exec = request;
  r.exec.stream = static_cast<bool>(on_output);
  // Pieces are taken only while this exec waits for its reply.
  on_output_ = r.exec.stream ? &on_output : nullptr;
  output_cap_ = request.output_cap;
  struct Clear {
    const OutputSink*& p;
    ~Clear() { p = nullptr; }
  } clear{on_output_};
  const std::string body = agent::encode_request(r);
  if (body.size() > agent::limits::kMaxFrameBytes) {
    return Error::guest_agent("exec: the request is " + std::to_string(body.size()) +
                              " bytes, over the agent protocol's frame limit of " +
                              std::to_string(agent::limits::kMaxFrameBytes));
  }
  agent::Reply reply;
  switch (round_trip(r.id, body, until, &cancel, reply)) {
    case Wait::kDone:
      break;
    case Wait::kCancelled:
      return cancelled_result();
    case Wait::kTimeout:
      return Error::guest_agent("exec: no reply from the guest agent within " +
                                std::to_string(deadline.count()) + " ms");
    case Wait::kFailed:
      return Error::guest_agent(failure_);
  }
  switch (reply.kind) {
    case agent::ReplyKind::kResult:
      if (auto bad = agent::check_result(r.exec, reply.result); !bad.empty()) {
        // A guest that lies about what it did is not asked anything again.
        broke("exec: the agent's result is not believable: " + bad);
        return Error::guest_agent(failure_);
      }
      {
        // The agent's outcome is the job model's; its own wall clock of the program is dropped
        // (the worker measures the exec it reports).
        ExecResult result;
        static_cast<schemas::ExecOutcome&>(result) = std::move(reply.result);
        return result;
      }
    case agent::ReplyKind::kError:
      return Error::guest_agent("exec: the agent could not run the request: " +
                                os::peer_text(reply.error, kMaxQuoted));
    default:
      return Error::guest_agent("exec: the agent answered with a " +
                                std::string(agent::reply_kind_name(reply.kind)) + ", not a result");
  }
}

Result<AgentIdentity> AgentClient::refresh(const std::string& entropy, uint64_t unix_time_ns,
                                           const std::string& hostname, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  agent::Request request;
  request.op = agent::Op::kRefresh;
  request.refresh = {entropy, unix_time_ns, hostname};
  if (auto bad = agent::check_refresh(request.refresh); !bad.empty()) {
    return Error::guest_agent("refresh: bad request: " + bad);
  }
  request.id = next_id_++;
  agent::Reply reply;
  switch (round_trip(request.id, agent::encode_request(request), deadline, nullptr, reply)) {
    case Wait::kDone:
      break;
    case Wait::kTimeout:
      return Error::guest_agent("refresh: no reply from the guest agent within " +
                                std::to_string(timeout.count()) + " ms");
    default:
      return Error::guest_agent(failure_);
  }
  switch (reply.kind) {
    case agent::ReplyKind::kRefreshed:
      // A guest that says it applied the hostname it was given and has another is lying.
      if (reply.refreshed.applied && reply.refreshed.hostname != hostname) {
        broke("refresh: the agent says it applied hostname '" + hostname + "' but reports '" +
              os::peer_text(reply.refreshed.hostname, agent::limits::kMaxHostname) + "'");
        return Error::guest_agent(failure_);
      }
      return AgentIdentity{std::move(reply.refreshed.boot_id), std::move(reply.refreshed.hostname),
                           reply.refreshed.applied};
    case agent::ReplyKind::kError:
      return Error::guest_agent("refresh: the agent could not run the request: " +
                                os::peer_text(reply.error, kMaxQuoted));
    default:
      return Error::guest_agent("refresh: the agent answered with a " +
                                std::string(agent::reply_kind_name(reply.kind)) +
                                ", not refreshed");
  }
}

Status AgentClient::shutdown(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  agent::Request request;
  request.id = next_id_++;
  request.op = agent::Op::kShutdown;
  agent::Reply reply;
  switch (round_trip(request.id, agent::encode_request(request), deadline, nullptr, reply)) {
    case Wait::kDone:
      break;
    case Wait::kTimeout:
      return Error::guest_agent("shutdown: no reply within " + std::to_string(timeout.count()) +
                                " ms");
    default:
      return Error::guest_agent(failure_);
  }
  if (reply.kind == agent::ReplyKind::kError) {
    return Error::guest_agent("shutdown: the agent refused: " +
                              os::peer_text(reply.error, kMaxQuoted));
  }
  return {};
}

}  // namespace paddock::runtime
