#include "paddock/runtime/qemu_provider.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/process.hpp>

#include "net/vm_network.h"
#include "os/find_binary.h"
#include "os/untrusted_file.h"
#include "paddock/base/os_error.h"
#include "qemu/accel.h"
#include "qemu/guest_image.h"
#include "qemu/qemu_vm.h"
#include "qemu/snapshot_store.h"
#include "vm_snapshots.h"
#include "vm_table.h"

namespace paddock::runtime {

namespace fs = std::filesystem;

struct QemuProvider::Slot {
  std::mutex mu;  // held across boot/shutdown of this VM only
  VmInfo info;
  // Declared before vm: QEMU goes first, then the network it used.
  std::unique_ptr<net::VmNetwork> network;
  std::unique_ptr<qemu::QemuVm> vm;
  std::string run_dir;
  uint32_t jail_uid = 0;       // 0: none taken
  bool needs_refresh = false;  // a restored clone not yet made unique (on its first resume)
};

namespace {

// The first line of `qemu --version`: snapshots are tied to the QEMU that wrote them.
std::string qemu_version(const std::string& binary) {
  namespace bp = boost::process;
  try {
    bp::ipstream out;
    bp::child c(binary, "--version", bp::std_out > out, bp::std_err > bp::null,
                bp::std_in < bp::null);
    std::string line;
    std::getline(out, line);
    std::string rest;
    while (std::getline(out, rest)) {
    }
    c.wait();
    return line;
  } catch (const std::exception& e) {
    return std::string("unknown (") + e.what() + ")";
  }
}

bool on_tmpfs(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == 0x01021994;  // TMPFS_MAGIC
}

bool process_mentions(pid_t pid, const std::string& needle) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return cmdline.find(needle) != std::string::npos;
}

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

// One spelling of a directory: absolute, symlinks of the part that exists resolved, no "." or
// "..", no trailing slash. "/srv/run", "/srv/run/" and "/srv/./run" name the same jail set.
std::string one_spelling(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(dir), ec);
  if (ec) p = fs::absolute(dir).lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::string hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

}  // namespace

QemuProvider::JailDefaults QemuProvider::jail_defaults(const std::string& run_dir) {
  const uint32_t h = fnv1a(one_spelling(run_dir));
  return {1'000'000 + 4096 * (h % 4096), "paddock/" + hex8(h)};
}

QemuProvider::QemuProvider(QemuConfig config)
    : config_(std::move(config)), vms_(std::make_unique<VmTable<Slot>>()) {}
QemuProvider::~QemuProvider() {
  // Every VM still running is shut down by its QemuVm's destructor.
  vms_->take_all();
  std::error_code ec;
  fs::remove_all(config_.run_dir + "/.image", ec);
  if (const auto& j = config_.jail) {
    // This provider's cgroup parent, now empty (a live jail's cgroup would keep it: rmdir fails).
    jail::JailSpec like;
    like.cgroup_root = j->cgroup_root;
    like.cgroup_parent = j->cgroup_parent;
    const int version = jail::cgroup_version(j->cgroup_root).value_or(0);
    if (version != 0) {
      for (const auto& dir : jail::cgroup_parent_dirs(like, version)) (void)::rmdir(dir.c_str());
    }
  }
}

