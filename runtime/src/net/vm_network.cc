#include "net/vm_network.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process.hpp>
#include <cstring>
#include <filesystem>
#include <functional>
#include <sstream>

#include <spdlog/spdlog.h>

#include "net/netlink.h"
#include "paddock/base/os_error.h"

namespace paddock::runtime::net {

namespace bp = boost::process;
namespace fs = std::filesystem;

namespace {

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs fn on a thread in namespace `ns` ("" is this process's: the calling thread). fn's own
// error, or a NetworkSetup error when the namespace cannot be joined.
Status in_ns(const std::string& ns, const std::function<Status()>& fn) {
  std::optional<Error> failed;
  auto joined_ns = netlink::in_netns(ns, [&]() -> base::Status {
    if (auto st = fn(); !st) {
      failed = std::move(st).error();
      return base::fail("");
    }
    return {};
  });
  if (failed) return *std::move(failed);
  if (!joined_ns) return Error::network_setup(joined_ns.error().message);
  return {};
}

// Runs steps in order, up to the first that fails.
base::Status in_order(std::initializer_list<std::function<base::Status()>> steps) {
  for (const auto& step : steps) {
    if (auto st = step(); !st) return st;
  }
  return {};
}

// A NetworkSetup error for a kernel call that failed, in `context` ("TAP for vm 'x'").
Status setup(const base::Status& st, const std::string& context) {
  if (st) return {};
  return Error::network_setup(context + ": " + st.error().message);
}

// Opens /dev/net/tun as `name` in the calling thread's namespace. The TAP lives as long as the fd
// is open; with an owner it is made persistent and owned by owner's uid and gid, and the fd is
// closed (the value is then -1, not an fd).
base::Expected<int> open_tap(const std::string& name, std::optional<TapOwner> owner) {
  const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return base::fail(base::error_message("open /dev/net/tun"));
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  const char* failed = nullptr;
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    failed = "TUNSETIFF ";
  } else if (owner) {
    // Owner and group first: a persistent TAP without them could be attached by anyone.
    if (::ioctl(fd, TUNSETOWNER, static_cast<unsigned long>(owner->uid)) != 0) {
      failed = "TUNSETOWNER ";
    } else if (::ioctl(fd, TUNSETGROUP, static_cast<unsigned long>(owner->gid)) != 0) {
      failed = "TUNSETGROUP ";
    } else if (::ioctl(fd, TUNSETPERSIST, 1UL) != 0) {
      failed = "TUNSETPERSIST ";
    }
  }
  if (failed != nullptr) {
    auto message = base::error_message(failed + name);
    ::close(fd);
    return base::fail(std::move(message));
  }
  if (owner) {
    ::close(fd);  // persistent: the TAP stays, for its owner to open by name
    return -1;
  }
  return fd;
}

// A Firewall error (the host's: retryable) for a firewall command that failed.
Error firewall_failed(const std::vector<std::string>& argv, const std::string& ns,
                      const NetworkManager::Ran& r) {
  return Error::firewall(Cause::kHostIo, joined(argv) + (ns.empty() ? "" : " in " + ns) +
                                             " failed (exit " + std::to_string(r.status) +
                                             "): " + r.err);
}

}  // namespace

// ---- NetworkManager ----

NetworkManager::NetworkManager(NetworkSettings settings, Cidr pool)
    : settings_(std::move(settings)), pool_cidr_(pool), pool_(pool) {}

Result<std::unique_ptr<NetworkManager>> NetworkManager::open(NetworkSettings settings) {
  if (auto st = validate_settings(settings); !st) return st.error();
  auto pool = parse_cidr(settings.pool);  // validated above
  std::unique_ptr<NetworkManager> m(new NetworkManager(std::move(settings), *pool));
  for (const char* tool : {"iptables-restore", "iptables-save"}) {
    if (bp::search_path(tool).empty()) {
      return Error::unsupported(std::string("per-VM networks need `") + tool +
                                "` (apt-get install iptables; tools/install-deps.sh does)");
    }
  }
  // IPv6 is switched off in every VM's namespace by sysctl; where ip6tables-restore exists, its
  // default-drop policy holds too (if something switched IPv6 back on).
  m->ip6tables_ = fs::exists("/proc/sys/net/ipv6") && !bp::search_path("ip6tables-restore").empty();
  if (!m->settings_.host_netns.empty() &&
      !fs::exists(std::string(netlink::kNetnsDir) + "/" + m->settings_.host_netns)) {
    return Error::network_config("host namespace '" + m->settings_.host_netns +
                                 "' does not exist (no /run/netns/" + m->settings_.host_netns +
                                 ")");
  }
  if (size_t n = m->sweep()) {
    spdlog::warn("network: removed {} namespace(s) named {}-* left by an earlier crash", n,
                 m->settings_.prefix);
  }
  return m;
}

NetworkManager::Ran NetworkManager::run(const std::vector<std::string>& argv,
                                        const std::string& input) {
  commands_.fetch_add(1);
  Ran r;
  // posix_spawn with close-on-exec pipes, not a library's fork: a QEMU that another thread starts
  // at the same moment must not inherit these pipes (it would hold them open for its whole life,
  // and the read below would never see the end).
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return Ran{-1, "", base::error_message("pipe")};
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]);
    return Ran{-1, "", base::error_message("pipe")};
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]), ::close(out[0]), ::close(out[1]);
    return Ran{-1, "", base::error_message("pipe")};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]), ::close(out[1]), ::close(err[1]);
  if (spawned != 0) {
    ::close(in[1]), ::close(out[0]), ::close(err[0]);
    return Ran{-1, "", base::error_message("cannot run " + argv[0], spawned)};
  }
  // Feed stdin and drain stdout and stderr together, so no pipe fills up and blocks the child. A
  // child that exits without reading its input must not kill us with SIGPIPE: block it in this
  // thread while writing and discard one that is raised (it is directed at this thread).
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  bool broken_pipe = false;
  size_t written = 0;
  int to_child = in[1];
  if (input.empty()) {
    ::close(to_child);
    to_child = -1;
  }
  bool out_open = true, err_open = true;
  char buf[4096];
  while (out_open || err_open || to_child >= 0) {
    pollfd fds[3] = {{out_open ? out[0] : -1, POLLIN, 0},
                     {err_open ? err[0] : -1, POLLIN, 0},
                     {to_child, POLLOUT, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        (i == 0 ? out_open : err_open) = false;
      }
    }
    if (to_child >= 0 && fds[2].revents != 0) {
      const ssize_t n = ::write(to_child, input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 && errno == EPIPE) broken_pipe = true;
      if ((n < 0 && errno != EINTR && errno != EAGAIN) || written == input.size()) {
        ::close(to_child);
        to_child = -1;
      }
    }
  }
  if (to_child >= 0) ::close(to_child);
  ::close(out[0]), ::close(err[0]);
  if (broken_pipe) {
    const timespec now{0, 0};
    (void)::sigtimedwait(&pipe_set, nullptr, &now);
  }
  ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = trimmed(r.err);
  return r;
}

