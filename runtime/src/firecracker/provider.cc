#include "paddock/runtime/firecracker_provider.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <utility>

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include "firecracker/firecracker_vm.h"
#include "firecracker/jail.h"
#include "net/vm_network.h"
#include "os/find_binary.h"
#include "paddock/base/os_error.h"
#include "paddock/runtime/jailer.h"
#include "qemu/snapshot_store.h"
#include "vm_snapshots.h"
#include "vm_table.h"

namespace paddock::runtime {

namespace fs = std::filesystem;
using firecracker::FcLaunch;
using firecracker::FirecrackerVm;

struct FirecrackerProvider::Slot {
  std::mutex mu;  // held across boot/shutdown of this VM only
  VmInfo info;
  // Declared before vm: Firecracker goes first, then the network it used.
  std::unique_ptr<net::VmNetwork> network;
  std::unique_ptr<FirecrackerVm> vm;
  FcLaunch launch;
  uint32_t jail_uid = 0;       // 0: none taken
  bool needs_refresh = false;  // a restored clone not yet made unique (on its first resume)
};

namespace {

// The first line `binary --version` prints: snapshots are tied to the Firecracker that wrote
// them.
std::string firecracker_version(const std::string& binary) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return "unknown";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    const char* argv[] = {binary.c_str(), "--version", nullptr};
    ::execv(argv[0], const_cast<char**>(argv));
    ::_exit(127);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while (out.size() < 4096 && (n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, n);
  ::close(pipefd[0]);
  if (pid > 0) ::waitpid(pid, nullptr, 0);
  out = out.substr(0, out.find('\n'));
  return out.empty() ? "unknown" : out;
}

std::string first_existing(const std::string& dir, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (fs::exists(dir + "/" + n)) return dir + "/" + n;
  }
  return {};
}

}  // namespace

FirecrackerProvider::FirecrackerProvider(FirecrackerConfig config)
    : config_(std::move(config)), vms_(std::make_unique<VmTable<Slot>>()) {}

FirecrackerProvider::~FirecrackerProvider() {
  for (auto& [id, slot] : vms_->take_all()) {
    std::lock_guard slot_lock(slot->mu);
    slot->vm.reset();  // shuts its Firecracker down
    release(*slot);
  }
  if (config_.jail && cgroup_version_ != 0) {
    // This provider's cgroup parent, now empty (a live jail's cgroup would keep it: rmdir fails).
    const auto like = firecracker::cgroup_spec(*config_.jail, cgroup_version_, "");
    for (const auto& dir : jail::cgroup_parent_dirs(like, cgroup_version_)) {
      (void)::rmdir(dir.c_str());
      // The default parent's own parent (paddock-fc), if no other provider's is in it.
      if (parent_cgroup_derived_) (void)::rmdir(fs::path(dir).parent_path().c_str());
    }
  }
}

