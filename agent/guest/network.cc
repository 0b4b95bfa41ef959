#include "network.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "paddock/base/os_error.h"
#include "paddock/runtime/network.h"

namespace paddock::guest {
namespace {

sockaddr_in inet(const char* address) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  ::inet_pton(AF_INET, address, &sin.sin_addr);
  return sin;
}

template <class T>
void put(T& field, const sockaddr_in& sin) {
  std::memcpy(&field, &sin, sizeof sin);
}

bool set_up(int sock, const char* name, std::vector<std::string>& errors) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) {
    if (errno != ENODEV) errors.push_back(base::error_message(std::string("get flags of ") + name));
    return false;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) {
    errors.push_back(base::error_message(std::string("bring ") + name + " up"));
    return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> configure_network(std::string& configured) {
  namespace net = runtime::net;
  std::vector<std::string> errors;
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return {base::error_message("socket for network setup")};
  set_up(sock, "lo", errors);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "eth0", IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) {
    ::close(sock);
    configured = "no eth0: no network";
    return errors;
  }
  put(ifr.ifr_addr, inet(net::kGuestAddress));
  if (::ioctl(sock, SIOCSIFADDR, &ifr) != 0) {
    errors.push_back(base::error_message("set the address of eth0"));
  }
  const uint32_t mask = htonl(~uint32_t{0} << (32 - net::kGuestPrefix));
  sockaddr_in netmask{};
  netmask.sin_family = AF_INET;
  netmask.sin_addr.s_addr = mask;
  put(ifr.ifr_netmask, netmask);
  if (::ioctl(sock, SIOCSIFNETMASK, &ifr) != 0) {
    errors.push_back(base::error_message("set the netmask of eth0"));
  }
  if (set_up(sock, "eth0", errors)) {
    rtentry route{};
    put(route.rt_dst, inet("0.0.0.0"));
    put(route.rt_genmask, inet("0.0.0.0"));
    put(route.rt_gateway, inet(net::kGatewayAddress));
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    char dev[] = "eth0";
    route.rt_dev = dev;
    if (::ioctl(sock, SIOCADDRT, &route) != 0 && errno != EEXIST) {
      errors.push_back(
          base::error_message("add the default route via " + std::string(net::kGatewayAddress)));
    }
  }
  ::close(sock);
  configured = std::string("eth0 ") + net::kGuestAddress + "/" + std::to_string(net::kGuestPrefix) +
               " via " + net::kGatewayAddress;
  return errors;
}

}  // namespace paddock::guest