Result<std::unique_ptr<QemuProvider>> QemuProvider::open(QemuConfig config) {
  std::unique_ptr<QemuProvider> p(new QemuProvider(std::move(config)));
  auto binary = os::find_binary(p->config_.qemu_binary);
  if (!binary) {
    return Error::unsupported(p->config_.qemu_binary +
                              " not found; install QEMU >= 8.2: apt-get install -t "
                              "bookworm-backports qemu-system-x86 (tools/install-deps.sh does)");
  }
  p->config_.qemu_binary = *binary;
  auto dirs = qemu::image_dirs(p->config_.image_dir, p->config_.images, p->config_.image_root);
  if (!dirs) return dirs.error();
  auto accel = qemu::choose_accel(p->config_.accel, qemu::probe_host());
  if (!accel) return accel.error();
  p->accel_ = accel.value().accel;
  std::string names;
  for (const auto& [name, dir] : dirs.value()) names += (names.empty() ? "" : ", ") + name;
  spdlog::info("qemu backend: {} (images {}), accel {}: {}", p->config_.qemu_binary, names,
               p->accel_, accel.value().reason);
  std::string kernel_args = "console=ttyS0 reboot=k panic=-1 quiet";
  if (p->accel_ == "tcg") {
    // Without it a TCG guest can hang calibrating its TSC against a PIT it cannot use.
    if (auto khz = qemu::host_tsc_khz()) kernel_args += " tsc_early_khz=" + std::to_string(*khz);
  }
  if (!p->config_.extra_kernel_args.empty()) kernel_args += " " + p->config_.extra_kernel_args;
  std::error_code ec;
  fs::create_directories(p->config_.run_dir, ec);
  if (ec)
    return Error::unsupported(Cause::kHostIo, "create " + p->config_.run_dir + ": " + ec.message());
  if (auto& j = p->config_.jail) {
    if (::geteuid() != 0) {
      return Error::jailer(
          Cause::kNotSupported,
          "jailing QEMU needs root (chroot, namespaces, cgroups, a per-VM uid); run as root, or "
          "without the jail for development only (the worker's --jail off)");
    }
    if (j->jailer_binary.empty()) j->jailer_binary = jail::default_jailer_binary();
    if (::access(j->jailer_binary.c_str(), X_OK) != 0) {
      return Error::jailer(Cause::kNotSupported,
                           "paddock-jailer not found at " + j->jailer_binary +
                               " (build the paddock-jailer target, or pass its path)");
    }
    const auto defaults = jail_defaults(p->config_.run_dir);
    if (j->uid_base == 0) j->uid_base = defaults.uid_base;
    if (j->uid_count == 0)
      return Error::jailer(Cause::kNotSupported, "jail uid range: empty (uid_count 0)");
    if (j->cgroup_parent.empty()) j->cgroup_parent = defaults.cgroup_parent;
    const int version = jail::cgroup_version(j->cgroup_root).value_or(0);
    if (version == 0) {
      return Error::jailer(Cause::kNotSupported,
                           "step cgroup: " + j->cgroup_root +
                               ": neither a cgroup v2 mount nor a directory of v1 controllers");
    }
    jail::JailSpec like;
    like.chroot_base = p->config_.run_dir;
    like.cgroup_root = j->cgroup_root;
    like.cgroup_parent = j->cgroup_parent;
    like.cgroup_version = version;
    if (size_t n = jail::sweep_jails(like)) {
      spdlog::warn("qemu backend: removed {} jail(s) left by an earlier crash", n);
    }
    spdlog::info("qemu backend: VMMs jailed by {} (cgroup v{} under {}, uids {}-{})",
                 j->jailer_binary, version, j->cgroup_parent, j->uid_base,
                 j->uid_base + j->uid_count - 1);
  }
  if (size_t n = sweep(p->config_.run_dir)) {
    spdlog::warn("qemu backend: removed {} VM director{} left by an earlier crash", n,
                 n == 1 ? "y" : "ies");
  }
  if (!on_tmpfs(p->config_.run_dir)) {
    spdlog::warn(
        "qemu backend: run directory {} is not on a tmpfs: a booted VM's RAM file there "
        "is written back to disk",
        p->config_.run_dir);
  }
  qemu::LaunchSpec probe;
  probe.accel = p->accel_;
  qemu::SnapshotEnv base_env{qemu_version(p->config_.qemu_binary),
                             p->accel_,
                             qemu::machine_arg(probe),
                             qemu::cpu_arg(probe),
                             "",
                             ""};
  if (p->config_.network) {
    auto manager = net::NetworkManager::open(*p->config_.network);
    if (!manager) return manager.error();
    p->network_ = std::move(manager.value());
    // Clones must have the device model of their template: record whether VMs have a NIC.
    base_env.machine += ",net=virtio";
  }
  struct stat run_st {};
  if (::stat(p->config_.run_dir.c_str(), &run_st) != 0) {
    return Error::unsupported(Cause::kHostIo, base::error_message("stat " + p->config_.run_dir));
  }
  for (const auto& [name, dir] : dirs.value()) {
    auto image = qemu::load_guest_image(name, dir, kernel_args, base_env);
    if (!image) return image.error();
    if (p->config_.jail) {
      // One staged copy of the kernel and initramfs on the run directory's filesystem, so jails
      // hard-link instead of copying them for every VM.
      if (auto st =
              qemu::stage_for_jail(image.value(), p->config_.run_dir + "/.image", run_st.st_dev);
          !st) {
        return st.error();
      }
    }
    if (!image.value().rootfs.empty()) {
      spdlog::info("qemu backend: image '{}' has a root filesystem, {}", name,
                   image.value().rootfs);
    }
    p->images_[name] = std::make_unique<qemu::GuestImage>(std::move(image.value()));
  }
  if (!p->config_.snapshot_dir.empty()) {
    p->snapshots_ = std::make_unique<qemu::SnapshotStore>(p->config_.snapshot_dir);
    auto opened = p->snapshots_->open();
    if (!opened) return opened.error();
    if (opened.value() > 0) {
      spdlog::warn("qemu backend: removed {} partial snapshot(s) left by an earlier crash",
                   opened.value());
    }
    add_tombstones(*p->vms_, *p->snapshots_);
    if (!on_tmpfs(p->config_.snapshot_dir)) {
      spdlog::warn("qemu backend: snapshot directory {} is not on a tmpfs",
                   p->config_.snapshot_dir);
    }
  }
  return p;
}