Result<std::unique_ptr<FirecrackerProvider>> FirecrackerProvider::open(FirecrackerConfig config) {
  std::unique_ptr<FirecrackerProvider> p(new FirecrackerProvider(std::move(config)));
  FirecrackerConfig& c = p->config_;
  auto binary = os::find_binary(c.firecracker_binary);
  if (!binary) {
    return Error::unsupported(
        "firecracker backend: " + c.firecracker_binary +
        " not found (Firecracker is not packaged in Debian: install a release binary from "
        "github.com/firecracker-microvm/firecracker/releases and pass its path, or use --backend "
        "qemu)");
  }
  c.firecracker_binary = fs::absolute(*binary).string();
  if (c.require_kvm && ::access("/dev/kvm", R_OK | W_OK) != 0) {
    return Error::unsupported(base::error_message(
        "firecracker backend: /dev/kvm (Firecracker needs KVM; use --backend qemu on hosts "
        "without it)"));
  }
  // The guest agent serves on vsock port 1024 when the command line says so (virtio-serial,
  // which Firecracker lacks, otherwise): agent/guest/README.md.
  if (c.kernel_args.find("paddock.channel=vsock") == std::string::npos) {
    c.kernel_args += " paddock.channel=vsock";
  }
  p->kernel_ = c.image_dir.empty() ? "" : first_existing(c.image_dir, {"vmlinux"});
  if (p->kernel_.empty()) {
    return Error::unsupported("firecracker backend: no vmlinux in image directory '" + c.image_dir +
                              "' (an uncompressed kernel with virtio-mmio and vsock; "
                              "runtime/README.md, \"The Firecracker backend\")");
  }
  p->initrd_ = first_existing(c.image_dir, {"initramfs.cpio", "initramfs.cpio.gz"});
  p->rootfs_ = first_existing(c.image_dir, {"rootfs.ext4"});
  if (p->initrd_.empty() && p->rootfs_.empty()) {
    return Error::unsupported("firecracker backend: image directory " + c.image_dir +
                              " has neither initramfs.cpio[.gz] nor rootfs.ext4");
  }
  std::error_code ec;
  fs::create_directories(c.run_dir, ec);
  if (ec) return Error::unsupported(Cause::kHostIo, "create " + c.run_dir + ": " + ec.message());
  if (c.jail) {
    if (::geteuid() != 0)
      return Error::jailer(Cause::kNotSupported, "Firecracker's jailer needs root");
    auto jailer = os::find_binary(c.jail->jailer_binary);
    if (!jailer) {
      return Error::jailer(Cause::kNotSupported,
                           "firecracker backend: jailer " + c.jail->jailer_binary +
                               " not found (it ships with the Firecracker release)");
    }
    c.jail->jailer_binary = *jailer;
    // The jailer refuses an exec file whose name does not say firecracker (docs/jailer.md).
    if (fs::path(c.firecracker_binary).filename().string().find("firecracker") ==
        std::string::npos) {
      return Error::jailer(Cause::kNotSupported,
                           "firecracker backend: " + c.firecracker_binary +
                               ": Firecracker's jailer needs 'firecracker' in the file name");
    }
    p->cgroup_version_ = jail::cgroup_version(c.jail->cgroup_root).value_or(0);
    if (p->cgroup_version_ == 0) {
      return Error::jailer(Cause::kNotSupported,
                           "firecracker backend: " + c.jail->cgroup_root +
                               ": neither a cgroup v2 mount nor v1 controllers");
    }
    p->jail_prefix_ = firecracker::jail_prefix(c.run_dir);
    if (c.jail->parent_cgroup.empty()) {
      c.jail->parent_cgroup = "paddock-fc/" + p->jail_prefix_;
      p->parent_cgroup_derived_ = true;
    }
    const std::string exec_name = fs::path(c.firecracker_binary).filename().string();
    if (size_t n =
            firecracker::sweep_jails(*c.jail, p->cgroup_version_, exec_name, p->jail_prefix_)) {
      spdlog::warn("firecracker backend: removed {} jail(s) left by an earlier crash", n);
    }
  }
  if (c.network) {
    auto manager = net::NetworkManager::open(*c.network);
    if (!manager) return manager.error();
    p->network_ = std::move(manager.value());
  }
  // What a snapshot needs of the Firecracker that restores it (the store's fields are named for
  // QEMU; here: Firecracker's version, kvm, the machine model, its CPU template, the image).
  // One 128-bit id for the whole image: XXH3-128 of its files' hashes.
  std::string hashes;
  for (const auto& f : {p->kernel_, p->initrd_, p->rootfs_}) {
    if (f.empty()) continue;
    auto h = qemu::hash_file(f);
    if (!h) return h.error();
    hashes += h.value();
  }
  const XXH128_hash_t id = XXH3_128bits(hashes.data(), hashes.size());
  char image_id[33];
  std::snprintf(image_id, sizeof image_id, "%016llx%016llx",
                static_cast<unsigned long long>(id.high64),
                static_cast<unsigned long long>(id.low64));
  p->env_ = std::make_unique<qemu::SnapshotEnv>(
      qemu::SnapshotEnv{firecracker_version(c.firecracker_binary), "kvm", "firecracker", "None",
                        image_id, c.kernel_args});
  if (!c.snapshot_dir.empty()) {
    p->snapshots_ = std::make_unique<qemu::SnapshotStore>(c.snapshot_dir);
    auto opened = p->snapshots_->open();
    if (!opened) return opened.error();
    add_tombstones(*p->vms_, *p->snapshots_);
  }
  spdlog::info("firecracker backend: {} ({}), image {}{}", c.firecracker_binary,
               p->env_->qemu_version, c.image_dir,
               c.jail ? ", jailed by " + c.jail->jailer_binary : ", not jailed");
  return p;
}

