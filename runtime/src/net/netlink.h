// The kernel calls behind a VM's network, made in-process instead of through `ip` (each `ip` or
// `ip netns exec` is a fork and an exec: about 4 ms of CPU on a 2-core host, a dozen per job):
// network namespaces as `ip netns` names them, and links, addresses, routes and counters through
// rtnetlink with libnl-route (Debian's libnl-route-3).
//
// Everything here acts on the network namespace of the calling thread. in_netns() runs a function
// on a thread that joined a named namespace; what that function spawns starts in it too.
//
// Thread-safety: the free functions may be called concurrently; a Socket belongs to one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "paddock/base/expected.h"

struct nl_sock;

namespace paddock::runtime::net::netlink {

// Where `ip netns` keeps its names (a bind mount of each namespace), and where the jailer and the
// VMMs find them.
inline constexpr const char* kNetnsDir = "/run/netns";

// A new network namespace bound at /run/netns/<name>, as `ip netns add` makes it (the directory
// made a shared mount point once, so that later mount namespaces see the bind). Fails when the
// name is taken.
base::Status create_netns(const std::string& name);
// Unbinds and removes /run/netns/<name> (`ip netns delete`); the namespace itself goes when its
// last user (a VMM, an open TAP) does. false when there was no such name.
base::Expected<bool> delete_netns(const std::string& name);

// Runs fn on a new thread that joined namespace <name> (setns binds only the calling thread), or
// on the calling thread when name is "" (this process's namespace). Sockets fn opens, /proc/sys/net
// files it writes and processes it spawns belong to that namespace. A namespace that cannot be
// joined is a Failure; otherwise fn's own result.
base::Status in_netns(const std::string& name, const std::function<base::Status()>& fn);

// A /proc/sys file of the calling thread's namespace ("net/ipv4/ip_forward"), written.
base::Status write_sysctl(const std::string& key, const char* value);
// IPv6 off for `conf` ("all", "default" or an interface); nothing to do on a kernel without IPv6.
base::Status disable_ipv6(const std::string& conf);
// Brings a link up (SIOCSIFFLAGS).
base::Status link_up(const std::string& name);

struct LinkCounters {
  uint64_t rx_bytes = 0, rx_packets = 0, tx_bytes = 0, tx_packets = 0;
};

// A NETLINK_ROUTE socket in the calling thread's namespace. Errors name the operation and the
// kernel's reason ("add 172.30.0.1/30 to tap0: File exists").
class Socket {
 public:
  static base::Expected<Socket> open();
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&&) = delete;
  Socket(const Socket&) = delete;
  ~Socket();

  // An IPv4 address "a.b.c.d/n" on a link.
  base::Status add_address(const std::string& link, const std::string& cidr);
  // A veth pair: `name` here, `peer` here too or, with a namespace fd, moved into that namespace.
  base::Status add_veth(const std::string& name, const std::string& peer, int peer_netns_fd = -1);
  // The default route through a link (no gateway: the link's scope), added.
  base::Status add_default_route_dev(const std::string& link);
  // The default route via a gateway on a connected link, added or replaced.
  base::Status replace_default_route_via(const std::string& gateway);
  // false when there was no such link.
  base::Expected<bool> delete_link(const std::string& name);
  base::Expected<LinkCounters> counters(const std::string& link);
  base::Expected<std::vector<std::string>> link_names();

 private:
  explicit Socket(nl_sock* sock) : sock_(sock) {}
  nl_sock* sock_;
};

}  // namespace paddock::runtime::net::netlink