const qemu::GuestImage* QemuProvider::image(const std::string& name) const {
  auto it = images_.find(name);
  return it == images_.end() ? nullptr : it->second.get();
}

std::vector<std::string> QemuProvider::images() const {
  std::vector<std::string> names;
  for (const auto& [name, img] : images_) names.push_back(name);
  return names;
}

std::string QemuProvider::image_names() const {
  std::string names;
  for (const auto& [name, img] : images_) names += (names.empty() ? "" : ", ") + name;
  return names;
}

std::vector<std::string> QemuProvider::warmup_argv(const std::string& name) const {
  const qemu::GuestImage* img = image(name);
  return img != nullptr ? img->warmup : std::vector<std::string>{};
}

std::string QemuProvider::tmpfs_dir() {
  for (const char* dir : {"/run", "/dev/shm"}) {
    if (on_tmpfs(dir)) return dir;
  }
  return {};
}

std::string QemuProvider::new_run_dir() {
  // Short directory names: unix socket paths are limited to 108 bytes.
  return config_.run_dir + "/" + std::to_string(::getpid()) + "-" + std::to_string(next_dir_++);
}

size_t QemuProvider::sweep(const std::string& run_dir) {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    if (!entry.is_directory()) continue;
    const std::string dir = entry.path().string();
    // A jailed QEMU's directory is its chroot: what is there may be a FIFO or a link it made.
    std::string error;
    std::istringstream pidfile(os::read_untrusted_file(dir + "/qemu.pid", 32, error));
    pid_t pid = 0;
    // Kill only a QEMU whose command line names this directory: a recycled pid is left alone.
    if (pidfile >> pid && pid > 0 && process_mentions(pid, dir + "/")) {
      ::kill(pid, SIGKILL);
      for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    fs::remove_all(dir, ec);
    ++removed;
  }
  return removed;
}

Status QemuProvider::create(const std::string& vm_id, const VmSpec& spec) {
  if (!image(spec.image)) {
    return Error::unsupported("image '" + spec.image +
                              "' is not available on this host (images: " + image_names() +
                              "); build it with tools/build-image.sh " + spec.image);
  }
  return vms_->insert(
      vm_id, make_slot<Slot>(VmInfo{vm_id, VmState::kCreated, spec, std::nullopt, std::nullopt}),
      [&](Slot& slot) { slot.run_dir = new_run_dir(); });
}