Status FirecrackerProvider::create(const std::string& vm_id, const VmSpec& spec) {
  if (spec.image != "default") {
    return Error::unsupported("image '" + spec.image +
                              "' is not available on the firecracker backend (images: default)");
  }
  return vms_->insert(
      vm_id, make_slot<Slot>(VmInfo{vm_id, VmState::kCreated, spec, std::nullopt, std::nullopt}));
}

Status FirecrackerProvider::prepare_launch(Slot& slot) {
  FcLaunch& l = slot.launch;
  l = FcLaunch{};
  l.firecracker_binary = config_.firecracker_binary;
  l.kernel = kernel_;
  l.initrd = initrd_;
  l.rootfs = rootfs_;
  l.kernel_args = config_.kernel_args;
  l.vcpus = slot.info.spec.vcpus;
  l.mem_mib = slot.info.spec.mem_mib;
  l.api_timeout = config_.api_timeout;
  l.boot_timeout = config_.boot_timeout;
  l.shutdown_grace = config_.shutdown_grace;
  l.shutdown_poll = config_.shutdown_poll;
  std::lock_guard lock(mu_);
  // Short names: unix socket paths are limited to 108 bytes.
  const std::string id = std::to_string(::getpid()) + "-" + std::to_string(next_dir_++);
  l.run_dir = config_.run_dir + "/" + id;
  if (const auto& j = config_.jail) {
    uint32_t k = 0;
    while (k < j->uid_count && uids_in_use_.count(k) != 0) ++k;
    if (k == j->uid_count) return Error::jailer(Cause::kResourceExhausted, "no free jail uid");
    uids_in_use_.insert(k);
    slot.jail_uid = j->uid_base + k;
    jail::FirecrackerJailerSpec js;
    js.jailer_binary = j->jailer_binary;
    js.id = jail_prefix_ + "-" + id;
    js.uid = js.gid = slot.jail_uid;
    js.chroot_base_dir = j->chroot_base_dir;
    js.cgroup_version = cgroup_version_;
    js.parent_cgroup = j->parent_cgroup;
    const uint64_t memory = (uint64_t{slot.info.spec.mem_mib} + j->vmm_allowance_mib) << 20;
    js.cgroups =
        firecracker::cgroup_limits(cgroup_version_, slot.info.spec.vcpus, memory, j->pids_max);
    // Files Firecracker writes: a snapshot's memory and state, at most guest memory + 64 MiB.
    js.resource_limits = {"fsize=" + std::to_string((uint64_t{slot.info.spec.mem_mib} + 64) << 20),
                          "no-file=" + std::to_string(j->rlimit_nofile)};
    l.jail = std::move(js);
  }
  return {};
}

Status FirecrackerProvider::attach_network(Slot& slot) {
  if (!network_) return {};
  // Firecracker opens the TAP by name, as the jail's user (or, not jailed, as ours).
  net::TapOwner owner{::geteuid(), ::getegid()};
  if (slot.launch.jail) owner = net::TapOwner{slot.launch.jail->uid, slot.launch.jail->gid};
  auto network = network_->create(slot.info.id, owner);
  if (!network) return network.error();
  slot.network = std::move(network.value());
  slot.launch.netns = "/run/netns/" + slot.network->netns();
  slot.launch.tap_name = slot.network->tap_name();
  slot.launch.guest_mac = net::kGuestMac;
  return {};
}

