#include "refresh.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "paddock/base/os_error.h"

namespace paddock::guest {
namespace {

namespace agent = runtime::agent;
using base::error_message;

constexpr const char* kRandomDevice = "/dev/urandom";
constexpr const char* kBootIdPath = "/proc/sys/kernel/random/boot_id";

// Adds `entropy` to the input pool, credited in full (bytes * 8 bits), then makes the CRNG take a
// new key from the pool at once. Needs CAP_SYS_ADMIN. Empty on success, else the step and errno.
std::string add_entropy_and_reseed(const std::string& entropy) {
  const int fd = ::open(kRandomDevice, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return error_message(std::string("open ") + kRandomDevice);
  // struct rand_pool_info, then the bytes; uint32_t storage keeps its alignment.
  std::vector<uint32_t> storage(
      (sizeof(rand_pool_info) + entropy.size() + sizeof(uint32_t) - 1) / sizeof(uint32_t), 0);
  auto* info = reinterpret_cast<rand_pool_info*>(storage.data());
  info->entropy_count = static_cast<int>(entropy.size() * 8);
  info->buf_size = static_cast<int>(entropy.size());
  std::memcpy(reinterpret_cast<char*>(storage.data()) + sizeof(rand_pool_info), entropy.data(),
              entropy.size());
  std::string error;
  if (::ioctl(fd, RNDADDENTROPY, info) != 0) {
    error = error_message(std::string("ioctl RNDADDENTROPY ") + kRandomDevice);
  } else if (::ioctl(fd, RNDRESEEDCRNG) != 0) {
    // ENODATA: the CRNG is not ready yet (it is once 256 bits were credited).
    error = error_message(std::string("ioctl RNDRESEEDCRNG ") + kRandomDevice);
  }
  // The bytes are in the kernel now; leave no copy here.
  ::explicit_bzero(storage.data(), storage.size() * sizeof(uint32_t));
  ::close(fd);
  return error;
}

std::string set_clock(uint64_t unix_time_ns) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(unix_time_ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(unix_time_ns % 1'000'000'000);
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) {
    return error_message("clock_settime CLOCK_REALTIME");
  }
  return {};
}

std::string set_hostname(const std::string& name) {
  if (::sethostname(name.data(), name.size()) != 0) return error_message("sethostname " + name);
  return {};
}

// The boot id without its newline. Read here for the first time in a guest's life (see refresh.h).
std::string read_boot_id(std::string& out) {
  const int fd = ::open(kBootIdPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error_message(std::string("open ") + kBootIdPath);
  char buf[agent::limits::kMaxBootId + 1];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (n < 0) return error_message(std::string("read ") + kBootIdPath, err);
  out.assign(buf, static_cast<size_t>(n));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\0')) out.pop_back();
  if (out.empty()) return std::string("read ") + kBootIdPath + ": empty";
  if (out.size() > agent::limits::kMaxBootId) {
    return std::string("read ") + kBootIdPath + ": longer than " +
           std::to_string(agent::limits::kMaxBootId) + " bytes";
  }
  return {};
}

std::string read_hostname(std::string& out) {
  char buf[agent::limits::kMaxHostname + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return error_message("gethostname");
  out = buf;
  return {};
}

}  // namespace

Refresh refresh_identity(const agent::RefreshCommand& command, bool apply) {
  Refresh r;
  r.identity.applied = apply;
  // Order matters: the boot id is made from the CRNG on its first read, so it is read only after
  // the reseed. The clock and hostname come before the answer so that the host never sees a
  // refreshed guest with the snapshot's clock or name.
  std::string error;
  if (apply) {
    error = add_entropy_and_reseed(command.entropy);
    if (error.empty()) error = set_clock(command.unix_time_ns);
    if (error.empty()) error = set_hostname(command.hostname);
  }
  if (error.empty()) error = read_boot_id(r.identity.boot_id);
  if (error.empty()) error = read_hostname(r.identity.hostname);
  r.ok = error.empty();
  r.error = std::move(error);
  return r;
}

}  // namespace paddock::guest
