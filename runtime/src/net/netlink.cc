#include "net/netlink.h"

#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>

#include "paddock/base/os_error.h"

namespace paddock::runtime::net::netlink {

namespace {

using base::fail;

std::string netns_path(const std::string& name) { return std::string(kNetnsDir) + "/" + name; }

// /run/netns exists and is a shared mount point, as `ip netns add` leaves it: a namespace bound
// there later shows in every mount namespace made from this one afterwards (a jail's included).
base::Status prepare_netns_dir() {
  static std::mutex mu;
  static bool ready = false;
  std::lock_guard lock(mu);
  if (ready) return {};
  if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST)
    return fail(base::error_message(std::string("mkdir ") + kNetnsDir));
  bool bound = false;
  while (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    // Not a mount point yet: bind it onto itself once, then share it.
    if (errno != EINVAL || bound)
      return fail(base::error_message(std::string("make ") + kNetnsDir + " a shared mount"));
    if (::mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0)
      return fail(base::error_message(std::string("bind ") + kNetnsDir + " onto itself"));
    bound = true;
  }
  ready = true;
  return {};
}

std::string nl_reason(int err) { return nl_geterror(err < 0 ? -err : err); }

// An nl_addr from text, released when it goes out of scope.
struct Addr {
  nl_addr* a = nullptr;
  ~Addr() {
    if (a != nullptr) nl_addr_put(a);
  }
};

base::Expected<unsigned> index_of(const std::string& link) {
  const unsigned index = ::if_nametoindex(link.c_str());
  if (index == 0) return fail(base::error_message("no link " + link));
  return index;
}

}  // namespace

base::Status create_netns(const std::string& name) {
  if (auto st = prepare_netns_dir(); !st) return st;
  const std::string path = netns_path(name);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return fail(base::error_message("create " + path));
  ::close(fd);
  // A thread of its own leaves this process's namespace (unshare acts on the calling thread only)
  // and binds the new one at the path; the thread ends, the bind keeps the namespace.
  auto made = std::async(std::launch::async, [&]() -> base::Status {
    if (::unshare(CLONE_NEWNET) != 0) return fail(base::error_message("unshare(CLONE_NEWNET)"));
    const std::string self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/ns/net";
    if (::mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0)
      return fail(base::error_message("bind " + self + " to " + path));
    return {};
  });
  auto st = made.get();
  if (!st) ::unlink(path.c_str());
  return st;
}

base::Expected<bool> delete_netns(const std::string& name) {
  const std::string path = netns_path(name);
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
    return fail(base::error_message("unmount " + path));
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return false;
    return fail(base::error_message("remove " + path));
  }
  return true;
}

base::Status in_netns(const std::string& name, const std::function<base::Status()>& fn) {
  if (name.empty()) return fn();
  auto task = std::async(std::launch::async, [&]() -> base::Status {
    const std::string path = netns_path(name);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(base::error_message("open " + path));
    const int joined = ::setns(fd, CLONE_NEWNET);
    const int setns_errno = errno;
    ::close(fd);
    if (joined != 0) return fail(base::error_message("setns " + path, setns_errno));
    return fn();
  });
  return task.get();  // the thread ends here, its namespace with it
}

base::Status write_sysctl(const std::string& key, const char* value) {
  const std::string path = "/proc/sys/" + key;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const size_t n = std::strlen(value);
  if (fd < 0 || ::write(fd, value, n) != static_cast<ssize_t>(n)) {
    auto message = base::error_message("write " + std::string(value) + " to " + path);
    if (fd >= 0) ::close(fd);
    return fail(std::move(message));
  }
  ::close(fd);
  return {};
}

base::Status disable_ipv6(const std::string& conf) {
  // A kernel booted with ipv6.disable=1 has no IPv6 at all, and nothing to switch off.
  if (!std::filesystem::exists("/proc/sys/net/ipv6")) return {};
  return write_sysctl("net/ipv6/conf/" + conf + "/disable_ipv6", "1");
}

base::Status link_up(const std::string& name) {
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return fail(base::error_message("socket"));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  bool ok = ::ioctl(sock, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ok = ::ioctl(sock, SIOCSIFFLAGS, &ifr) == 0;
  }
  auto message = ok ? std::string() : base::error_message("bring " + name + " up");
  ::close(sock);
  if (!ok) return fail(std::move(message));
  return {};
}

// ---- Socket ----

base::Expected<Socket> Socket::open() {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) return fail("netlink: out of memory for a socket");
  if (int err = nl_connect(sock, NETLINK_ROUTE); err < 0) {
    nl_socket_free(sock);
    return fail("netlink: connect: " + nl_reason(err));
  }
  return Socket(sock);
}

Socket::Socket(Socket&& other) noexcept : sock_(other.sock_) { other.sock_ = nullptr; }

Socket::~Socket() {
  if (sock_ != nullptr) nl_socket_free(sock_);  // closes it
}

base::Status Socket::add_address(const std::string& link, const std::string& cidr) {
  auto index = index_of(link);
  if (!index) return fail("add " + cidr + ": " + index.error().message);
  Addr local;
  if (int err = nl_addr_parse(cidr.c_str(), AF_INET, &local.a); err < 0)
    return fail("address " + cidr + ": " + nl_reason(err));
  rtnl_addr* addr = rtnl_addr_alloc();
  if (addr == nullptr) return fail("add " + cidr + " to " + link + ": out of memory");
  rtnl_addr_set_ifindex(addr, static_cast<int>(*index));
  rtnl_addr_set_family(addr, AF_INET);
  int err = rtnl_addr_set_local(addr, local.a);
  if (err >= 0) {
    rtnl_addr_set_prefixlen(addr, static_cast<int>(nl_addr_get_prefixlen(local.a)));
    err = rtnl_addr_add(sock_, addr, 0);
  }
  rtnl_addr_put(addr);
  if (err < 0) return fail("add " + cidr + " to " + link + ": " + nl_reason(err));
  return {};
}