void FirecrackerProvider::release(Slot& slot) {
  if (slot.network) {
    // After Firecracker is gone: the TAP, the namespace, the host rules and the lease.
    if (auto st = slot.network->teardown(); !st) {
      spdlog::error("firecracker backend: vm '{}': {}", slot.info.id, st.error().detail());
    }
    slot.network.reset();
  }
  if (slot.launch.jail && slot.jail_uid != 0) {
    // The jail's cgroups (the chroot went with the VM), killing whatever is left in them.
    const auto spec =
        firecracker::cgroup_spec(*config_.jail, cgroup_version_, slot.launch.jail->id);
    if (auto st = jail::remove_jail_cgroups(spec); !st) {
      spdlog::error("firecracker backend: vm '{}': {}", slot.info.id, st.error().detail());
    }
  }
  if (slot.jail_uid != 0 && config_.jail) {
    std::lock_guard lock(mu_);
    uids_in_use_.erase(slot.jail_uid - config_.jail->uid_base);
  }
  slot.jail_uid = 0;
}

Status FirecrackerProvider::start(const std::string& vm_id) {
  auto locked = lock_for(*vms_, vm_id, VmOp::kStart);
  if (!locked) return locked.error();
  auto& slot = locked.value().slot;
  if (auto st = prepare_launch(*slot); !st) return st;
  if (auto st = attach_network(*slot); !st) {
    release(*slot);
    return st;
  }
  auto vm = FirecrackerVm::boot(slot->launch);
  if (!vm) {
    release(*slot);
    return vm.error();
  }
  slot->vm = std::move(vm.value());
  slot->info.state = VmState::kRunning;
  return {};
}

Status FirecrackerProvider::stop(const std::string& vm_id) { return stop_vm(*vms_, vm_id); }

Status FirecrackerProvider::resume(const std::string& vm_id) {
  auto locked = lock_for(*vms_, vm_id, VmOp::kResume);
  if (!locked) return locked.error();
  auto& slot = locked.value().slot;
  if (auto st = slot->vm->resume(); !st) {
    (void)slot->vm->pause();
    return st;
  }
  if (auto st = refresh_clone(*slot, vm_id); !st) return st;
  slot->info.state = VmState::kRunning;
  return {};
}

Status FirecrackerProvider::destroy(const std::string& vm_id) {
  auto locked = lock_for(*vms_, vm_id, VmOp::kDestroy);
  if (!locked) return locked.error();
  auto& slot = locked.value().slot;
  if (slot->vm) {
    if (auto st = slot->vm->shutdown(); !st) return st;
    slot->vm.reset();
  }
  Status network_down;
  if (slot->network) {
    network_down = slot->network->teardown();
    slot->network.reset();
  }
  release(*slot);
  slot->info.state = VmState::kDestroyed;  // Firecracker is gone; an error names what is left
  return network_down;
}

Result<SnapshotInfo> FirecrackerProvider::snapshot(const std::string& vm_id,
                                                   const std::string& snapshot_id) {
  auto slot = vms_->find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (auto st = check_snapshot(vm_id, slot->info.state); !st) return st.error();
  if (!snapshots_) {
    return Error::unsupported("snapshots need a snapshot directory (the worker's --snapshot-dir)");
  }
  if (!slot->vm) {
    return Error::unsupported(Cause::kVmState, "vm '" + vm_id +
                                                   "' has not been started: a snapshot of the " +
                                                   "firecracker backend is of a booted guest");
  }
  // Firecracker snapshots only a paused VM, which take_snapshot gives it.
  return take_snapshot(*snapshots_, *slot, vm_id, snapshot_id, *env_,
                       [&](const std::string& partial) {
                         return slot->vm->snapshot_to(partial + "/state", partial + "/memory");
                       });
}