Result<qemu::LaunchSpec> QemuProvider::launch_spec(const std::string& vm_id, Slot& slot) {
  const qemu::GuestImage* img = image(slot.info.spec.image);
  if (!img) return Error::unsupported("image '" + slot.info.spec.image + "' is not available");
  qemu::LaunchSpec spec;
  spec.qemu_binary = config_.qemu_binary;
  spec.kernel = img->kernel;
  spec.initrd = img->initrd;
  spec.rootfs = img->rootfs;
  spec.accel = accel_;
  spec.kernel_args = img->kernel_args;
  spec.vcpus = slot.info.spec.vcpus;
  spec.mem_mib = slot.info.spec.mem_mib;
  spec.run_dir = slot.run_dir;
  spec.boot_timeout = config_.boot_timeout;
  if (const auto& j = config_.jail) {
    auto uid = take_uid();
    if (!uid) return uid.error();
    slot.jail_uid = uid.value();
    jail::JailSpec js;
    js.id = fs::path(slot.run_dir).filename().string();
    js.chroot_base = config_.run_dir;
    js.uid = js.gid = uid.value();
    js.cgroup_root = j->cgroup_root;
    js.cgroup_parent = j->cgroup_parent;
    const uint64_t mem = uint64_t{slot.info.spec.mem_mib} << 20;
    // The vCPUs' time plus half a CPU for QEMU's own threads (main loop, I/O).
    js.cpu_quota_us = js.cpu_period_us * slot.info.spec.vcpus + js.cpu_period_us / 2;
    js.memory_bytes = mem + (uint64_t{j->vmm_allowance_mib} << 20);
    js.pids_max = j->pids_max;
    js.rlimit_nofile = j->nofile;
    js.rlimit_fsize = mem + (j->fsize_slack_mib << 20);
    if (fs::exists("/etc/ld.so.cache")) js.ro_binds.push_back("/etc/ld.so.cache");
    spec.jail = std::move(js);
    spec.jailer_binary = j->jailer_binary;
  }
  spec.shutdown_grace = config_.shutdown_grace;
  spec.shutdown_poll = config_.shutdown_poll;
  if (network_) {
    // The caller resets slot.network when the launch fails: nothing of it outlives the attempt.
    auto network = network_->create(vm_id);
    if (!network) return network.error();
    slot.network = std::move(network.value());
    spec.tap_fd = slot.network->tap_fd();
    if (spec.jail) spec.jail->netns = "/run/netns/" + slot.network->netns();
  }
  return spec;
}

Result<uint32_t> QemuProvider::take_uid() {
  std::lock_guard lock(mu_);
  const auto& j = *config_.jail;
  for (uint32_t i = 0; i < j.uid_count; ++i) {
    const uint32_t k = (next_uid_ + i) % j.uid_count;
    if (uids_in_use_.insert(k).second) {
      next_uid_ = (k + 1) % j.uid_count;
      return j.uid_base + k;
    }
  }
  return Error::jailer(Cause::kResourceExhausted, "no free jail uid: all " +
                                                      std::to_string(j.uid_count) + " from " +
                                                      std::to_string(j.uid_base) + " are in use");
}

void QemuProvider::release_uid(uint32_t uid) {
  if (uid == 0 || !config_.jail) return;
  std::lock_guard lock(mu_);
  uids_in_use_.erase(uid - config_.jail->uid_base);
}

Status QemuProvider::start(const std::string& vm_id) {
  auto locked = lock_for(*vms_, vm_id, VmOp::kStart);
  if (!locked) return locked.error();
  auto& slot = locked.value().slot;
  auto spec = launch_spec(vm_id, *slot);
  if (!spec) {
    slot->network.reset();
    release_uid(std::exchange(slot->jail_uid, 0));
    return spec.error();
  }
  Result<std::unique_ptr<qemu::QemuVm>> booted =
      Error::unsupported(Cause::kInternal, "not attempted");
  for (int attempt = 1; attempt <= std::max(1, config_.boot_attempts); ++attempt) {
    booted = qemu::QemuVm::boot(spec.value());
    if (booted) break;
    spdlog::warn("vm '{}': boot attempt {} failed: {}", vm_id, attempt, booted.error().message());
    // Only a guest that hung or died is worth another try; a QEMU that cannot start is not.
    if (booted.error().variant() != Variant::kGuestAgent) break;
  }
  if (!booted) {
    slot->network.reset();  // torn down: a later start makes a new one
    release_uid(std::exchange(slot->jail_uid, 0));
    return booted.error();
  }
  slot->vm = std::move(booted.value());
  slot->info.state = VmState::kRunning;
  return {};
}