size_t NetworkManager::sweep() {
  size_t removed = 0;
  const std::string ns_prefix = settings_.prefix + "-vm";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(netlink::kNetnsDir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(ns_prefix, 0) != 0) continue;
    // Deleting the namespace deletes its veth pair (both ends) and its TAP.
    auto deleted = netlink::delete_netns(name);
    if (deleted && *deleted)
      ++removed;
    else if (!deleted)
      spdlog::warn("network sweep: {}", deleted.error().message);
  }
  const std::string& host = settings_.host_netns;
  auto swept = netlink::in_netns(host, [&]() -> base::Status {
    // Host ends whose namespace went some other way.
    auto sock = netlink::Socket::open();
    if (!sock) return sock.error();
    auto links = sock->link_names();
    if (!links) return links.error();
    for (const auto& name : *links) {
      if (name.rfind(settings_.prefix + "h", 0) != 0) continue;
      if (auto gone = sock->delete_link(name); !gone)
        spdlog::warn("network sweep: {}", gone.error().message);
    }
    // Host rules carry the comment "<prefix>:<n>": delete each by its own spec.
    auto saved = run({"iptables-save"});
    if (saved.status != 0) return base::fail("iptables-save: " + saved.err);
    std::istringstream lines(saved.out);
    std::string line, table, restore;
    const std::string mark = "--comment " + settings_.prefix + ":";
    const std::string quoted_mark = "--comment \"" + settings_.prefix + ":";
    while (std::getline(lines, line)) {
      if (!line.empty() && line[0] == '*') {
        if (!restore.empty() && restore.back() != '\n') restore += "\n";
        table = line;
        continue;
      }
      if (line.rfind("-A ", 0) == 0 &&
          (line.find(mark) != std::string::npos || line.find(quoted_mark) != std::string::npos)) {
        restore += table + "\n-D " + line.substr(3) + "\nCOMMIT\n";
      }
    }
    if (!restore.empty()) {
      auto r = run({"iptables-restore", "--noflush", "-w"}, restore);
      if (r.status != 0) return base::fail("host rules: " + r.err);
    }
    return {};
  });
  if (!swept) spdlog::warn("network sweep: {}", swept.error().message);
  return removed;
}