Status FirecrackerProvider::restore(const std::string& vm_id, const std::string& snapshot_id,
                                    const std::string& new_vm_id) {
  if (!snapshots_) return Error::snapshot_not_found(vm_id, snapshot_id);
  // Sizes, checksums and the environment (Firecracker version, image) are checked first.
  auto meta = snapshots_->check(vm_id, snapshot_id, *env_);
  if (!meta) return meta.error();
  const qemu::SnapshotMeta& m = meta.value();
  auto slot = make_slot<Slot>(VmInfo{new_vm_id, VmState::kStopped,
                                     VmSpec{m.image, m.vcpus, m.mem_mib}, vm_id, snapshot_id});
  slot->needs_refresh = true;
  if (auto st = vms_->insert(new_vm_id, slot); !st) return st;
  std::unique_lock slot_lock(slot->mu);
  Result<std::unique_ptr<FirecrackerVm>> restored =
      Error::unsupported(Cause::kInternal, "not attempted");
  if (auto st = prepare_launch(*slot); !st) {
    restored = st.error();
  } else if (auto net_st = attach_network(*slot); !net_st) {
    restored = net_st.error();
  } else {
    const std::string dir = snapshots_->dir(vm_id, snapshot_id);
    slot->launch.snapshot_state = dir + "/state";
    slot->launch.snapshot_memory = dir + "/memory";
    restored = FirecrackerVm::restore(slot->launch);
  }
  if (!restored) {
    release(*slot);
    slot_lock.unlock();
    vms_->erase(new_vm_id);  // nothing was made: the id is free again
    return restored.error();
  }
  slot->vm = std::move(restored.value());
  return {};
}

Status FirecrackerProvider::delete_snapshot(const std::string& vm_id,
                                            const std::string& snapshot_id) {
  return delete_snapshot_in(snapshots_.get(), vm_id, snapshot_id);
}

Result<VmInfo> FirecrackerProvider::get(const std::string& vm_id) const {
  return get_vm(*vms_, vm_id);
}

Result<std::vector<VmInfo>> FirecrackerProvider::list() const { return list_vms(*vms_); }

Result<std::vector<SnapshotInfo>> FirecrackerProvider::list_snapshots(
    const std::string& vm_id) const {
  return list_vm_snapshots(*vms_, snapshots_.get(), vm_id);
}

Result<std::vector<SnapshotInfo>> FirecrackerProvider::all_snapshots() const {
  return list_all_snapshots(snapshots_.get());
}

Status FirecrackerProvider::set_egress(const std::string& vm_id,
                                       const std::vector<net::EgressRule>& rules) {
  return set_vm_egress(*vms_, network_ != nullptr, vm_id, rules);
}

Result<NetworkUsage> FirecrackerProvider::network_usage(const std::string& vm_id) {
  auto slot = vms_->find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  // With a network, its namespace's counters (as on QEMU, with blocked packets); without one,
  // Firecracker's metrics.
  if (slot->network) return slot->network->usage();
  if (!slot->vm) return NetworkUsage{};
  auto m = slot->vm->metrics();
  if (!m) return m.error();
  return NetworkUsage{m.value().net_rx_bytes, m.value().net_tx_bytes, m.value().net_rx_packets,
                      m.value().net_tx_packets, 0};
}

Status FirecrackerProvider::ping(const std::string& vm_id, std::chrono::milliseconds timeout) {
  return ping_vm(*vms_, vm_id, timeout);
}

Result<ExecResult> FirecrackerProvider::exec(const std::string& vm_id, const ExecRequest& request,
                                             std::stop_token cancel) {
  return exec_in_vm(*vms_, vm_id, request, std::move(cancel));
}

Result<ExecResult> FirecrackerProvider::exec_streaming(const std::string& vm_id,
                                                       const ExecRequest& request,
                                                       std::stop_token cancel,
                                                       const OutputSink& sink) {
  return exec_in_vm(*vms_, vm_id, request, std::move(cancel), sink);
}

std::string FirecrackerProvider::jail_dir(const std::string& vm_id) const {
  auto slot = vms_->find(vm_id);
  if (!slot) return {};
  std::lock_guard lock(slot->mu);
  if (!slot->vm || !slot->launch.jail) return {};
  return fs::path(slot->vm->root()).parent_path().string();
}

std::string FirecrackerProvider::netns(const std::string& vm_id) const {
  auto slot = vms_->find(vm_id);
  if (!slot) return {};
  std::lock_guard lock(slot->mu);
  return slot->network ? slot->network->netns() : std::string();
}

int FirecrackerProvider::vmm_pid(const std::string& vm_id) const {
  return vmm_pid_of(*vms_, vm_id);
}

}  // namespace paddock::runtime