Status QemuProvider::stop(const std::string& vm_id) { return stop_vm(*vms_, vm_id); }

Status QemuProvider::resume(const std::string& vm_id) {
  auto locked = lock_for(*vms_, vm_id, VmOp::kResume);
  if (!locked) return locked.error();
  auto& slot = locked.value().slot;
  if (auto st = slot->vm->resume(); !st) return st;
  if (auto st = refresh_clone(*slot, vm_id); !st) return st;
  slot->info.state = VmState::kRunning;
  return {};
}

Status QemuProvider::destroy(const std::string& vm_id) {
  auto locked = lock_for(*vms_, vm_id, VmOp::kDestroy);
  if (!locked) return locked.error();
  auto& slot = locked.value().slot;
  if (slot->vm) {
    if (auto st = slot->vm->shutdown(); !st) return st;
    slot->vm.reset();
  }
  release_uid(std::exchange(slot->jail_uid, 0));
  if (slot->network) {
    auto st = slot->network->teardown();
    slot->network.reset();
    if (!st) {
      slot->info.state = VmState::kDestroyed;  // QEMU is gone; the error names what is left
      return st;
    }
  }
  slot->info.state = VmState::kDestroyed;
  return {};
}

Result<SnapshotInfo> QemuProvider::snapshot(const std::string& vm_id,
                                            const std::string& snapshot_id) {
  auto slot = vms_->find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (auto st = check_snapshot(vm_id, slot->info.state); !st) return st.error();
  if (!snapshots_) {
    return Error::unsupported(
        "snapshots need a snapshot directory (QemuConfig::snapshot_dir, "
        "the worker's --snapshot-dir)");
  }
  if (!slot->vm) {
    return Error::unsupported(Cause::kVmState,
                              "vm '" + vm_id +
                                  "' has not been started: a snapshot of the qemu backend is of a "
                                  "booted guest");
  }
  if (slot->info.restored_from_vm) {
    return Error::unsupported("vm '" + vm_id +
                              "' was restored from a snapshot: its RAM is a private "
                              "copy-on-write mapping of that snapshot, which the qemu backend "
                              "does not snapshot again; snapshot the original VM instead");
  }
  // The VM was created with a known image.
  const qemu::SnapshotEnv& env = image(slot->info.spec.image)->env;
  return take_snapshot(*snapshots_, *slot, vm_id, snapshot_id, env,
                       [&](const std::string& partial) -> Status {
                         // QEMU saves the device state; the RAM is already a file.
                         if (auto st = slot->vm->save_state(partial + "/state"); !st) return st;
                         return qemu::copy_sparse(slot->vm->memory_file(), partial + "/memory");
                       });
}