Status NetworkManager::prepare_host() {
  std::lock_guard lock(host_mu_);
  if (host_ready_) return {};
  auto fwd = netlink::in_netns(settings_.host_netns,
                               [] { return netlink::write_sysctl("net/ipv4/ip_forward", "1"); });
  if (!fwd) {
    return Error::network_setup("IPv4 forwarding on in the host namespace: " + fwd.error().message);
  }
  host_ready_ = true;
  return {};
}

std::vector<Cidr> NetworkManager::always_denied() {
  // No list of the host's addresses here: the host is denied by interface in the host namespace
  // (host_ruleset), which no address added later can escape. What is left are destinations on
  // other machines.
  std::vector<Cidr> out;
  const auto& p = settings_.policy;
  if (!p.allow_link_local) out.push_back(*parse_cidr("169.254.0.0/16"));
  // Every VM's veth address: VMs never reach each other (the host drops it too; here it is
  // counted in egress_blocked).
  out.push_back(pool_cidr_);
  for (const auto& d : p.deny) {
    if (auto c = parse_cidr(d)) out.push_back(*c);
  }
  return out;
}

Result<std::unique_ptr<VmNetwork>> NetworkManager::create(const std::string& vm_id,
                                                          std::optional<TapOwner> owner) {
  if (auto st = validate_egress(vm_id, {}); !st) return st.error();
  const uint64_t n = next_.fetch_add(1);
  std::unique_ptr<VmNetwork> v(new VmNetwork(*this, n, vm_id));
  if (auto made = netlink::create_netns(v->netns_); !made) {
    return Error::network_setup("namespace " + v->netns_ + ": " + made.error().message);
  }
  v->netns_made_ = true;
  RulesetInput rules;
  rules.comment = settings_.prefix + ":" + std::to_string(n);
  // One thread in the new namespace does it all, without a helper process but the firewall's.
  auto st = in_ns(v->netns_, [&]() -> Status {
    const std::string context = "network of vm '" + vm_id + "' (" + v->netns_ + ")";
    // IPv6 off before any interface but lo exists: "default" is what every interface made
    // afterwards (the TAP, the sink pair, eth1) starts with.
    if (auto st = setup(netlink::disable_ipv6("all"), context + ", IPv6 off"); !st) return st;
    if (auto st = setup(netlink::disable_ipv6("default"), context + ", IPv6 off"); !st) return st;
    auto tap = open_tap(kTapName, owner);
    if (!tap) return Error::network_setup("TAP for vm '" + vm_id + "': " + tap.error().message);
    if (owner) {
      v->persistent_tap_ = true;
    } else {
      v->tap_fd_ = *tap;
    }
    // Forwarding on, so the guest's packets reach the FORWARD chain, where they are allowed or
    // counted and dropped. Until the job allows egress, the only default route leads to a sink (a
    // veth whose peer is down: what is sent there goes nowhere), not out. (A dummy device would
    // do, but its module is not everywhere.)
    auto sock = netlink::Socket::open();
    if (!sock) return Error::network_setup(context + ": " + sock.error().message);
    const std::string gw = std::string(kGatewayAddress) + "/" + std::to_string(kGuestPrefix);
    auto made = in_order({
        [] { return netlink::write_sysctl("net/ipv4/ip_forward", "1"); },
        [] { return netlink::link_up("lo"); },
        [&] { return sock->add_address(kTapName, gw); },
        [] { return netlink::link_up(kTapName); },
        [&] { return sock->add_veth("void0", "void1"); },
        [] { return netlink::link_up("void0"); },
        [&] { return sock->add_default_route_dev("void0"); },
    });
    if (auto st = setup(made, context); !st) return st;
    const std::vector<std::string> restore = {"iptables-restore", "-w"};
    if (auto r = run(restore, vm_ruleset(rules)); r.status != 0)
      return firewall_failed(restore, v->netns_, r);
    if (ip6tables_) {
      const std::vector<std::string> restore6 = {"ip6tables-restore", "-w"};
      if (auto r = run(restore6, vm_ipv6_ruleset()); r.status != 0)
        return firewall_failed(restore6, v->netns_, r);
    }
    return {};
  });
  if (!st) return st.error();
  return v;
}

