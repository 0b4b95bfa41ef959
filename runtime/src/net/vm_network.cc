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
#include <future>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

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

// Runs `fn` on a thread that has joined network namespace `ns` (setns binds only the calling
// thread; what fn opens under /proc/sys/net, and the sockets it makes, are that namespace's), or
// on the calling thread when `ns` is "" (this process's own namespace). fn returns false and sets
// `error` when it fails.
bool in_netns(const std::string& ns, const std::function<bool(std::string&)>& fn,
              std::string& error) {
  if (ns.empty()) return fn(error);
  auto task = std::async(std::launch::async, [&]() -> bool {
    const std::string path = "/run/netns/" + ns;
    const int nsfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      error = base::error_message("open " + path);
      return false;
    }
    const int joined_ns = ::setns(nsfd, CLONE_NEWNET);
    const int setns_errno = errno;
    ::close(nsfd);
    if (joined_ns != 0) {
      error = base::error_message("setns " + path, setns_errno);
      return false;
    }
    return fn(error);
  });
  return task.get();  // the thread ends here, its namespace with it
}

// Writes `value` to `path` (a /proc/sys file of the calling thread's network namespace).
bool write_sysctl(const std::string& path, const char* value, std::string& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const size_t n = std::strlen(value);
  if (fd < 0 || ::write(fd, value, n) != static_cast<ssize_t>(n)) {
    error = base::error_message("write " + std::string(value) + " to " + path);
    if (fd >= 0) ::close(fd);
    return false;
  }
  ::close(fd);
  return true;
}

// Whether this kernel has IPv6 at all (booted with ipv6.disable=1 it has none, and nothing needs
// switching off).
bool kernel_has_ipv6() { return fs::exists("/proc/sys/net/ipv6"); }

// IPv6 off for `conf` ("all", "default" or an interface) in the calling thread's namespace.
bool disable_ipv6(const std::string& conf, std::string& error) {
  if (!kernel_has_ipv6()) return true;
  return write_sysctl("/proc/sys/net/ipv6/conf/" + conf + "/disable_ipv6", "1", error);
}

// Brings interface `name` of the calling thread's namespace up.
bool link_up(const std::string& name, std::string& error) {
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    error = base::error_message("socket");
    return false;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  bool ok = ::ioctl(sock, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ok = ::ioctl(sock, SIOCSIFFLAGS, &ifr) == 0;
  }
  if (!ok) error = base::error_message("bring " + name + " up");
  ::close(sock);
  return ok;
}

// Opens /dev/net/tun as `name` inside namespace `ns` and prepares the namespace: IPv6 off (for
// every interface there is, lo, and every one made later: the TAP, the sink pair, eth1), IPv4
// forwarding on. The TAP lives as long as the fd is open; with an owner it is made persistent and
// owned by owner's uid and gid, and the fd is closed (the return value is then 0, not an fd).
int open_tap_in(const std::string& ns, const std::string& name, std::optional<TapOwner> owner,
                std::string& error) {
  int result = -1;
  in_netns(
      ns,
      [&](std::string& err) -> bool {
        // Before the TAP exists: "default" is what every interface made afterwards starts with.
        if (!disable_ipv6("all", err) || !disable_ipv6("default", err)) {
          err = "switch IPv6 off in " + ns + ": " + err;
          return false;
        }
        const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
          err = base::error_message("open /dev/net/tun");
          return false;
        }
        ifreq ifr{};
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
        if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
          err = base::error_message("TUNSETIFF " + name + " in " + ns);
          ::close(fd);
          return false;
        }
        if (owner) {
          // Owner and group first: a persistent TAP without them could be attached by anyone.
          const char* failed = nullptr;
          if (::ioctl(fd, TUNSETOWNER, static_cast<unsigned long>(owner->uid)) != 0) {
            failed = "TUNSETOWNER ";
          } else if (::ioctl(fd, TUNSETGROUP, static_cast<unsigned long>(owner->gid)) != 0) {
            failed = "TUNSETGROUP ";
          } else if (::ioctl(fd, TUNSETPERSIST, 1UL) != 0) {
            failed = "TUNSETPERSIST ";
          }
          if (failed != nullptr) {
            err = base::error_message(failed + name + " in " + ns);
            ::close(fd);
            return false;
          }
        }
        // Forwarding on in the VM's namespace, so the guest's packets reach the FORWARD chain,
        // where they are allowed or counted and dropped.
        if (!write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", err)) {
          err = "enable forwarding in " + ns + ": " + err;
          ::close(fd);
          return false;
        }
        if (owner) {
          ::close(fd);  // persistent: the TAP stays, for its owner to open by name
          result = 0;
        } else {
          result = fd;
        }
        return true;
      },
      error);
  return result;
}

}  // namespace

