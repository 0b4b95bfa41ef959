// FirecrackerProvider: VMs as Firecracker microVMs (runtime/README.md, "The Firecracker backend"),
// controlled through Firecracker's REST API on its Unix socket, started through Firecracker's
// jailer, with the guest agent on a hybrid vsock port and usage from the metrics FIFO. Snapshots
// are Firecracker's Full snapshots (device state + RAM), kept like the QEMU backend's.
//
// Firecracker is not packaged in Debian: open() refuses (Unsupported, saying what is missing)
// without the binary or without /dev/kvm.
//
// Thread-safety: all methods may be called concurrently; slow work (boot, exec, shutdown) holds
// only the VM's own lock.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "paddock/runtime/network.h"
#include "paddock/runtime/provider.h"

namespace paddock::runtime {

template <typename Slot>
class VmTable;

namespace net {
class NetworkManager;
}  // namespace net

namespace qemu {
class SnapshotStore;
struct SnapshotEnv;
}  // namespace qemu

// Firecracker's own jailer (jailer.h, firecracker_jailer_argv). Needs root.
struct FirecrackerJailConfig {
  std::string jailer_binary = "jailer";
  std::string chroot_base_dir = "/srv/jailer";
  // The cgroup the VMs' cgroups go below; empty: paddock-fc/<the provider's jail prefix>, so that
  // two workers on a host never sweep each other's (runtime/src/firecracker/jail.h).
  std::string parent_cgroup;
  std::string cgroup_root = "/sys/fs/cgroup";  // the version is detected from it
  uint32_t uid_base = 1'100'000;  // VMMs run as uid = gid = uid_base + k, k < uid_count
  uint32_t uid_count = 4096;
  // Memory limit = guest memory + this (Firecracker's own heap and device buffers).
  uint64_t vmm_allowance_mib = 128;
  uint64_t pids_max = 128;
  uint64_t rlimit_nofile = 1024;
};

struct FirecrackerConfig {
  std::string firecracker_binary = "firecracker";  // absolute, or found on PATH
  // The image: `vmlinux` (an uncompressed kernel with virtio-mmio and vsock built in; Debian's
  // does not do: runtime/README.md), and `initramfs.cpio` / `initramfs.cpio.gz` and/or
  // `rootfs.ext4`.
  std::string image_dir;
  std::string run_dir = "/run/paddock/firecracker";  // per-VM directories when not jailed
  std::string snapshot_dir;                          // empty: snapshots are Unsupported
  std::optional<FirecrackerJailConfig> jail;
  // Per-VM networks as on the QEMU backend (runtime/README.md, "Networks and egress"); none: VMs
  // have no network device and only empty egress rules are accepted. Needs root.
  std::optional<net::NetworkSettings> network;
  // Refuse to open without /dev/kvm (Firecracker needs it). Off only for tests against the fake.
  bool require_kvm = true;
  // paddock.channel=vsock is added when missing: the guest agent then listens on vsock.
  std::string kernel_args = "console=ttyS0 reboot=k panic=1 pci=off";
  std::chrono::milliseconds api_timeout{5'000};
  std::chrono::milliseconds boot_timeout{30'000};
  std::chrono::milliseconds shutdown_grace{2'000};
  std::chrono::milliseconds shutdown_poll{50};
};

class FirecrackerProvider final : public Provider {
 public:
  static Result<std::unique_ptr<FirecrackerProvider>> open(FirecrackerConfig config);
  ~FirecrackerProvider() override;

  std::string_view backend() const override { return "firecracker"; }
  Status create(const std::string& vm_id, const VmSpec& spec) override;
  Status start(const std::string& vm_id) override;
  Status stop(const std::string& vm_id) override;
  Status resume(const std::string& vm_id) override;
  Status destroy(const std::string& vm_id) override;
  Result<SnapshotInfo> snapshot(const std::string& vm_id, const std::string& snapshot_id) override;
  Status restore(const std::string& vm_id, const std::string& snapshot_id,
                 const std::string& new_vm_id) override;
  Status delete_snapshot(const std::string& vm_id, const std::string& snapshot_id) override;
  Result<VmInfo> get(const std::string& vm_id) const override;
  Result<std::vector<VmInfo>> list() const override;
  Result<std::vector<SnapshotInfo>> list_snapshots(const std::string& vm_id) const override;
  Result<std::vector<SnapshotInfo>> all_snapshots() const override;
  Status set_egress(const std::string& vm_id, const std::vector<net::EgressRule>& rules) override;
  // From the metrics FIFO (net rx/tx bytes and packets); zeros before the VM started.
  Result<NetworkUsage> network_usage(const std::string& vm_id) override;
  Status ping(const std::string& vm_id, std::chrono::milliseconds timeout) override;
  Result<ExecResult> exec(const std::string& vm_id, const ExecRequest& request,
                          std::stop_token cancel) override;
  // Live: the guest agent sends the output as the program writes it.
  Result<ExecResult> exec_streaming(const std::string& vm_id, const ExecRequest& request,
                                    std::stop_token cancel, const OutputSink& sink) override;

  // The Firecracker process of a started VM; -1 if none.
  int vmm_pid(const std::string& vm_id) const;
  // The jailer's directory of a started VM (<chroot_base>/<exec name>/<id>); empty when not
  // jailed or not started.
  std::string jail_dir(const std::string& vm_id) const;
  // The jail ids this provider gives start with it (runtime/src/firecracker/jail.h).
  const std::string& jail_prefix() const { return jail_prefix_; }
  // The network namespace of a started VM (its name under /run/netns); empty without one.
  std::string netns(const std::string& vm_id) const;

 private:
  struct Slot;
  explicit FirecrackerProvider(FirecrackerConfig config);
  // Fills slot.launch for a boot or restore: the image, limits and, jailed, a jail uid and id.
  Status prepare_launch(Slot& slot);
  // With networks on: the VM's namespace and a TAP its Firecracker may open, into slot.launch.
  Status attach_network(Slot& slot);
  // Gives back what prepare_launch and attach_network took (the uid, the network) and removes
  // the jail's cgroups. REQUIRES: the VM's Firecracker has exited.
  void release(Slot& slot);

  FirecrackerConfig config_;
  std::string kernel_, initrd_, rootfs_;
  std::unique_ptr<qemu::SnapshotEnv> env_;
  std::unique_ptr<qemu::SnapshotStore> snapshots_;
  int cgroup_version_ = 0;
  std::string jail_prefix_;
  bool parent_cgroup_derived_ = false;            // parent_cgroup was empty: paddock-fc/<prefix>
  std::unique_ptr<net::NetworkManager> network_;  // null without networks; outlives every VM
  std::unique_ptr<VmTable<Slot>> vms_;            // destroyed VMs stay as tombstones
  std::mutex mu_;                                 // guards next_dir_ and uids_in_use_
  uint64_t next_dir_ = 0;
  std::set<uint32_t> uids_in_use_;
};

}  // namespace paddock::runtime