Status QemuProvider::restore(const std::string& vm_id, const std::string& snapshot_id,
                             const std::string& new_vm_id) {
  if (!snapshots_) return Error::snapshot_not_found(vm_id, snapshot_id);
  // The snapshot's image says what it must match; one not on this host cannot be restored.
  std::string image_name;
  for (const auto& m : snapshots_->list(vm_id)) {
    if (m.snapshot_id == snapshot_id) image_name = m.image;
  }
  if (image_name.empty()) return Error::snapshot_not_found(vm_id, snapshot_id);
  const qemu::GuestImage* img = image(image_name);
  if (!img) {
    return Error::unsupported(
        "snapshot '" + snapshot_id + "' of vm '" + vm_id + "' is of image '" + image_name +
        "', which is not available on this host (images: " + image_names() + ")");
  }
  auto meta = snapshots_->check(vm_id, snapshot_id, img->env);
  if (!meta) return meta.error();
  const qemu::SnapshotMeta& m = meta.value();
  auto slot = make_slot<Slot>(VmInfo{new_vm_id, VmState::kStopped,
                                     VmSpec{m.image, m.vcpus, m.mem_mib}, vm_id, snapshot_id});
  slot->needs_refresh = true;
  if (auto st = vms_->insert(new_vm_id, slot, [&](Slot& s) { s.run_dir = new_run_dir(); }); !st) {
    return st;
  }
  std::unique_lock slot_lock(slot->mu);
  const std::string dir = snapshots_->dir(vm_id, snapshot_id);
  Result<std::unique_ptr<qemu::QemuVm>> restored =
      Error::unsupported(Cause::kInternal, "not attempted");
  auto spec = launch_spec(new_vm_id, *slot);
  if (spec) {
    spec.value().memory_file = dir + "/memory";
    spec.value().memory_private = true;
    spec.value().incoming_state = dir + "/state";
    restored = qemu::QemuVm::restore(spec.value());
  } else {
    restored = spec.error();
  }
  if (!restored) {
    slot->network.reset();
    release_uid(std::exchange(slot->jail_uid, 0));
    // Nothing was made: the id is free again.
    slot_lock.unlock();
    vms_->erase(new_vm_id);
    return restored.error();
  }
  slot->vm = std::move(restored.value());
  return {};
}

Status QemuProvider::delete_snapshot(const std::string& vm_id, const std::string& snapshot_id) {
  return delete_snapshot_in(snapshots_.get(), vm_id, snapshot_id);
}

Result<VmInfo> QemuProvider::get(const std::string& vm_id) const { return get_vm(*vms_, vm_id); }

Result<std::vector<VmInfo>> QemuProvider::list() const { return list_vms(*vms_); }

Result<std::vector<SnapshotInfo>> QemuProvider::list_snapshots(const std::string& vm_id) const {
  return list_vm_snapshots(*vms_, snapshots_.get(), vm_id);
}

Result<std::vector<SnapshotInfo>> QemuProvider::all_snapshots() const {
  return list_all_snapshots(snapshots_.get());
}

Status QemuProvider::ping(const std::string& vm_id, std::chrono::milliseconds timeout) {
  return ping_vm(*vms_, vm_id, timeout);
}

Status QemuProvider::set_egress(const std::string& vm_id,
                                const std::vector<net::EgressRule>& rules) {
  return set_vm_egress(*vms_, network_ != nullptr, vm_id, rules);
}

Result<NetworkUsage> QemuProvider::network_usage(const std::string& vm_id) {
  auto slot = vms_->find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (!slot->network) return NetworkUsage{};
  return slot->network->usage();
}

uint64_t QemuProvider::network_commands_run() const {
  return network_ ? network_->commands_run() : 0;
}

Result<ExecResult> QemuProvider::exec(const std::string& vm_id, const ExecRequest& request,
                                      std::stop_token cancel) {
  return exec_in_vm(*vms_, vm_id, request, std::move(cancel));
}

Result<ExecResult> QemuProvider::exec_streaming(const std::string& vm_id,
                                                const ExecRequest& request, std::stop_token cancel,
                                                const OutputSink& sink) {
  return exec_in_vm(*vms_, vm_id, request, std::move(cancel), sink);
}

Result<std::string> QemuProvider::qemu_status(const std::string& vm_id) const {
  auto slot = vms_->find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (!slot->vm) {
    return Error::invalid_transition(vm_id, std::string(state_name(slot->info.state)), "status");
  }
  return slot->vm->status();
}

int QemuProvider::vmm_pid(const std::string& vm_id) const { return vmm_pid_of(*vms_, vm_id); }

std::optional<jail::JailSpec> QemuProvider::jail_of(const std::string& vm_id) const {
  auto slot = vms_->find(vm_id);
  if (!slot) return std::nullopt;
  std::lock_guard lock(slot->mu);
  return slot->vm ? slot->vm->jail() : std::nullopt;
}

uint64_t QemuProvider::boot_us(const std::string& vm_id) const {
  auto slot = vms_->find(vm_id);
  if (!slot) return 0;
  std::lock_guard lock(slot->mu);
  return slot->vm ? slot->vm->boot_us() : 0;
}

}  // namespace paddock::runtime