// ---- NetworkManager ----

NetworkManager::NetworkManager(NetworkSettings settings, Cidr pool)
    : settings_(std::move(settings)), pool_cidr_(pool), pool_(pool) {}

Result<std::unique_ptr<NetworkManager>> NetworkManager::open(NetworkSettings settings) {
  if (auto st = validate_settings(settings); !st) return st.error();
  auto pool = parse_cidr(settings.pool);  // validated above
  std::unique_ptr<NetworkManager> m(new NetworkManager(std::move(settings), *pool));
  for (const char* tool : {"ip", "iptables-restore", "iptables-save"}) {
    if (bp::search_path(tool).empty()) {
      return Error::unsupported(
          std::string("per-VM networks need `") + tool +
          "` (apt-get install iproute2 iptables; tools/install-deps.sh does)");
    }
  }
  // IPv6 is switched off in every VM's namespace by sysctl; where ip6tables-restore exists, its
  // default-drop policy holds too (if something switched IPv6 back on).
  m->ip6tables_ = kernel_has_ipv6() && !bp::search_path("ip6tables-restore").empty();
  if (!m->settings_.host_netns.empty() && !fs::exists("/run/netns/" + m->settings_.host_netns)) {
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

std::vector<std::string> NetworkManager::in_ns(const std::string& ns,
                                               std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
  return argv;
}

std::vector<std::string> NetworkManager::in_host(std::vector<std::string> argv) const {
  return settings_.host_netns.empty() ? argv : in_ns(settings_.host_netns, std::move(argv));
}

std::vector<std::string> NetworkManager::host_ip(std::vector<std::string> args) const {
  std::vector<std::string> argv = {"ip"};
  if (!settings_.host_netns.empty()) argv.insert(argv.end(), {"-n", settings_.host_netns});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

size_t NetworkManager::sweep() {
  size_t removed = 0;
  const std::string ns_prefix = settings_.prefix + "-vm";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(ns_prefix, 0) != 0) continue;
    // Deleting the namespace deletes its veth pair (both ends) and its TAP.
    auto r = run({"ip", "netns", "delete", name});
    if (r.status == 0)
      ++removed;
    else
      spdlog::warn("network sweep: ip netns delete {}: {}", name, r.err);
  }
  // Host ends whose namespace went some other way.
  auto links = run(host_ip({"-j", "link", "show"}));
  if (links.status == 0) {
    auto j = nlohmann::json::parse(links.out, nullptr, false);
    if (j.is_array()) {
      for (const auto& l : j) {
        const std::string name = l.value("ifname", "");
        if (name.rfind(settings_.prefix + "h", 0) == 0)
          (void)run(host_ip({"link", "delete", name}));
      }
    }
  }
  // Host rules carry the comment "<prefix>:<n>": delete each by its own spec.
  auto saved = run(in_host({"iptables-save"}));
  if (saved.status == 0) {
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
      auto r = run(in_host({"iptables-restore", "--noflush", "-w"}), restore);
      if (r.status != 0) spdlog::warn("network sweep: host rules: {}", r.err);
    }
  }
  return removed;
}