base::Status Socket::add_veth(const std::string& name, const std::string& peer, int peer_netns_fd) {
  rtnl_link* link = rtnl_link_veth_alloc();
  if (link == nullptr) return fail("veth " + name + ": out of memory");
  rtnl_link_set_name(link, name.c_str());
  rtnl_link* other = rtnl_link_veth_get_peer(link);
  rtnl_link_set_name(other, peer.c_str());
  if (peer_netns_fd >= 0) rtnl_link_set_ns_fd(other, peer_netns_fd);
  const int err = rtnl_link_add(sock_, link, NLM_F_CREATE | NLM_F_EXCL);
  rtnl_link_put(other);
  rtnl_link_put(link);
  if (err < 0) return fail("add veth pair " + name + "/" + peer + ": " + nl_reason(err));
  return {};
}

namespace {

// The IPv4 default route in the main table, to one next hop, added (or replaced).
int default_route(nl_sock* sock, rtnl_nexthop* hop, uint8_t scope, int flags) {
  Addr dst;
  if (int err = nl_addr_parse("0.0.0.0/0", AF_INET, &dst.a); err < 0) {
    rtnl_route_nh_free(hop);
    return err;
  }
  rtnl_route* route = rtnl_route_alloc();
  if (route == nullptr) {
    rtnl_route_nh_free(hop);
    return -NLE_NOMEM;
  }
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_table(route, RT_TABLE_MAIN);
  rtnl_route_set_type(route, RTN_UNICAST);
  rtnl_route_set_protocol(route, RTPROT_BOOT);
  rtnl_route_set_scope(route, scope);
  int err = rtnl_route_set_dst(route, dst.a);
  if (err >= 0) {
    rtnl_route_add_nexthop(route, hop);  // the route owns it now
    err = rtnl_route_add(sock, route, flags);
  } else {
    rtnl_route_nh_free(hop);
  }
  rtnl_route_put(route);
  return err;
}

}  // namespace

base::Status Socket::add_default_route_dev(const std::string& link) {
  auto index = index_of(link);
  if (!index) return fail("default route: " + index.error().message);
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  if (hop == nullptr) return fail("default route dev " + link + ": out of memory");
  rtnl_route_nh_set_ifindex(hop, static_cast<int>(*index));
  if (int err = default_route(sock_, hop, RT_SCOPE_LINK, NLM_F_CREATE | NLM_F_EXCL); err < 0)
    return fail("default route dev " + link + ": " + nl_reason(err));
  return {};
}

base::Status Socket::replace_default_route_via(const std::string& gateway) {
  Addr gw;
  if (int err = nl_addr_parse(gateway.c_str(), AF_INET, &gw.a); err < 0)
    return fail("gateway " + gateway + ": " + nl_reason(err));
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  if (hop == nullptr) return fail("default route via " + gateway + ": out of memory");
  rtnl_route_nh_set_gateway(hop, gw.a);  // takes its own reference
  if (int err = default_route(sock_, hop, RT_SCOPE_UNIVERSE, NLM_F_CREATE | NLM_F_REPLACE); err < 0)
    return fail("default route via " + gateway + ": " + nl_reason(err));
  return {};
}

base::Expected<bool> Socket::delete_link(const std::string& name) {
  rtnl_link* link = rtnl_link_alloc();
  if (link == nullptr) return fail("delete link " + name + ": out of memory");
  rtnl_link_set_name(link, name.c_str());
  const int err = rtnl_link_delete(sock_, link);
  rtnl_link_put(link);
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return false;
  if (err < 0) return fail("delete link " + name + ": " + nl_reason(err));
  return true;
}

base::Expected<LinkCounters> Socket::counters(const std::string& name) {
  rtnl_link* link = nullptr;
  if (int err = rtnl_link_get_kernel(sock_, 0, name.c_str(), &link); err < 0)
    return fail("counters of " + name + ": " + nl_reason(err));
  LinkCounters c;
  c.rx_bytes = rtnl_link_get_stat(link, RTNL_LINK_RX_BYTES);
  c.rx_packets = rtnl_link_get_stat(link, RTNL_LINK_RX_PACKETS);
  c.tx_bytes = rtnl_link_get_stat(link, RTNL_LINK_TX_BYTES);
  c.tx_packets = rtnl_link_get_stat(link, RTNL_LINK_TX_PACKETS);
  rtnl_link_put(link);
  return c;
}

base::Expected<std::vector<std::string>> Socket::link_names() {
  nl_cache* cache = nullptr;
  if (int err = rtnl_link_alloc_cache(sock_, AF_UNSPEC, &cache); err < 0)
    return fail("list links: " + nl_reason(err));
  std::vector<std::string> names;
  for (nl_object* o = nl_cache_get_first(cache); o != nullptr; o = nl_cache_get_next(o)) {
    const char* n = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(o));
    if (n != nullptr) names.emplace_back(n);
  }
  nl_cache_free(cache);
  return names;
}

}  // namespace paddock::runtime::net::netlink
