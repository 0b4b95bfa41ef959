// The agent's end of its control channel: frames in, frames out, over one file descriptor.
//
// In a VM it is the virtio-serial port named `paddock.agent` (QEMU), or a connection accepted on
// the agent's vsock port (Firecracker: the kernel command line says paddock.channel=vsock). The
// host side of such a port comes and goes (QEMU's chardev socket has no client yet; a restored
// clone's host connects anew): a read of 0 bytes then means "no host now", never "the end", and
// whatever part of a frame was buffered is dropped. In the host test mode it is a socket, and end
// of stream ends serving.
#pragma once

#include <optional>
#include <string>

#include "paddock/agent/protocol.h"

namespace paddock::guest {

class Channel {
 public:
  enum class Read { kData, kNoPeer, kError };

  // Owns fd. `name` is for messages ("/dev/vport0p1", "fd 3").
  Channel(int fd, std::string name);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int fd() const { return fd_; }
  const std::string& name() const { return name_; }

  // Reads what is available (call when poll() says the fd is readable). kNoPeer: end of stream
  // (the frame reader was reset). kError: `error` says why.
  Read pump(std::string& error);
  // The next complete frame, if one is buffered.
  std::optional<runtime::agent::Decoded<std::string>> next() { return reader_.next(); }
  // Writes one whole frame, blocking (a virtio port without a host blocks until one connects).
  // Empty on success, else why not.
  std::string send(const std::string& frame);

 private:
  int fd_;
  std::string name_;
  runtime::agent::FrameReader reader_;
};

// The /dev node of the virtio-serial port called `port_name` (/sys/class/virtio-ports/*/name),
// opened read-write; waits up to `timeout_ms` for it to appear (devtmpfs may lag the driver).
// -1 with `error` set when it does not.
int open_virtio_port(const std::string& port_name, int timeout_ms, std::string& path,
                     std::string& error);

// Listens on a unix socket at `path`, accepts one connection, closes the listener and removes
// the socket file. The connection's fd, or -1 with `error` set.
int accept_one_unix(const std::string& path, std::string& error);

// The agent's vsock port: the host connects to it through Firecracker's hybrid vsock
// (`CONNECT 1024`; runtime/src/firecracker/firecracker_vm.h, kAgentVsockPort).
inline constexpr unsigned kAgentVsockPort = 1024;

// True when the kernel command line holds the word `paddock.channel=vsock`: the agent then
// serves on vsock instead of the virtio-serial port.
bool wants_vsock(const std::string& cmdline);

// A listening stream socket, close-on-exec: AF_VSOCK on `port` of any CID (in a VM), or AF_UNIX
// at `path` (the host test mode; an old socket file there is removed first). -1 with `error`
// set when it cannot be made.
int listen_vsock(unsigned port, std::string& error);
int listen_unix(const std::string& path, std::string& error);

}  // namespace paddock::guest