Status NetworkManager::prepare_host() {
  std::lock_guard lock(host_mu_);
  if (host_ready_) return {};
  auto fwd = run(in_host({"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"}));
  if (fwd.status != 0) {
    return Error::network_setup("sysctl net.ipv4.ip_forward=1 in the host namespace: " + fwd.err);
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
  auto fail = [&](const std::vector<std::string>& argv, const Ran& r) -> Error {
    return Error::network_setup(joined(argv) + " failed (exit " + std::to_string(r.status) +
                                "): " + r.err);
  };
  const std::vector<std::string> add = {"ip", "netns", "add", v->netns_};
  if (auto r = run(add); r.status != 0) return fail(add, r);
  v->netns_made_ = true;
  std::string error;
  const int tap = open_tap_in(v->netns_, kTapName, owner, error);
  if (tap < 0) return Error::network_setup("TAP for vm '" + vm_id + "': " + error);
  if (owner) {
    v->persistent_tap_ = true;
  } else {
    v->tap_fd_ = tap;
  }
  const std::string gw = std::string(kGatewayAddress) + "/" + std::to_string(kGuestPrefix);
  // One `ip -batch` for the addresses and links; one iptables-restore for the firewall. Until the
  // job allows egress, the only default route leads to a sink (a veth whose peer is down: what is
  // sent there goes nowhere), not out; it makes the guest's packets pass FORWARD, where the
  // firewall counts and drops them. (A dummy device would do, but its module is not everywhere.)
  const std::string batch = "link set lo up\naddr add " + gw +
                            " dev tap0\nlink set tap0 up\nlink add void0 type veth peer name "
                            "void1\nlink set void0 up\nroute add default dev void0\n";
  const std::vector<std::string> ipb = {"ip", "-n", v->netns_, "-batch", "-"};
  if (auto r = run(ipb, batch); r.status != 0) return fail(ipb, r);
  RulesetInput rules;
  rules.comment = settings_.prefix + ":" + std::to_string(n);
  const auto restore = in_ns(v->netns_, {"iptables-restore", "-w"});
  if (auto r = run(restore, vm_ruleset(rules)); r.status != 0) {
    return Error::firewall(Cause::kHostIo, joined(restore) + " failed (exit " +
                                               std::to_string(r.status) + "): " + r.err);
  }
  if (ip6tables_) {
    const auto restore6 = in_ns(v->netns_, {"ip6tables-restore", "-w"});
    if (auto r = run(restore6, vm_ipv6_ruleset()); r.status != 0) {
      return Error::firewall(Cause::kHostIo, joined(restore6) + " failed (exit " +
                                                 std::to_string(r.status) + "): " + r.err);
    }
  }
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
  using R = NetworkManager::Ran;
  auto fail = [&](const std::vector<std::string>& argv, const R& r) -> Error {
    return Error::network_setup(joined(argv) + " failed (exit " + std::to_string(r.status) +
                                "): " + r.err);
  };
  const std::string host_addr = ip_str(lease_->host) + "/30";
  const std::string vm_addr = ip_str(lease_->vm) + "/30";
  // The veth pair: host end in the host namespace, the VM end (eth1) in the VM's (where IPv6 is
  // off for every new interface). The host end gets IPv6 switched off before it goes up, so it
  // never has an IPv6 address, not even a link-local one.
  {
    std::string batch = "link add " + host_link_ + " type veth peer name eth1 netns " + netns_ +
                        "\naddr add " + host_addr + " dev " + host_link_ + "\n";
    const auto argv = manager_.host_ip({"-batch", "-"});
    veth_made_ = true;
    if (auto r = manager_.run(argv, batch); r.status != 0) return fail(argv, r);
    std::string error;
    const bool up = in_netns(
        manager_.settings().host_netns,
        [&](std::string& err) { return disable_ipv6(host_link_, err) && link_up(host_link_, err); },
        error);
    if (!up) return Error::network_setup("host end " + host_link_ + ": " + error);
  }
  {
    const std::string batch = "addr add " + vm_addr + " dev eth1\nlink set eth1 up\nroute " +
                              "replace default via " + ip_str(lease_->host) + "\n";
    const std::vector<std::string> argv = {"ip", "-n", netns_, "-batch", "-"};
    if (auto r = manager_.run(argv, batch); r.status != 0) return fail(argv, r);
  }
  // Host side: forward this VM's traffic to other machines and masquerade it behind the host's
  // address; drop what it sends to the host itself and to other VMs (host_ruleset).
  const std::string comment = manager_.settings().prefix + ":" + std::to_string(n_);
  HostRulesInput host;
  host.link = host_link_;
  host.vm_address = ip_str(lease_->vm);
  host.link_prefix = manager_.settings().prefix + "h";
  host.deny_host = !manager_.settings().policy.allow_host;
  host.comment = comment;
  if (auto problem = host_rules_problem(host))
    return Error::firewall(Cause::kInternal, "host rules: " + *problem);
  host_rules_ = host_ruleset(host);
  {
    const auto argv = manager_.in_host({"iptables-restore", "--noflush", "-w"});
    if (auto r = manager_.run(argv, host_rules_); r.status != 0) {
      host_rules_.clear();
      return Error::firewall(Cause::kHostIo, joined(argv) + " (host rules) failed (exit " +
                                                 std::to_string(r.status) + "): " + r.err);
    }
  }
  // The VM's firewall, replaced in one call.
  RulesetInput in;
  in.uplink = "eth1";
  in.allowed = allowed;
  in.denied = manager_.always_denied();
  in.comment = comment;
  const auto restore = NetworkManager::in_ns(netns_, {"iptables-restore", "-w"});
  if (auto r = manager_.run(restore, vm_ruleset(in)); r.status != 0) {
    return Error::firewall(Cause::kHostIo, joined(restore) + " failed (exit " +
                                               std::to_string(r.status) + "): " + r.err);
  }
  return {};
}

Result<NetworkUsage> VmNetwork::usage() {
  NetworkUsage u;
  auto link = manager_.run({"ip", "-n", netns_, "-j", "-s", "link", "show", "tap0"});
  if (link.status != 0) return Error::network_setup("ip -s link show tap0: " + link.err);
  auto j = nlohmann::json::parse(link.out, nullptr, false);
  if (j.is_array() && !j.empty()) {
    const auto& stats = j[0].value("stats64", nlohmann::json::object());
    // The TAP's receive side is what the guest sent.
    const auto rx = stats.value("rx", nlohmann::json::object());
    const auto tx = stats.value("tx", nlohmann::json::object());
    u.bytes_out = rx.value("bytes", uint64_t{0});
    u.packets_out = rx.value("packets", uint64_t{0});
    u.bytes_in = tx.value("bytes", uint64_t{0});
    u.packets_in = tx.value("packets", uint64_t{0});
  }
  auto saved = manager_.run(NetworkManager::in_ns(netns_, {"iptables-save", "-c", "-t", "filter"}));
  if (saved.status != 0) return Error::firewall(Cause::kHostIo, "iptables-save -c: " + saved.err);
  u.egress_blocked = blocked_packets(saved.out).value_or(0);
  return u;
}

Status VmNetwork::teardown() {
  if (torn_down_) return {};
  torn_down_ = true;
  std::string errors;
  if (!host_rules_.empty()) {
    auto r = manager_.run(manager_.in_host({"iptables-restore", "--noflush", "-w"}),
                          host_rules_removal(host_rules_));
    if (r.status != 0) errors += "host rules: " + r.err + "; ";
    host_rules_.clear();
  }
  if (tap_fd_ >= 0) {
    ::close(tap_fd_);
    tap_fd_ = -1;
  }
  if (veth_made_) {
    // The host end goes first and explicitly: a deleted namespace's devices are destroyed later,
    // by the kernel's asynchronous cleanup, and until then the host end would keep its name and
    // address while the lease below is already handed to the next VM.
    auto r = manager_.run(manager_.host_ip({"link", "delete", host_link_}));
    if (r.status != 0 && r.err.find("Cannot find device") == std::string::npos)
      errors += "ip link delete " + host_link_ + ": " + r.err + "; ";
    veth_made_ = false;
  }
  if (persistent_tap_ && netns_made_) {
    // A persistent TAP is deleted by name, not left to the namespace's asynchronous cleanup.
    // REQUIRES: its VMM has exited (a TAP still attached is deleted all the same).
    auto r = manager_.run({"ip", "-n", netns_, "link", "delete", kTapName});
    if (r.status != 0) errors += std::string("ip link delete ") + kTapName + ": " + r.err + "; ";
    persistent_tap_ = false;
  }
  if (netns_made_) {
    // Deleting the namespace takes the TAP, the sink pair and the firewall with it.
    auto r = manager_.run({"ip", "netns", "delete", netns_});
    if (r.status != 0) errors += "ip netns delete " + netns_ + ": " + r.err + "; ";
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