// ---- VmNetwork ----

VmNetwork::VmNetwork(NetworkManager& manager, uint64_t n, std::string vm_id)
    : manager_(manager),
      n_(n),
      vm_id_(std::move(vm_id)),
      netns_(manager.settings().prefix + "-vm" + std::to_string(n)),
      host_link_(manager.settings().prefix + "h" + std::to_string(n)) {}

VmNetwork::~VmNetwork() {
  if (auto st = teardown(); !st) {
    spdlog::error("network of vm '{}': {}", vm_id_, st.error().message());
  }
}

Status VmNetwork::allow_egress(const std::vector<EgressRule>& rules) {
  if (auto st = validate_egress(vm_id_, rules); !st) return st;
  if (rules.empty()) return {};
  if (lease_) return Error::network_config("egress of vm '" + vm_id_ + "' is already set");
  const auto allowed = intersect(rules, manager_.settings().policy.allow);
  if (allowed.empty()) {
    // Nothing the operator permits: the VM stays without a route out.
    spdlog::info("vm '{}': none of its {} egress rule(s) is within the operator's policy", vm_id_,
                 rules.size());
    return {};
  }
  if (auto st = manager_.prepare_host(); !st) return st;
  lease_ = manager_.pool_.acquire();
  if (!lease_) {
    return Error::network_setup(Cause::kResourceExhausted,
                                "address pool " + manager_.settings().pool + " is exhausted (" +
                                    std::to_string(manager_.pool_.capacity()) +
                                    " VMs with egress)");
  }
  const std::string host_addr = ip_str(lease_->host) + "/30";
  const std::string vm_addr = ip_str(lease_->vm) + "/30";
  const std::string& host_ns = manager_.settings().host_netns;
  const std::string comment = manager_.settings().prefix + ":" + std::to_string(n_);
  HostRulesInput host;
  host.link = host_link_;
  host.vm_address = ip_str(lease_->vm);
  host.link_prefix = manager_.settings().prefix + "h";
  host.deny_host = !manager_.settings().policy.allow_host;
  host.comment = comment;
  if (auto problem = host_rules_problem(host))
    return Error::firewall(Cause::kInternal, "host rules: " + *problem);
  // Host side: the veth pair (its VM end, eth1, moved into the VM's namespace, where IPv6 is off
  // for every new interface; the host end gets IPv6 switched off before it goes up, so it never
  // has an IPv6 address, not even a link-local one); then the rules that forward this VM's
  // traffic to other machines and masquerade it behind the host's address, and drop what it
  // sends to the host itself and to other VMs (host_ruleset).
  auto host_side = in_ns(host_ns, [&]() -> Status {
    const std::string context = "host end " + host_link_ + " of vm '" + vm_id_ + "'";
    const std::string vm_ns_path = std::string(netlink::kNetnsDir) + "/" + netns_;
    const int vm_ns = ::open(vm_ns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (vm_ns < 0) return Error::network_setup(base::error_message("open " + vm_ns_path));
    auto sock = netlink::Socket::open();
    veth_made_ = true;  // set before the call: the pair may exist even when it reports a failure
    auto veth = sock ? sock->add_veth(host_link_, "eth1", vm_ns) : base::Status(sock.error());
    ::close(vm_ns);
    if (auto st = setup(veth, context); !st) return st;
    auto made = in_order({
        [&] { return sock->add_address(host_link_, host_addr); },
        [&] { return netlink::disable_ipv6(host_link_); },
        [&] { return netlink::link_up(host_link_); },
    });
    if (auto st = setup(made, context); !st) return st;
    host_rules_ = host_ruleset(host);
    const std::vector<std::string> restore = {"iptables-restore", "--noflush", "-w"};
    if (auto r = manager_.run(restore, host_rules_); r.status != 0) {
      host_rules_.clear();
      return Error::firewall(Cause::kHostIo, joined(restore) + " (host rules) failed (exit " +
                                                 std::to_string(r.status) + "): " + r.err);
    }
    return {};
  });
  if (!host_side) return host_side;
  // The VM's side: eth1's address, the default route out through it, and the VM's firewall,
  // replaced in one call.
  RulesetInput in;
  in.uplink = "eth1";
  in.allowed = allowed;
  in.denied = manager_.always_denied();
  in.comment = comment;
  return in_ns(netns_, [&]() -> Status {
    const std::string context = "eth1 of vm '" + vm_id_ + "' (" + netns_ + ")";
    auto sock = netlink::Socket::open();
    if (!sock) return Error::network_setup(context + ": " + sock.error().message);
    auto made = in_order({
        [&] { return sock->add_address("eth1", vm_addr); },
        [] { return netlink::link_up("eth1"); },
        [&] { return sock->replace_default_route_via(ip_str(lease_->host)); },
    });
    if (auto st = setup(made, context); !st) return st;
    const std::vector<std::string> restore = {"iptables-restore", "-w"};
    if (auto r = manager_.run(restore, vm_ruleset(in)); r.status != 0)
      return firewall_failed(restore, netns_, r);
    return {};
  });
}

Result<NetworkUsage> VmNetwork::usage() {
  NetworkUsage u;
  auto st = in_ns(netns_, [&]() -> Status {
    auto sock = netlink::Socket::open();
    if (!sock) return Error::network_setup("usage: " + sock.error().message);
    auto c = sock->counters(kTapName);
    if (!c) return Error::network_setup("usage: " + c.error().message);
    // The TAP's receive side is what the guest sent.
    u.bytes_out = c->rx_bytes;
    u.packets_out = c->rx_packets;
    u.bytes_in = c->tx_bytes;
    u.packets_in = c->tx_packets;
    auto saved = manager_.run({"iptables-save", "-c", "-t", "filter"});
    if (saved.status != 0)
      return Error::firewall(Cause::kHostIo, "iptables-save -c in " + netns_ + ": " + saved.err);
    u.egress_blocked = blocked_packets(saved.out).value_or(0);
    return {};
  });
  if (!st) return st.error();
  return u;
}

Status VmNetwork::teardown() {
  if (torn_down_) return {};
  torn_down_ = true;
  std::string errors;
  if (!host_rules_.empty() || veth_made_) {
    // The host end goes explicitly: a deleted namespace's devices are destroyed later, by the
    // kernel's asynchronous cleanup, and until then the host end would keep its name and address
    // while the lease below is already handed to the next VM.
    auto st = netlink::in_netns(manager_.settings().host_netns, [&]() -> base::Status {
      if (!host_rules_.empty()) {
        auto r =
            manager_.run({"iptables-restore", "--noflush", "-w"}, host_rules_removal(host_rules_));
        if (r.status != 0) errors += "host rules: " + r.err + "; ";
        host_rules_.clear();
      }
      if (veth_made_) {
        auto sock = netlink::Socket::open();
        auto gone = sock ? sock->delete_link(host_link_) : base::Expected<bool>(sock.error());
        if (!gone) errors += gone.error().message + "; ";
        veth_made_ = false;
      }
      return {};
    });
    if (!st) errors += st.error().message + "; ";
  }
  if (tap_fd_ >= 0) {
    ::close(tap_fd_);
    tap_fd_ = -1;
  }
  if (persistent_tap_ && netns_made_) {
    // A persistent TAP is deleted by name, not left to the namespace's asynchronous cleanup.
    // REQUIRES: its VMM has exited (a TAP still attached is deleted all the same).
    auto st = netlink::in_netns(netns_, [&]() -> base::Status {
      auto sock = netlink::Socket::open();
      if (!sock) return sock.error();
      auto gone = sock->delete_link(kTapName);
      if (!gone) return gone.error();
      return {};
    });
    if (!st) errors += st.error().message + "; ";
    persistent_tap_ = false;
  }
  if (netns_made_) {
    // Removing the namespace's name lets it go, the TAP, the sink pair and the firewall with it.
    auto gone = netlink::delete_netns(netns_);
    if (!gone) errors += gone.error().message + "; ";
    netns_made_ = false;
  }
  if (lease_) {
    manager_.pool_.release(lease_->index);
    lease_.reset();
  }
  if (!errors.empty()) return Error::network_setup("teardown of vm '" + vm_id_ + "': " + errors);
  return {};
}

}  // namespace paddock::runtime::net
