#include "paddock/runtime/qemu_provider.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "qemu/accel.h"
#include "qemu/qemu_vm.h"

namespace paddock::runtime {

namespace fs = std::filesystem;

struct QemuProvider::Slot {
  std::mutex mu;  // held across boot/shutdown of this VM only
  VmInfo info;
  std::unique_ptr<qemu::QemuVm> vm;
  std::string run_dir;
};

namespace {

// The binary as given, or found on PATH.
std::optional<std::string> find_binary(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? std::optional(name) : std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

bool process_mentions(pid_t pid, const std::string& needle) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return cmdline.find(needle) != std::string::npos;
}

}  // namespace

QemuProvider::QemuProvider(QemuConfig config) : config_(std::move(config)) {}
QemuProvider::~QemuProvider() {
  // Every VM still running is shut down by its QemuVm's destructor.
  std::lock_guard lock(mu_);
  vms_.clear();
}

Result<std::unique_ptr<QemuProvider>> QemuProvider::open(QemuConfig config) {
  std::unique_ptr<QemuProvider> p(new QemuProvider(std::move(config)));
  auto binary = find_binary(p->config_.qemu_binary);
  if (!binary) {
    return Error::unsupported(p->config_.qemu_binary +
                              " not found; install QEMU >= 8.2: apt-get install -t "
                              "bookworm-backports qemu-system-x86 (tools/install-deps.sh does)");
  }
  p->config_.qemu_binary = *binary;
  if (p->config_.image_dir.empty()) {
    return Error::unsupported("the qemu backend needs a guest image directory (--image-dir); "
                              "build one with tools/build-guest-image.sh");
  }
  p->kernel_ = p->config_.image_dir + "/vmlinuz";
  for (const char* name : {"initramfs.cpio.gz", "initramfs.cpio"}) {
    if (fs::exists(p->config_.image_dir + "/" + name)) {
      p->initrd_ = p->config_.image_dir + "/" + name;
      break;
    }
  }
  if (!fs::exists(p->kernel_) || p->initrd_.empty()) {
    return Error::unsupported("guest image incomplete in " + p->config_.image_dir +
                              " (needs vmlinuz and initramfs.cpio[.gz]); build it with "
                              "tools/build-guest-image.sh");
  }
  auto accel = qemu::choose_accel(p->config_.accel, qemu::probe_host());
  if (!accel) return accel.error();
  p->accel_ = accel.value().accel;
  spdlog::info("qemu backend: {} ({}), accel {}: {}", p->config_.qemu_binary,
               p->config_.image_dir, p->accel_, accel.value().reason);
  p->kernel_args_ = "console=ttyS0 reboot=k panic=-1 quiet";
  if (p->accel_ == "tcg") {
    // Without it a TCG guest can hang calibrating its TSC against a PIT it cannot use.
    if (auto khz = qemu::host_tsc_khz()) p->kernel_args_ += " tsc_early_khz=" + std::to_string(*khz);
  }
  if (!p->config_.extra_kernel_args.empty()) p->kernel_args_ += " " + p->config_.extra_kernel_args;
  std::error_code ec;
  fs::create_directories(p->config_.run_dir, ec);
  if (ec) return Error::unsupported("create " + p->config_.run_dir + ": " + ec.message());
  if (size_t n = sweep(p->config_.run_dir)) {
    spdlog::warn("qemu backend: removed {} VM director{} left by an earlier crash", n,
                 n == 1 ? "y" : "ies");
  }
  return p;
}

size_t QemuProvider::sweep(const std::string& run_dir) {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    if (!entry.is_directory()) continue;
    const std::string dir = entry.path().string();
    std::ifstream pidfile(dir + "/qemu.pid");
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

std::shared_ptr<QemuProvider::Slot> QemuProvider::find(const std::string& vm_id) const {
  std::lock_guard lock(mu_);
  auto it = vms_.find(vm_id);
  return it == vms_.end() ? nullptr : it->second;
}

Status QemuProvider::create(const std::string& vm_id, const VmSpec& spec) {
  if (spec.image != "default") {
    return Error::unsupported("image '" + spec.image + "' is not built; only 'default' exists yet");
  }
  std::lock_guard lock(mu_);
  if (vms_.count(vm_id) != 0) return Error::vm_already_exists(vm_id);
  auto slot = std::make_shared<Slot>();
  slot->info = VmInfo{vm_id, VmState::kCreated, spec, std::nullopt, std::nullopt};
  // Short directory names: unix socket paths are limited to 108 bytes.
  slot->run_dir = config_.run_dir + "/" + std::to_string(::getpid()) + "-" +
                  std::to_string(next_dir_++);
  vms_[vm_id] = std::move(slot);
  return {};
}

Status QemuProvider::start(const std::string& vm_id) {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (auto st = check_transition(vm_id, slot->info.state, VmOp::kStart); !st) return st;
  qemu::LaunchSpec spec{config_.qemu_binary, kernel_, initrd_, accel_, kernel_args_,
                        slot->info.spec.vcpus, slot->info.spec.mem_mib, slot->run_dir,
                        config_.boot_timeout, config_.shutdown_grace, config_.shutdown_poll};
  Result<std::unique_ptr<qemu::QemuVm>> booted = Error::unsupported("not attempted");
  for (int attempt = 1; attempt <= std::max(1, config_.boot_attempts); ++attempt) {
    booted = qemu::QemuVm::boot(spec);
    if (booted) break;
    spdlog::warn("vm '{}': boot attempt {} failed: {}", vm_id, attempt, booted.error().message());
    // Only a guest that hung or died is worth another try; a QEMU that cannot start is not.
    if (booted.error().variant() != Variant::kGuestAgent) break;
  }
  if (!booted) return booted.error();
  slot->vm = std::move(booted.value());
  slot->info.state = VmState::kRunning;
  return {};
}

Status QemuProvider::stop(const std::string& vm_id) {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (auto st = check_transition(vm_id, slot->info.state, VmOp::kStop); !st) return st;
  if (auto st = slot->vm->pause(); !st) return st;
  slot->info.state = VmState::kStopped;
  return {};
}

Status QemuProvider::resume(const std::string& vm_id) {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (auto st = check_transition(vm_id, slot->info.state, VmOp::kResume); !st) return st;
  if (auto st = slot->vm->resume(); !st) return st;
  slot->info.state = VmState::kRunning;
  return {};
}

Status QemuProvider::destroy(const std::string& vm_id) {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (auto st = check_transition(vm_id, slot->info.state, VmOp::kDestroy); !st) return st;
  if (slot->vm) {
    if (auto st = slot->vm->shutdown(); !st) return st;
    slot->vm.reset();
  }
  slot->info.state = VmState::kDestroyed;
  return {};
}

Result<SnapshotInfo> QemuProvider::snapshot(const std::string& vm_id, const std::string&) {
  if (!find(vm_id)) return Error::vm_not_found(vm_id);
  return Error::unsupported("snapshots on the qemu backend arrive with warm starts");
}

Status QemuProvider::restore(const std::string& vm_id, const std::string& snapshot_id,
                             const std::string&) {
  return Error::snapshot_not_found(vm_id, snapshot_id);
}

Result<VmInfo> QemuProvider::get(const std::string& vm_id) const {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  return slot->info;
}

Result<std::vector<VmInfo>> QemuProvider::list() const {
  std::vector<std::shared_ptr<Slot>> slots;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, slot] : vms_) slots.push_back(slot);
  }
  std::vector<VmInfo> out;
  for (const auto& slot : slots) {
    std::lock_guard lock(slot->mu);
    if (slot->info.state != VmState::kDestroyed) out.push_back(slot->info);
  }
  return out;
}

