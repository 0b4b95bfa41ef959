// The host side of the guest agent protocol (schemas/PROTOCOL.md, "Guest agent protocol"): one
// connected byte stream to one guest agent — under QEMU, the unix socket of the chardev behind the
// guest's `paddock.agent` virtio-serial port.
//
// The guest is an attacker: every wait has a deadline, a frame is at most 32 MiB, a result is
// checked against its request and capped (agent/result_check.h: output caps, only the files
// asked for, 15 MiB of data in all), and the guest's text is quoted bounded and escaped.
//
// Requests carry ids; a reply to an earlier request that was given up on (a ping that timed out,
// an exec past its deadline or cancelled) is recognised by its id and skipped, so the stream stays
// usable. It breaks for good when the peer closes it, an I/O call fails, a reply is not a valid
// frame, a request could only be written in part, or the guest breaks the protocol: a reply to a
// request never made or answered already, a non-error reply with id 0, a result that cannot be
// believed (a file not asked for), a refresh that reports another hostname than it applied.
// Every later call then fails at once with the reason.
//
// Thread-safety: none. One caller at a time (a VM runs one exec at a time on its channel).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>

#include "paddock/runtime/error.h"
#include "paddock/runtime/provider.h"

namespace paddock::runtime {

namespace agent {
class FrameReader;
struct Reply;
}  // namespace agent

// Who a guest is after a refresh (AgentClient::refresh).
struct AgentIdentity {
  std::string boot_id;   // the guest kernel's boot id, read after the CRNG reseed
  std::string hostname;  // the guest's hostname now
  bool applied = false;  // false: the agent runs in its host test mode and changed nothing
};

class AgentClient {
 public:
  // Takes ownership of a connected stream fd (a unix socket); the destructor closes it.
  explicit AgentClient(int fd);
  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  // Sends ping and waits up to `timeout` for its pong. False on timeout or a broken stream; a
  // timeout does not break the stream (the late pong is skipped by the next call).
  bool ping(std::chrono::milliseconds timeout);

  // Runs `request` in the guest and returns what it did: a program that fails, is killed or times
  // out (the agent enforces request.timeout_ms) is an ExecResult. When `cancel` is triggered the
  // wait ends within a few milliseconds with an ExecResult whose `cancelled` is set (the guest's
  // job is not stopped: the caller destroys the VM). Files out are capped at request.output_cap
  // bytes each, like stdout and stderr.
  // Errors (GuestAgent): the stream is or becomes broken; no reply within `deadline` (measured from
  // the call); the agent answered that it could not run the request (bad request, fork failure);
  // the result cannot be believed (agent/result_check.h; the stream then breaks).
  // A result is capped before it is returned: stdout, stderr and each file at output_cap bytes,
  // 15 MiB of data in all (the *_truncated flags say so).
  // With `on_output`, the request is sent with `stream` set and the agent's output pieces are
  // given to it as they arrive, before the result (a piece past output_cap breaks the stream).
  Result<ExecResult> exec(const ExecRequest& request, std::stop_token cancel,
                          std::chrono::milliseconds deadline, const OutputSink& on_output = {});

  // Makes a clone restored from a shared snapshot unique before any job runs in it: the agent adds
  // `entropy` to the guest kernel's pool (credited in full) and reseeds its CRNG, sets the wall
  // clock to `unix_time_ns` and the hostname to `hostname`, then reads the boot id (made on its
  // first read, so a fresh one per clone) and answers with it. Waits up to `timeout`.
  // The arguments must keep the protocol's limits (entropy 32-512 bytes, unix_time_ns not 0,
  // hostname 1-64 of [A-Za-z0-9-], not starting with '-'); others are refused before sending.
  // In the agent's host test mode nothing changes: the host's boot id and hostname come back with
  // applied = false.
  // Errors (GuestAgent): bad arguments; the stream is or becomes broken; no reply within `timeout`;
  // the agent answered that a step failed ("refresh: the agent could not run the request:
  // sethostname clone-1: Operation not permitted"): the guest may then be half refreshed and
  // should be destroyed.
  Result<AgentIdentity> refresh(const std::string& entropy, uint64_t unix_time_ns,
                                const std::string& hostname, std::chrono::milliseconds timeout);

  // Asks the agent to power the guest off (in its host test mode: to exit) and waits up to
  // `timeout` for its acknowledgement.
  Status shutdown(std::chrono::milliseconds timeout);

  // The agent's version from the last pong ("" before one arrived).
  const std::string& agent_version() const { return agent_version_; }
  // False once the stream broke; broken_reason() says why.
  bool healthy() const { return broken_.empty(); }
  const std::string& broken_reason() const { return broken_; }

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  // kFailed: failure_ says why (and the stream may be broken).
  enum class Wait { kDone, kTimeout, kCancelled, kFailed };

  // Writes one frame. Given up part way (deadline, cancel), the stream is broken.
  Wait send(const std::string& frame, Deadline deadline, const std::stop_token* cancel);
  // Reads until the reply to `id` arrives, the deadline passes, `cancel` is triggered or the
  // stream breaks. Replies to other ids are skipped.
  Wait await_reply(uint64_t id, Deadline deadline, const std::stop_token* cancel,
                   agent::Reply& reply);
  // send() then await_reply(); a request given up on (timeout, cancel) is remembered as abandoned.
  Wait round_trip(uint64_t id, std::string_view body, Deadline deadline,
                  const std::stop_token* cancel, agent::Reply& reply);
  // Remembers `id` as given up on, so that its late reply is skipped once (the oldest of too
  // many are forgotten).
  void abandon(uint64_t id);
  // Records the stream as broken (the first reason wins) and fails.
  Wait broke(std::string reason);

  int fd_ = -1;
  uint64_t next_id_ = 1;
  std::string agent_version_;
  std::string broken_;
  std::string failure_;
  std::set<uint64_t> abandoned_;                // ids given up on whose replies have not come
  const OutputSink* on_output_ = nullptr;       // the streaming exec in flight's
  uint32_t output_cap_ = 0;                     // its output_cap
  std::unique_ptr<agent::FrameReader> reader_;  // bytes read and not yet taken as replies
};

}  // namespace paddock::runtime
