#include "loopback_capture.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace paddock::testing {
namespace {

constexpr size_t kMaxPayload = 64 << 20;

std::string errno_message(const std::string& what) { return what + ": " + std::strerror(errno); }

uint16_t be16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

}  // namespace

LoopbackCapture::LoopbackCapture(std::set<uint16_t> ports) : ports_(std::move(ports)) {
  fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (fd_ < 0) throw std::runtime_error(errno_message("socket(AF_PACKET) (needs root)"));
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
  if (addr.sll_ifindex == 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string message = errno_message("bind AF_PACKET socket to lo");
    ::close(fd_);
    throw std::runtime_error(message);
  }
  thread_ = std::thread([this] { run(); });
}

LoopbackCapture::~LoopbackCapture() {
  stop_.store(true);
  thread_.join();
  ::close(fd_);
}

void LoopbackCapture::run() {
  std::string buf(70'000, '\0');
  while (!stop_.load()) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 14 + 20 + 20) continue;
    const auto* b = reinterpret_cast<const unsigned char*>(buf.data());
    // lo frames carry an (all-zero) Ethernet header: IPv4 only (the tests bind 127.0.0.1).
    if (be16(b + 12) != ETH_P_IP) continue;
    const auto* ip = b + 14;
    const size_t ihl = (ip[0] & 0x0f) * 4u;
    if (ip[9] != IPPROTO_TCP) continue;
    const size_t ip_len = be16(ip + 2);
    if (14 + ip_len > static_cast<size_t>(n) || ihl + 20 > ip_len) continue;
    const auto* tcp = ip + ihl;
    if (ports_.count(be16(tcp)) == 0 && ports_.count(be16(tcp + 2)) == 0) continue;
    const size_t tcp_len = (tcp[12] >> 4) * 4u;
    if (ihl + tcp_len > ip_len) continue;
    std::lock_guard lock(mu_);
    ++packets_;
    const size_t len = ip_len - ihl - tcp_len;
    if (payload_.size() + len <= kMaxPayload) {
      payload_.append(reinterpret_cast<const char*>(tcp + tcp_len), len);
    }
  }
}

std::string LoopbackCapture::payload() {
  std::lock_guard lock(mu_);
  return payload_;
}

size_t LoopbackCapture::packets() {
  std::lock_guard lock(mu_);
  return packets_;
}

uint16_t port_of(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("no port in " + endpoint);
  return static_cast<uint16_t>(std::stoul(endpoint.substr(colon + 1)));
}

}  // namespace paddock::testing
