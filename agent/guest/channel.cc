#include "channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "paddock/base/os_error.h"

namespace paddock::guest {

Channel::Channel(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}

Channel::~Channel() {
  if (fd_ >= 0) ::close(fd_);
}

Channel::Read Channel::pump(std::string& error) {
  char buf[64u << 10];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) {
      reader_.feed(std::string_view(buf, static_cast<size_t>(n)));
      return Read::kData;
    }
    if (n == 0) {
      reader_.reset();
      return Read::kNoPeer;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Read::kData;
    error = base::error_message("read " + name_);
    return Read::kError;
  }
}

std::string Channel::send(const std::string& frame) {
  size_t done = 0;
  while (done < frame.size()) {
    const ssize_t n = ::write(fd_, frame.data() + done, frame.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, 100);
    } else {
      return base::error_message("write " + name_);
    }
  }
  return {};
}

int open_virtio_port(const std::string& port_name, int timeout_ms, std::string& path,
                     std::string& error) {
  constexpr const char* kPorts = "/sys/class/virtio-ports";
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string seen;
  for (;;) {
    seen.clear();
    if (DIR* d = ::opendir(kPorts)) {
      while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream in(std::string(kPorts) + "/" + e->d_name + "/name");
        std::string name;
        std::getline(in, name);
        seen += std::string(seen.empty() ? "" : ", ") + e->d_name + "=" +
                (name.empty() ? "(unnamed)" : name);
        if (name != port_name) continue;
        path = std::string("/dev/") + e->d_name;
        const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0) {
          ::closedir(d);
          return fd;
        }
        if (errno != ENOENT) {  // ENOENT: devtmpfs has not made the node yet
          error = base::error_message("open " + path);
          ::closedir(d);
          return -1;
        }
      }
      ::closedir(d);
    }
    if (std::chrono::steady_clock::now() >= end) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  error = "no virtio-serial port named " + port_name + " after " + std::to_string(timeout_ms) +
          " ms (ports: " + (seen.empty() ? "none" : seen) +
          "); the VM needs -device virtio-serial-device (microvm) or virtio-serial-pci, and "
          "-device virtserialport,name=" +
          port_name + ", and the kernel virtio_console";
  return -1;
}

int listen_unix(const std::string& path, std::string& error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    error = "listen " + path + ": path too long for a unix socket";
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) {
    error = base::error_message("socket");
    return -1;
  }
  ::unlink(path.c_str());
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 4) != 0) {
    error = base::error_message("listen " + path);
    ::close(listener);
    return -1;
  }
  return listener;
}

int listen_vsock(unsigned port, std::string& error) {
  const std::string name = "vsock port " + std::to_string(port);
  const int listener = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) {
    error = base::error_message(
        "socket AF_VSOCK (the kernel needs vsock and its virtio "
        "transport)");
    return -1;
  }
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 4) != 0) {
    error = base::error_message("listen " + name);
    ::close(listener);
    return -1;
  }
  return listener;
}

bool wants_vsock(const std::string& cmdline) {
  std::istringstream words(cmdline);
  for (std::string w; words >> w;) {
    if (w == "paddock.channel=vsock") return true;
  }
  return false;
}

int accept_one_unix(const std::string& path, std::string& error) {
  const int listener = listen_unix(path, error);
  if (listener < 0) return -1;
  int fd;
  do {
    fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) error = base::error_message("accept " + path);
  ::close(listener);
  ::unlink(path.c_str());
  return fd;
}

}  // namespace paddock::guest