Result<std::vector<SnapshotInfo>> QemuProvider::list_snapshots(const std::string& vm_id) const {
  if (!find(vm_id)) return Error::vm_not_found(vm_id);
  return std::vector<SnapshotInfo>{};
}

Status QemuProvider::delete_snapshot(const std::string& vm_id, const std::string& snapshot_id) {
  return Error::snapshot_not_found(vm_id, snapshot_id);
}

Result<std::vector<SnapshotInfo>> QemuProvider::all_snapshots() const {
  return std::vector<SnapshotInfo>{};
}

Status QemuProvider::ping(const std::string& vm_id, std::chrono::milliseconds timeout) {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (slot->info.state != VmState::kRunning) {
    return Error::invalid_transition(vm_id, std::string(state_name(slot->info.state)), "ping");
  }
  return slot->vm->ping(timeout);
}

Result<ExecResult> QemuProvider::exec(const std::string& vm_id, const ExecRequest& request,
                                      std::stop_token cancel) {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  qemu::QemuVm* vm = nullptr;
  {
    std::lock_guard lock(slot->mu);
    if (slot->info.state != VmState::kRunning) {
      return Error::invalid_transition(vm_id, std::string(state_name(slot->info.state)), "exec");
    }
    vm = slot->vm.get();
  }
  // REQUIRES: the caller does not destroy the VM while its exec runs (the worker never does).
  return vm->exec(request, std::move(cancel));
}

Result<std::string> QemuProvider::qemu_status(const std::string& vm_id) const {
  auto slot = find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (!slot->vm) {
    return Error::invalid_transition(vm_id, std::string(state_name(slot->info.state)), "status");
  }
  return slot->vm->status();
}

uint64_t QemuProvider::boot_us(const std::string& vm_id) const {
  auto slot = find(vm_id);
  if (!slot) return 0;
  std::lock_guard lock(slot->mu);
  return slot->vm ? slot->vm->boot_us() : 0;
}

}  // namespace paddock::runtime
