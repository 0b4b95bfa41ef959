#include "firecracker/firecracker_vm.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "firecracker/vsock.h"
#include "paddock/base/os_error.h"
#include "qemu/snapshot_store.h"

extern char** environ;

namespace paddock::runtime::firecracker {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr const char* kApiSock = "api.sock";
constexpr const char* kVsock = "v.sock";
constexpr const char* kMetricsFifo = "metrics.fifo";

std::string random_entropy() {
  std::random_device rd;
  std::string e(64, '\0');
  for (auto& c : e) c = static_cast<char>(rd());
  return e;
}

uint64_t unix_ns_now() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

FirecrackerVm::FirecrackerVm(FcLaunch launch) : launch_(std::move(launch)) {
  if (launch_.jail) {
    // The jailer's chroot: <base>/<exec file name>/<id>/root.
    root_ = launch_.jail->chroot_base_dir + "/" +
            fs::path(launch_.firecracker_binary).filename().string() + "/" + launch_.jail->id +
            "/root";
  } else {
    root_ = launch_.run_dir;
  }
}

FirecrackerVm::~FirecrackerVm() { (void)shutdown(); }

std::string FirecrackerVm::vm_path(const std::string& name) const {
  return launch_.jail ? "/" + name : host_path(name);
}

Status FirecrackerVm::link_in(const std::string& source, const std::string& name) {
  const std::string target = host_path(name);
  std::error_code ec;
  fs::create_hard_link(source, target, ec);
  if (ec) {
    // Another filesystem: copy, keeping holes (a RAM file is mostly holes). The copy is this VM's
    // own, root's and read-only.
    if (auto st = qemu::copy_sparse(source, target); !st) return st;
    if (::chmod(target.c_str(), 0444) != 0) {
      return Error::jailer(base::error_message("chmod " + target));
    }
  }
  if (!launch_.jail) return {};
  // A hard link is the same file: never chown it (that would hand the image, or the snapshot
  // every clone maps, to this VM's user). The jailed Firecracker only reads it, so it must be
  // readable by others and writable by no one the jail's uid or gid could be.
  struct stat st {};
  if (::stat(target.c_str(), &st) != 0) return Error::jailer(base::error_message("stat " + target));
  const bool owner_writes = st.st_uid == launch_.jail->uid && (st.st_mode & S_IWUSR);
  const bool group_writes = st.st_gid == launch_.jail->gid && (st.st_mode & S_IWGRP);
  if (owner_writes || group_writes || (st.st_mode & S_IWOTH)) {
    return Error::jailer(source + ": the jail's uid " + std::to_string(launch_.jail->uid) +
                         " could write it (a hard link into the chroot shares the file)");
  }
  if ((st.st_mode & S_IROTH) == 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return Error::jailer(source + ": mode " + mode +
                         ", not readable by others: the jailed Firecracker could not read it");
  }
  return {};
}

std::string FirecrackerVm::log_path() const {
  // Jailed: beside the chroot, not in it (the jail's directory is removed with it).
  return launch_.jail ? fs::path(root_).parent_path().string() + "/vmm.log" : root_ + "/vmm.log";
}

std::string FirecrackerVm::log_tail() const {
  std::ifstream in(log_path(), std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > 2048) text = text.substr(text.size() - 2048);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::string shown;
  for (char c : text) {
    shown += (static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f ? '?' : c;
  }
  return shown;
}

Status FirecrackerVm::prepare_root() {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return Error::jailer("create " + root_ + ": " + ec.message());
  if (launch_.jail) {
    // Firecracker's jailer makes /dev/kvm, /dev/net/tun and /dev/userfaultfd in the chroot itself
    // (it fails if they exist); we link in only the VM's files, owned by the jail's user.
    if (::chown(root_.c_str(), launch_.jail->uid, launch_.jail->gid) != 0) {
      return Error::jailer(base::error_message("chown " + root_));
    }
  }
  if (launch_.snapshot_state.empty()) {
    if (auto st = link_in(launch_.kernel, "vmlinux"); !st) return st;
    if (!launch_.initrd.empty()) {
      if (auto st = link_in(launch_.initrd, "initrd"); !st) return st;
    }
    if (!launch_.rootfs.empty()) {
      if (auto st = link_in(launch_.rootfs, "rootfs.ext4"); !st) return st;
    }
  } else {
    if (auto st = link_in(launch_.snapshot_state, "state"); !st) return st;
    if (auto st = link_in(launch_.snapshot_memory, "memory"); !st) return st;
  }
  // The reader opens the FIFO first: Firecracker's non-blocking open for writing needs one.
  if (::mkfifo(host_path(kMetricsFifo).c_str(), 0600) != 0) {
    return Error::metrics(base::error_message("mkfifo " + host_path(kMetricsFifo)));
  }
  if (launch_.jail &&
      ::chown(host_path(kMetricsFifo).c_str(), launch_.jail->uid, launch_.jail->gid) != 0) {
    return Error::jailer(base::error_message("chown " + host_path(kMetricsFifo)));
  }
  auto poller = MetricsPoller::open(host_path(kMetricsFifo));
  if (!poller) return poller.error();
  metrics_ = std::move(poller.value());
  return {};
}

Status FirecrackerVm::spawn() {
  if (launch_.jail) {
    jail::FirecrackerJailerSpec spec = *launch_.jail;
    spec.exec_file = launch_.firecracker_binary;
    spec.api_sock = "/" + std::string(kApiSock);
    spec.netns = launch_.netns;
    auto argv = jail::firecracker_jailer_argv(spec);
    if (!argv) return argv.error();
    argv_ = std::move(argv.value());
  } else {
    argv_ = {launch_.firecracker_binary, "--api-sock", host_path(kApiSock)};
  }
  std::vector<char*> args;
  for (auto& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  // stdout and stderr go to a file the provider reads when the start fails.
  const int log = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log < 0)
    return Error::unsupported(Cause::kHostIo, base::error_message("create " + log_path()));
  // Not jailed, Firecracker itself joins the VM's network namespace (the jailer does, jailed).
  int netns = -1;
  if (!launch_.jail && !launch_.netns.empty()) {
    netns = ::open(launch_.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns < 0) {
      ::close(log);
      return Error::network_setup(base::error_message("open " + launch_.netns));
    }
  }
  const pid_t parent = ::getpid();
  child_ = ::fork();
  if (child_ < 0) {
    ::close(log);
    if (netns >= 0) ::close(netns);
    return Error::unsupported(Cause::kResourceExhausted, base::error_message("fork"));
  }
  if (child_ == 0) {
    // Only async-signal-safe calls until exec. Firecracker dies with its worker (jailed, the
    // jailer does; Firecracker, in its own pid namespace, is ended by the startup sweep).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    if (::dup2(log, 1) < 0 || ::dup2(log, 2) < 0) ::_exit(126);
    if (netns >= 0 && ::setns(netns, CLONE_NEWNET) != 0) ::_exit(126);
    ::execve(args[0], args.data(), environ);
    ::_exit(127);
  }
  ::close(log);
  if (netns >= 0) ::close(netns);
  vmm_pid_ = launch_.jail ? -1 : child_;
  if (launch_.jail) {
    // With --new-pid-ns the jailer starts Firecracker, writes its pid next to it and exits 0:
    // wait for that first (Firecracker may open its socket before the pid is written), and fail
    // at once, with its message, when the jailer fails.
    if (auto st = await_jailer(); !st) return st;
  }
  api_ = std::make_unique<ApiClient>(host_path(kApiSock),
                                     ApiTimeouts{launch_.api_timeout, launch_.boot_timeout});
  if (auto st = api_->wait_for_socket(launch_.api_timeout); !st) {
    if (vmm_gone()) {
      return Error::unsupported(Cause::kVmmStartFailed,
                                argv_[0] + " exited before its API socket appeared: " + log_tail());
    }
    return st;
  }
  return start_metrics();
}

Status FirecrackerVm::await_jailer() {
  const std::string pid_path =
      root_ + "/" + fs::path(launch_.firecracker_binary).filename().string() + ".pid";
  const auto deadline = Clock::now() + launch_.api_timeout;
  int status = 0;
  pid_t done = 0;
  for (auto pause = 1ms; (done = ::waitpid(child_, &status, WNOHANG)) == 0;) {
    if (Clock::now() >= deadline) {
      return Error::jailer(Cause::kTimeout, "the jailer did not exit within " +
                                                std::to_string(launch_.api_timeout.count()) +
                                                " ms: " + log_tail());
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
  if (done == child_) reaped_ = true;
  if (done != child_ || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string how = "not reaped";
    if (done == child_) {
      how = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                              : "signal " + std::to_string(WTERMSIG(status));
    }
    return Error::jailer("the jailer failed (" + how + "): " + log_tail());
  }
  std::ifstream pidfile(pid_path);
  pid_t pid = -1;
  if (!(pidfile >> pid) || pid <= 0) return Error::jailer("no pid in " + pid_path);
  vmm_pid_ = pid;
  return {};
}

Status FirecrackerVm::start_metrics() { return api_->put_metrics(vm_path(kMetricsFifo)); }

Status FirecrackerVm::connect_agent(Clock::time_point deadline) {
  // The guest's agent listens once it has booted: until then Firecracker closes the connection.
  std::string last = "not tried";
  while (Clock::now() < deadline) {
    if (vmm_gone()) {
      return Error::guest_agent(Cause::kVmmStartFailed,
                                "firecracker exited while the guest booted: " + log_tail());
    }
    auto fd = connect_vsock(host_path(kVsock), kAgentVsockPort, 1s);
    if (fd) {
      auto agent = std::make_unique<AgentClient>(fd.value());
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (agent->ping(std::clamp<std::chrono::milliseconds>(left, 1ms, 1000ms))) {
        agent_ = std::move(agent);
        return {};
      }
      last = "the agent did not answer ping";
    } else {
      last = fd.error().detail();
    }
    std::this_thread::sleep_for(20ms);
  }
  return Error::guest_agent(
      Cause::kTimeout,
      "no guest agent within " + std::to_string(launch_.boot_timeout.count()) + " ms: " + last);
}

Result<std::unique_ptr<FirecrackerVm>> FirecrackerVm::boot(const FcLaunch& launch) {
  std::unique_ptr<FirecrackerVm> vm(new FirecrackerVm(launch));
  const auto deadline = Clock::now() + launch.boot_timeout;
  if (auto st = vm->prepare_root(); !st) return st.error();
  if (auto st = vm->spawn(); !st) return st.error();
  VmConfig config;
  config.machine = MachineConfig{launch.vcpus, launch.mem_mib, false, false};
  config.boot.kernel_image_path = vm->vm_path("vmlinux");
  if (!launch.initrd.empty()) config.boot.initrd_path = vm->vm_path("initrd");
  config.boot.boot_args = launch.kernel_args;
  if (!launch.rootfs.empty())
    config.rootfs = Drive{"rootfs", vm->vm_path("rootfs.ext4"), true, true};
  if (!launch.tap_name.empty()) {
    config.network_interfaces.push_back(
        NetworkInterface{"eth0", launch.tap_name, launch.guest_mac});
  }
  config.vsock = Vsock{3, vm->vm_path(kVsock)};
  if (auto st = vm->api_->configure(config); !st) return st.error();
  if (auto st = vm->api_->instance_start(); !st) return st.error();
  if (auto st = vm->connect_agent(deadline); !st) return st.error();
  return vm;
}

Result<std::unique_ptr<FirecrackerVm>> FirecrackerVm::restore(const FcLaunch& launch) {
  std::unique_ptr<FirecrackerVm> vm(new FirecrackerVm(launch));
  if (auto st = vm->prepare_root(); !st) return st.error();
  if (auto st = vm->spawn(); !st) return st.error();
  SnapshotLoad load;
  load.snapshot_path = vm->vm_path("state");
  load.backend = SnapshotLoad::Backend::kFile;
  load.backend_path = vm->vm_path("memory");
  load.resume_vm = false;
  // Jailed, every VM's vsock is /v.sock in its own chroot: the snapshot's path fits as it is.
  if (!launch.jail) load.vsock_uds_path = vm->vm_path(kVsock);
  if (auto st = vm->api_->load_snapshot(load); !st) return st.error();
  return vm;
}

Status FirecrackerVm::pause() {
  std::lock_guard lock(control_mu_);
  return api_->pause();
}

Status FirecrackerVm::resume() {
  std::lock_guard lock(control_mu_);
  if (auto st = api_->resume(); !st) return st;
  if (!agent_) {
    // A restored VM: its agent answers again once it runs.
    return connect_agent(Clock::now() + launch_.boot_timeout);
  }
  return {};
}

Status FirecrackerVm::snapshot_to(const std::string& state_path, const std::string& memory_path) {
  std::lock_guard lock(control_mu_);
  const std::string state = host_path("snapshot.state"), memory = host_path("snapshot.memory");
  if (auto st = api_->create_snapshot(vm_path("snapshot.state"), vm_path("snapshot.memory")); !st) {
    return st;
  }
  // Out of the VM's directory into the store, then gone from here (a guest-owned VMM must not
  // keep a handle on the store's files).
  Status moved = qemu::copy_sparse(state, state_path);
  if (moved) moved = qemu::copy_sparse(memory, memory_path);
  std::error_code ec;
  fs::remove(state, ec);
  fs::remove(memory, ec);
  return moved;
}

Result<AgentIdentity> FirecrackerVm::refresh(const std::string& hostname) {
  std::lock_guard lock(exec_mu_);
  if (!agent_) return Error::guest_agent("no agent connection");
  return agent_->refresh(random_entropy(), unix_ns_now(), hostname, 5s);
}

Status FirecrackerVm::ping(std::chrono::milliseconds timeout) {
  std::lock_guard lock(exec_mu_);
  if (!agent_ || !agent_->ping(timeout)) {
    return Error::guest_agent("no answer to ping within " + std::to_string(timeout.count()) +
                              " ms" + (agent_ ? ": " + agent_->broken_reason() : ""));
  }
  return {};
}

Result<ExecResult> FirecrackerVm::exec(const ExecRequest& request, std::stop_token cancel,
                                       const OutputSink& on_output) {
  std::lock_guard lock(exec_mu_);
  if (!agent_) return Error::guest_agent("no agent connection");
  // The agent enforces the job's own limit; the deadline covers the transfer on top of it.
  return agent_->exec(request, std::move(cancel),
                      std::chrono::milliseconds(request.timeout_ms) + 30s, on_output);
}

Result<MetricsSample> FirecrackerVm::metrics() {
  std::lock_guard lock(control_mu_);
  if (!metrics_) return Error::metrics("no metrics FIFO");
  if (auto st = api_->flush_metrics(); !st) return Error::metrics(st.error().detail());
  // FlushMetrics writes the line before it answers; read what arrived.
  if (auto st = metrics_->poll(); !st) return st.error();
  if (auto last = metrics_->last(); !last) return last.error();
  return metrics_->totals();
}

namespace {

// A process that exists and is not a zombie (jailed, Firecracker is not our child: once it
// exits, it stays a zombie until whoever inherited it reaps it).
bool running(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'Z';
}

}  // namespace

bool FirecrackerVm::exited() {
  if (reaped_ || child_ <= 0) return true;
  int status = 0;
  if (::waitpid(child_, &status, WNOHANG) == child_) {
    reaped_ = true;
    return true;
  }
  return false;
}

bool FirecrackerVm::vmm_gone() {
  // Jailed, our child is the jailer, which exits once Firecracker runs (--new-pid-ns).
  return launch_.jail ? (exited() && !running(vmm_pid_)) : exited();
}

bool FirecrackerVm::wait_exit(Clock::time_point deadline) {
  // Polls from 1 ms up to shutdown_poll: Firecracker leaves within milliseconds of the signal.
  std::chrono::milliseconds pause{1};
  while (true) {
    // Jailed, Firecracker is not our child (the jailer exited): kill(pid, 0) says if it lives.
    if (vmm_gone()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, launch_.shutdown_poll);
  }
}

Status FirecrackerVm::shutdown() {
  std::lock_guard lock(control_mu_);
  {
    std::lock_guard exec_lock(exec_mu_);
    agent_.reset();
  }
  if (child_ > 0) {
    const pid_t target = vmm_pid_ > 0 ? vmm_pid_ : child_;
    // The reference runtime's escalation: ask the guest (Ctrl+Alt+Del: with reboot=k the guest's
    // reboot ends Firecracker), then SIGTERM, poll, SIGKILL after the grace.
    if (!wait_exit(Clock::now())) {
      if (api_ && api_->send_ctrl_alt_del()) wait_exit(Clock::now() + launch_.shutdown_grace);
    }
    if (!wait_exit(Clock::now())) {
      ::kill(target, SIGTERM);
      wait_exit(Clock::now() + launch_.shutdown_grace);
    }
    if (!wait_exit(Clock::now())) {
      ::kill(target, SIGKILL);
      if (target != child_) ::kill(child_, SIGKILL);
      if (!wait_exit(Clock::now() + 5s)) {
        return Error::shutdown("firecracker pid " + std::to_string(target) +
                               " still alive after SIGKILL");
      }
    }
    if (!reaped_) {
      ::waitpid(child_, nullptr, 0);
      reaped_ = true;
    }
    child_ = -1;
  }
  api_.reset();
  metrics_.reset();
  std::error_code ec;
  // Jailed, the chroot's parent (<base>/<exec>/<id>) is the jail's; the cgroups are removed by
  // the provider, which knows their parent.
  const std::string dir = launch_.jail ? fs::path(root_).parent_path().string() : root_;
  if (!dir.empty()) fs::remove_all(dir, ec);
  if (ec) return Error::shutdown("remove " + dir + ": " + ec.message());
  return {};
}

}  // namespace paddock::runtime::firecracker
