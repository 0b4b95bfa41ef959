// QemuProvider: VMs as QEMU `microvm` processes, controlled over QMP, with the guest agent on a
// virtio-serial port. Each VM is cold-booted from the configured image (vmlinuz + initramfs built
// by tools/build-guest-image.sh). KVM where it really works, TCG otherwise.
//
// Thread-safety: all methods may be called concurrently; slow work (boot, exec, shutdown) holds
// only the VM's own lock.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "paddock/runtime/jailer.h"
#include "paddock/runtime/provider.h"

namespace paddock::runtime {

template <typename Slot>
class VmTable;

namespace qemu {
struct LaunchSpec;
class SnapshotStore;
struct SnapshotEnv;
struct GuestImage;
}  // namespace qemu
namespace net {
class NetworkManager;
}  // namespace net

// How every QEMU is jailed (runtime/README.md "The jail"). Needs root.
struct JailConfig {
  std::string jailer_binary;  // empty: jail::default_jailer_binary()
  // VMMs run as uid = gid = uid_base + k, k < uid_count, one per live VM. uid_base 0: derived
  // from run_dir, 1000000 + 4096 * (hash % 4096), so workers on one host get different ranges.
  uint32_t uid_base = 0;
  uint32_t uid_count = 4096;
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string cgroup_parent;  // empty: "paddock/<hash of run_dir>"
  // The VMM's memory limit is the guest's memory plus this allowance (QEMU's own heap, TCG's
  // translation cache, device buffers); see the README for what was measured.
  uint32_t vmm_allowance_mib = 256;
  uint64_t pids_max = 128;        // QEMU's threads (vCPUs, RCU, I/O workers)
  uint64_t nofile = 1024;         // open files
  uint64_t fsize_slack_mib = 64;  // largest file = guest memory + this (the RAM file, state)
};

struct QemuConfig {
  std::string qemu_binary = "qemu-system-x86_64";
  std::string image_dir;  // image "default": vmlinuz and initramfs.cpio.gz (or initramfs.cpio)
  // More images, by name (agent/guest/IMAGE.md): name -> image directory. An image directory
  // with a rootfs.ext4 (tools/build-image.sh) boots with it as a read-only drive that the guest
  // agent mounts under a tmpfs overlay and runs jobs in.
  std::map<std::string, std::string> images;
  // An image cache (tools/build-image.sh --cache-dir): every <image_root>/by-name/<name> is an
  // image too. A name in image_dir or images wins.
  std::string image_root;
  std::string accel = "auto";  // auto | kvm | tcg
  // Where each VM's sockets, pidfile and (for a booted VM) RAM file live; swept at start (what a
  // crash left is removed). Best on a tmpfs: a booted VM's RAM is a shared file in it.
  std::string run_dir = "/run/paddock/qemu";
  // Where snapshots live (runtime/README.md, "Snapshots on disk"); empty: snapshots are
  // Unsupported. One provider per directory (it is locked). Best on a tmpfs: clones map the RAM
  // file of their snapshot.
  std::string snapshot_dir;
  // Per-VM networks (runtime/README.md, "Networks and egress"); none: VMs have no network device,
  // and egress rules are Unsupported. Snapshots are tied to this choice (the device model differs).
  std::optional<net::NetworkSettings> network;
  // Jail every QEMU (on by default for the worker; off only for development without root).
  std::optional<JailConfig> jail;
  std::string extra_kernel_args;
  std::chrono::milliseconds boot_timeout{60'000};
  int boot_attempts = 2;  // a boot that hangs (TCG boots now and then do) is killed and retried
  std::chrono::milliseconds shutdown_grace{2'000};
  std::chrono::milliseconds shutdown_poll{50};
};

class QemuProvider final : public Provider {
 public:
  // Checks the QEMU binary and the images, chooses the accelerator, sweeps run_dir. Unsupported,
  // with what to install or build, when something is missing.
  static Result<std::unique_ptr<QemuProvider>> open(QemuConfig config);
  ~QemuProvider() override;
  // Names of the images this provider can boot ("default", "python", ...), sorted.
  std::vector<std::string> images() const;

  std::string_view backend() const override { return "qemu"; }
  Status create(const std::string& vm_id, const VmSpec& spec) override;
  Status start(const std::string& vm_id) override;
  Status stop(const std::string& vm_id) override;
  Status resume(const std::string& vm_id) override;
  Status destroy(const std::string& vm_id) override;
  Result<SnapshotInfo> snapshot(const std::string& vm_id, const std::string& snapshot_id) override;
  Status restore(const std::string& vm_id, const std::string& snapshot_id,
                 const std::string& new_vm_id) override;
  Result<VmInfo> get(const std::string& vm_id) const override;
  Result<std::vector<VmInfo>> list() const override;
  Status delete_snapshot(const std::string& vm_id, const std::string& snapshot_id) override;
  Result<std::vector<SnapshotInfo>> list_snapshots(const std::string& vm_id) const override;
  Result<std::vector<SnapshotInfo>> all_snapshots() const override;
  Status ping(const std::string& vm_id, std::chrono::milliseconds timeout) override;
  Status set_egress(const std::string& vm_id, const std::vector<net::EgressRule>& rules) override;
  Result<NetworkUsage> network_usage(const std::string& vm_id) override;
  // Commands the network manager ran (0 without networks): tests check validation runs none.
  uint64_t network_commands_run() const;
  Result<ExecResult> exec(const std::string& vm_id, const ExecRequest& request,
                          std::stop_token cancel) override;
  // Live: the guest agent sends the output as the program writes it.
  Result<ExecResult> exec_streaming(const std::string& vm_id, const ExecRequest& request,
                                    std::stop_token cancel, const OutputSink& sink) override;
  // The image's warm-up from its image.json (`warmup`), empty without one.
  std::vector<std::string> warmup_argv(const std::string& image) const override;

  const std::string& accel() const { return accel_; }
  // QEMU's own run state of a started VM ("running", "paused", ...), from QMP query-status.
  Result<std::string> qemu_status(const std::string& vm_id) const;
  // The QEMU process of a started VM (inside its jail when jailed); -1 if none.
  int vmm_pid(const std::string& vm_id) const;
  // The jail spec a VM's QEMU was started with (chroot, cgroups, uid); nullopt if not jailed.
  std::optional<jail::JailSpec> jail_of(const std::string& vm_id) const;
  // Boot time of a running VM (spawn to agent ready), in microseconds; 0 if unknown.
  uint64_t boot_us(const std::string& vm_id) const;
  // Removes what a crashed process left in run_dir: kills QEMU processes found by their pidfile
  // and deletes the directories. Returns how many VM directories were removed.
  static size_t sweep(const std::string& run_dir);
  // The directory on a tmpfs for run and snapshot files: "/run" or "/dev/shm" if one of them is a
  // tmpfs, else "".
  static std::string tmpfs_dir();
  // The jail's defaults derived from the run directory (one spelling of it: "/srv/run" and
  // "/srv/run/" are the same), so that workers on one host with different run dirs get disjoint
  // uid ranges and cgroup parents, and a restarted worker finds its own leftovers.
  struct JailDefaults {
    uint32_t uid_base = 0;      // 1,000,000 + 4096 * (hash % 4096)
    std::string cgroup_parent;  // "paddock/<hash, 8 hex digits>"
  };
  static JailDefaults jail_defaults(const std::string& run_dir);

 private:
  struct Slot;
  explicit QemuProvider(QemuConfig config);
  std::string new_run_dir();
  // What start and restore share: the launch of this provider's QEMU for the slot's VM, with its
  // network made (when networks are on) and its TAP in the spec.
  Result<qemu::LaunchSpec> launch_spec(const std::string& vm_id, Slot& slot);

  // The image a VM of `name` boots, or null.
  const qemu::GuestImage* image(const std::string& name) const;
  std::string image_names() const;

  QemuConfig config_;
  std::string accel_;
  std::unique_ptr<qemu::SnapshotStore> snapshots_;  // null when snapshot_dir is empty
  // By name; fixed once open() returns (read without a lock).
  std::map<std::string, std::unique_ptr<qemu::GuestImage>> images_;
  std::unique_ptr<net::NetworkManager> network_;  // null without networks; outlives every VM
  std::unique_ptr<VmTable<Slot>> vms_;            // destroyed VMs stay as tombstones
  std::atomic<uint64_t> next_dir_{0};  // new_run_dir's counter (creates run concurrently)
  std::mutex mu_;                      // guards uids_in_use_ and next_uid_
  // Jail user ids in use (offsets from uid_base) and where the next search starts: a uid is not
  // handed out again at once.
  std::set<uint32_t> uids_in_use_;
  uint32_t next_uid_ = 0;
  Result<uint32_t> take_uid();
  void release_uid(uint32_t uid);
};

}  // namespace paddock::runtime
