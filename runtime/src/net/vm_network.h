// The kernel half of a VM's network (runtime/README.md, "Networks and egress"): namespaces, the
// TAP, veth pairs, routes, forwarding and NAT, made in-process (net/netlink.h: rtnetlink through
// libnl-route) but for the firewall, which `iptables-restore` loads, and torn down by their owner.
// Names: namespace `<prefix>-vm<n>`, host veth end `<prefix>h<n>`, the VM's veth end `eth1` and TAP
// `tap0` inside its namespace, iptables comments `<prefix>:<n>`.
//
// Thread-safety: NetworkManager's methods may be called concurrently; a VmNetwork belongs to one
// VM (its provider slot's lock).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "net/rules.h"
#include "paddock/runtime/error.h"
#include "paddock/runtime/network.h"
#include "paddock/runtime/provider.h"

namespace paddock::runtime::net {

class NetworkManager;

// The TAP's name inside every VM's namespace.
inline constexpr const char* kTapName = "tap0";

// Who may open a VM's TAP by name (Firecracker does: it is given the name, not an fd).
struct TapOwner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

class VmNetwork {
 public:
  ~VmNetwork();  // teardown(), errors logged
  VmNetwork(const VmNetwork&) = delete;
  VmNetwork& operator=(const VmNetwork&) = delete;

  // The open TAP for QEMU's `-netdev tap,fd=N`. Owned here; closed by teardown(). -1 when the
  // network was made for a TapOwner (the TAP is persistent and opened by name).
  int tap_fd() const { return tap_fd_; }
  const char* tap_name() const { return kTapName; }
  const std::string& netns() const { return netns_; }

  // Opens egress for the job's rules (validated, then narrowed by the operator's policy): a veth
  // pair to the host namespace with a /30 from the pool (the host end without IPv6), a default
  // route, NAT on both sides, the host rules (host_ruleset: the host itself and other VMs
  // dropped by interface), and the VM's firewall replaced atomically. Empty rules: nothing
  // changes (no route out). Once per VM.
  Status allow_egress(const std::vector<EgressRule>& rules);
  Result<NetworkUsage> usage();
  // Removes everything the VM's network holds: host NAT and forward rules, the veth pair, the
  // namespace (and with it the TAP, once QEMU has closed it), the lease. Idempotent.
  Status teardown();

 private:
  friend class NetworkManager;
  VmNetwork(NetworkManager& manager, uint64_t n, std::string vm_id);

  NetworkManager& manager_;
  uint64_t n_;
  std::string vm_id_;
  std::string netns_;
  std::string host_link_;
  int tap_fd_ = -1;
  bool persistent_tap_ = false;  // made for a TapOwner: deleted by name at teardown
  bool netns_made_ = false;
  bool veth_made_ = false;  // the host end exists (or may: set before `link add` runs)
  std::optional<Lease> lease_;
  std::string host_rules_;  // the iptables-restore lines added in the host namespace
  bool torn_down_ = false;
};

class NetworkManager {
 public:
  // Validates the settings (NetworkConfig / Firewall errors, before any command), checks that
  // `iptables-restore` and `iptables-save` exist (Unsupported otherwise) and sweeps what a crash
  // left.
  static Result<std::unique_ptr<NetworkManager>> open(NetworkSettings settings);

  // A namespace with tap0 (172.30.0.1/30, up), lo up, IPv4 forwarding on, IPv6 off (sysctl
  // disable_ipv6 for all and default, set before any interface but lo exists; and ip6tables'
  // policy DROP where ip6tables-restore exists) and the default-deny firewall.
  // Without an owner the TAP is held open by the VmNetwork (tap_fd, for QEMU); with one it is
  // made persistent, owned by owner.uid and owner.gid (TUNSETOWNER, TUNSETGROUP: only they may
  // attach to it, without CAP_NET_ADMIN), and closed here, for a VMM that opens it by name in
  // the namespace (Firecracker); teardown deletes it.
  Result<std::unique_ptr<VmNetwork>> create(const std::string& vm_id,
                                            std::optional<TapOwner> owner = std::nullopt);

  // Removes every namespace, host link and host iptables rule named with the prefix. Returns how
  // many namespaces it removed.
  size_t sweep();

  const NetworkSettings& settings() const { return settings_; }
  // How many commands (iptables-restore, iptables-save) ran so far, for tests and the benchmark.
  uint64_t commands_run() const { return commands_.load(); }
  size_t leases_in_use() const { return pool_.in_use(); }

  struct Ran {
    int status = -1;
    std::string out, err;
  };
  // Runs argv (with `input` on stdin) in the calling thread's network namespace (run it inside
  // netlink::in_netns for another's). A command that cannot start has status -1 and says why.
  Ran run(const std::vector<std::string>& argv, const std::string& input = "");

 private:
  friend class VmNetwork;
  NetworkManager(NetworkSettings settings, Cidr pool);
  // Forwarding on in the host namespace (once, at the first egress).
  Status prepare_host();
  // The CIDRs the VM's namespace drops before any allowed rule: link-local (unless the operator
  // allows it), the pool (other VMs), the operator's denies. The host itself is not a list: the
  // host rules drop it by interface (host_ruleset).
  std::vector<Cidr> always_denied();

  NetworkSettings settings_;
  Cidr pool_cidr_;
  AddressPool pool_;
  std::atomic<uint64_t> next_{0};
  std::atomic<uint64_t> commands_{0};
  std::mutex host_mu_;
  bool host_ready_ = false;
  bool ip6tables_ = false;  // the kernel has IPv6 and ip6tables-restore exists
};

}  // namespace paddock::runtime::net
