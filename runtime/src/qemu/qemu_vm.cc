#include "qemu/qemu_vm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process.hpp>
#include <boost/process/extend.hpp>
#include <filesystem>
#include <fstream>
#include <optional>

#include "os/untrusted_file.h"
#include "paddock/base/os_error.h"
#include "paddock/runtime/network.h"

namespace paddock::runtime::qemu {

namespace bp = boost::process;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// The read end of a pipe whose write end this process holds until it exits (never closed,
// close-on-exec so no child keeps it): a jailer given it learns from EOF that the worker is gone,
// however it died. One per process; -1 if the pipe could not be made (then jails have none).
int lifeline_read_end() {
  static const int fd = [] {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return -1;
    return p[0];  // p[1] is deliberately never closed: it is this process's life
  }();
  return fd;
}

// Where QEMU finds its files: host paths, or the chroot's when jailed.
struct Paths {
  std::string kernel, initrd, memory, incoming;
  std::string sockets;  // directory of the QMP and agent sockets ("" = "/")
};

Paths paths_for(const LaunchSpec& s) {
  if (!s.jail) return {s.kernel, s.initrd, s.memory_file, s.incoming_state, s.run_dir};
  return {"/vmlinuz", "/initrd", s.memory_private ? "/memory" : "/ram",
          s.incoming_state.empty() ? "" : "/state", ""};
}

std::vector<std::string> qemu_args(const LaunchSpec& s) {
  const Paths p = paths_for(s);
  const std::string memory = "memory-backend-file,id=ram,size=" + std::to_string(s.mem_mib) +
                             "M,mem-path=" + p.memory +
                             (s.memory_private ? ",share=off,readonly=on,rom=off" : ",share=on");
  std::vector<std::string> args = {
      "-M",
      machine_arg(s) + ",memory-backend=ram",
      "-accel",
      s.accel,
      "-cpu",
      cpu_arg(s),
      "-m",
      std::to_string(s.mem_mib),
      "-object",
      memory,
      "-smp",
      std::to_string(s.vcpus),
      "-nodefaults",
      "-no-user-config",
      "-nographic",
      "-no-reboot",
      "-serial",
      "stdio",
      "-monitor",
      "none",
      "-kernel",
      p.kernel,
      "-initrd",
      p.initrd,
      "-append",
      s.kernel_args,
      "-device",
      "virtio-serial-device",
      "-chardev",
      "socket,id=agent,path=" + p.sockets + "/agent.sock,server=on,wait=off",
      "-device",
      "virtserialport,chardev=agent,name=paddock.agent",
      "-qmp",
      "unix:" + p.sockets + "/qmp.sock,server=on,wait=off",
      // QEMU's own seccomp filter: no obsolete system calls, no set*uid, no fork or exec, no
      // scheduler or affinity changes.
      "-sandbox",
      "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
  };
  // The jail's pid namespace makes a pidfile useless there (QEMU is pid 1); the cgroup finds it.
  if (!s.jail) args.insert(args.end(), {"-pidfile", s.run_dir + "/qemu.pid"});
  if (s.tap_fd >= 0) {
    // The TAP is already open in the VM's namespace: QEMU needs no privilege for it.
    args.insert(args.end(), {"-netdev", "tap,id=net0,fd=" + std::to_string(kTapFd), "-device",
                             std::string("virtio-net-device,netdev=net0,mac=") + net::kGuestMac});
  }
  if (!s.rootfs.empty()) {
    // Read-only for QEMU too (readonly=on: opened O_RDONLY, the guest sees a read-only disk), so
    // no guest can change the image, whatever it mounts. Same path in and out of the jail.
    args.insert(args.end(),
                {"-drive", "file=" + s.rootfs + ",format=raw,if=none,readonly=on,id=root",
                 "-device", "virtio-blk-device,drive=root"});
  }
  if (!s.incoming_state.empty()) {
    // Paused after the state is loaded (-S), so the host makes the clone unique before it runs.
    args.insert(args.end(), {"-incoming", "defer", "-S"});
  }
  return args;
}

// The RAM file is shared (not copied into the migration stream) on both ends.
const nlohmann::json kIgnoreShared = {
    {"capabilities",
     nlohmann::json::array({{{"capability", "x-ignore-shared"}, {"state", true}}})}};

// Connects to the agent's chardev socket; QEMU listens on it from the start.
int connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return -1;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string machine_arg(const LaunchSpec&) { return "microvm,isa-serial=on,rtc=on"; }
std::string cpu_arg(const LaunchSpec& s) { return s.accel == "kvm" ? "host" : "max"; }

// The line paddock-jailer wrote when a step failed, if it did.
std::optional<std::string> jailer_failure(const std::string& console) {
  const auto at = console.find("paddock-jailer: ");
  if (at == std::string::npos) return std::nullopt;
  const auto end = console.find('\n', at);
  return console.substr(at + 16, end == std::string::npos ? std::string::npos : end - at - 16);
}

// A failed start: the jailer's own error (Jailer) when it reported one, else `otherwise`.
Error start_error(const std::string& console, Error otherwise) {
  if (auto line = jailer_failure(console)) return Error::jailer(*line);
  return otherwise;
}

QemuVm::QemuVm(LaunchSpec spec) : spec_(std::move(spec)) {
  if (spec_.jail) spec_.run_dir = jail::jail_root(*spec_.jail);
  if (spec_.memory_file.empty()) spec_.memory_file = spec_.run_dir + "/ram";
}

int QemuVm::pid() const { return child_ ? child_->id() : -1; }

int QemuVm::vmm_pid() const {
  if (!child_) return -1;
  if (!spec_.jail) return child_->id();
  const std::string p = std::to_string(child_->id());
  std::ifstream children("/proc/" + p + "/task/" + p + "/children");
  int pid = -1;
  return children >> pid ? pid : -1;
}

Result<std::unique_ptr<QemuVm>> QemuVm::boot(const LaunchSpec& spec) {
  const auto t0 = Clock::now();
  std::unique_ptr<QemuVm> vm(new QemuVm(spec));
  if (auto st = vm->spawn(); !st) return st.error();
  if (auto st = vm->wait_for_agent(); !st) return st.error();  // ~QemuVm cleans up
  vm->boot_us_ = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
  return vm;
}

Result<std::unique_ptr<QemuVm>> QemuVm::restore(const LaunchSpec& spec) {
  const auto t0 = Clock::now();
  std::unique_ptr<QemuVm> vm(new QemuVm(spec));
  if (auto st = vm->spawn(); !st) return st.error();
  {
    std::lock_guard lock(vm->control_mu_);
    if (auto st = vm->connect_qmp(); !st) return st.error();
    if (auto st = vm->migrate("migrate-incoming", "file:" + paths_for(vm->spec_).incoming); !st) {
      return st.error();
    }
  }
  // QEMU listens on the agent's socket from the start; the guest answers once it runs.
  const int fd = connect_unix(vm->spec_.run_dir + "/agent.sock");
  if (fd < 0)
    return Error::guest_agent(Cause::kVmmStartFailed,
                              base::error_message("connect to the restored VM's agent"));
  vm->agent_ = std::make_unique<AgentClient>(fd);
  vm->boot_us_ = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
  return vm;
}

Status QemuVm::connect_qmp() {
  if (auto err = qmp_.connect(spec_.run_dir + "/qmp.sock", 10s, [this] { return exited(); })) {
    if (exited()) {
      stop_console_reader();
      return start_error(
          console_.tail(),
          Error::unsupported(Cause::kVmmStartFailed, "qemu exited at start (" + exit_description() +
                                                         "); its output: " + console_.tail()));
    }
    return Error::unsupported(Cause::kVmmStartFailed, "qmp: " + *err);
  }
  return {};
}

Status QemuVm::migrate(const std::string& command, const std::string& uri) {
  std::string error;
  if (!qmp_.execute("migrate-set-capabilities", kIgnoreShared, 5s, error)) {
    return Error::unsupported(Cause::kVmmFailed, "qmp migrate-set-capabilities: " + error);
  }
  if (!qmp_.execute(command, {{"uri", uri}}, 5s, error)) {
    return Error::unsupported(Cause::kVmmFailed, "qmp " + command + " " + uri + ": " + error);
  }
  const auto deadline = Clock::now() + 60s;
  auto pause = 1ms;
  while (Clock::now() < deadline) {
    auto r = qmp_.execute("query-migrate", nullptr, 5s, error);
    if (!r) return Error::unsupported(Cause::kVmmFailed, "qmp query-migrate: " + error);
    const std::string status = qmp_string(*r, "status", "");
    if (status == "completed") return {};
    if (status == "failed" || status == "cancelled") {
      return Error::unsupported(Cause::kVmmFailed,
                                command + " " + uri + " " + status + ": " +
                                    qmp_string(*r, "error-desc", "no reason given") +
                                    "; qemu output: " + console_.tail());
    }
    if (exited()) {
      return Error::unsupported(
          Cause::kVmmFailed,
          command + ": qemu exited (" + exit_description() + "): " + console_.tail());
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
  return Error::unsupported(Cause::kTimeout, command + " " + uri + " did not complete within 60 s");
}

Status QemuVm::save_state(const std::string& path) {
  std::lock_guard lock(control_mu_);
  if (!spec_.jail) return migrate("migrate", "file:" + path);
  // A jailed QEMU writes inside its chroot, as the jail's user. The snapshot gets a copy that is
  // root's and read-only, so no later VM running as that uid could change what clones load.
  const std::string inside = spec_.run_dir + "/snapshot.state";
  if (auto st = migrate("migrate", "file:/snapshot.state"); !st) return st;
  // The chroot is QEMU's (and a guest's that took it over): never follow a link put there.
  if (auto err = os::copy_untrusted_file(inside, path, 0444); !err.empty()) {
    return Error::unsupported(Cause::kHostIo, err);
  }
  std::error_code ec;
  fs::remove(inside, ec);
  return {};
}

Result<AgentIdentity> QemuVm::refresh(const std::string& hostname) {
  std::lock_guard lock(exec_mu_);
  if (!agent_) return Error::guest_agent("no agent connection");
  std::string entropy(64, '\0');
  if (::getrandom(entropy.data(), entropy.size(), 0) != static_cast<ssize_t>(entropy.size())) {
    return Error::guest_agent(Cause::kHostIo,
                              base::error_message("getrandom for the guest's entropy"));
  }
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  // A fresh clone's first answer is slow (an empty TCG translation cache, pages faulted in): allow
  // it the boot watchdog's time.
  auto identity =
      agent_->refresh(entropy, static_cast<uint64_t>(now.count()), hostname, spec_.boot_timeout);
  std::fill(entropy.begin(), entropy.end(), '\0');
  return identity;
}

Status QemuVm::spawn() {
  std::error_code ec;
  // A jail's directory is made by the jailer (and must not exist before).
  if (!spec_.jail) fs::create_directories(spec_.run_dir, ec);
  if (ec)
    return Error::unsupported(Cause::kHostIo, "create " + spec_.run_dir + ": " + ec.message());
  std::string binary = spec_.qemu_binary;
  std::vector<std::string> args = qemu_args(spec_);
  if (spec_.jail) {
    jail::JailSpec& j = *spec_.jail;
    j.exec_file = spec_.qemu_binary;
    j.args = args;
    j.kvm = spec_.accel == "kvm";
    j.files = {{"vmlinuz", spec_.kernel}, {"initrd", spec_.initrd}};
    if (spec_.memory_private) j.files.emplace_back("memory", spec_.memory_file);
    if (!spec_.incoming_state.empty()) j.files.emplace_back("state", spec_.incoming_state);
    if (!spec_.rootfs.empty()) j.ro_binds.push_back(spec_.rootfs);
    j.keep_fds.clear();
    if (spec_.tap_fd >= 0) j.keep_fds.push_back(kTapFd);
    j.lifeline_fd = lifeline_read_end() >= 0 ? kLifelineFd : -1;
    auto jailer = jail::paddock_jailer_argv(spec_.jailer_binary, j);
    if (!jailer) return jailer.error();
    binary = spec_.jailer_binary;
    args.assign(jailer.value().begin() + 1, jailer.value().end());
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Error::unsupported(Cause::kHostIo, base::error_message("pipe for the qemu console"));
  }
  const int console_write = fds[1];
  console_fd_ = fds[0];
  argv_ = args;
  const int tap = spec_.tap_fd;
  const int lifeline = spec_.jail ? lifeline_read_end() : -1;
  const pid_t worker = ::getpid();
  try {
    child_ = std::make_unique<bp::child>(
        binary, bp::args(argv_), bp::std_in < bp::null,
        bp::extend::on_exec_setup([console_write, tap, lifeline, worker](auto&) {
          // In the child, before exec: the console (stdout and
          // stderr) into our pipe, and QEMU dies with the thread
          // that started it, so a crashed worker leaks no VM.
          ::dup2(console_write, STDOUT_FILENO);
          ::dup2(console_write, STDERR_FILENO);
          // The TAP and the jailer's lifeline at fixed
          // numbers, without close-on-exec (dup2 clears it),
          // by way of copies above both so neither overwrites
          // the other.
          auto above = [](int fd) {
            if (fd < 0) return -1;
            const int copy = ::fcntl(fd, F_DUPFD, 512);
            return copy >= 0 ? copy : fd;
          };
          const int t = above(tap);
          const int l = above(lifeline);
          if (t >= 0) ::dup2(t, kTapFd);
          if (l >= 0) ::dup2(l, kLifelineFd);
          // Nothing else crosses into QEMU: fds another thread had
          // open without close-on-exec at this moment (a pipe to a
          // helper command, say) would live as long as the VM, and
          // a compromised VMM would hold them.
          ::close_range(3, kLifelineFd - 1, 0);
          if (l < 0) ::close(kLifelineFd);
          if (t < 0) ::close(kTapFd);
          ::close_range(kTapFd + 1, ~0U, 0);
          ::prctl(PR_SET_PDEATHSIG, SIGKILL);
          // The worker may have died before the line above.
          if (::getppid() != worker) ::_exit(127);
        }));
  } catch (const std::exception& e) {
    ::close(console_write);
    return Error::unsupported(Cause::kVmmStartFailed, "start " + binary + ": " + e.what());
  }
  ::close(console_write);
  console_reader_ = std::thread([this] {
    char buf[4096];
    while (true) {
      const ssize_t n = ::read(console_fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // QEMU closed its end (exited)
      console_.append(std::string_view(buf, static_cast<size_t>(n)));
    }
  });
  return {};
}

Status QemuVm::wait_for_agent() {
  const auto deadline = Clock::now() + spec_.boot_timeout;
  {
    std::lock_guard lock(control_mu_);
    if (auto st = connect_qmp(); !st) return st;
  }
  const std::string agent_path = spec_.run_dir + "/agent.sock";
  while (Clock::now() < deadline) {
    if (exited()) {
      stop_console_reader();
      return start_error(console_.tail(),
                         Error::guest_agent(Cause::kVmmStartFailed,
                                            "the VM stopped during boot (" + exit_description() +
                                                "); console tail:\n" + console_.tail()));
    }
    if (!agent_) {
      const int fd = connect_unix(agent_path);
      if (fd >= 0) agent_ = std::make_unique<AgentClient>(fd);
    }
    if (agent_ && agent_->ping(250ms)) return {};
    std::this_thread::sleep_for(50ms);
  }
  return Error::guest_agent(Cause::kTimeout, "the guest agent did not answer within " +
                                                 std::to_string(spec_.boot_timeout.count()) +
                                                 " ms of boot; console tail:\n" + console_.tail());
}

bool QemuVm::exited() {
  if (!child_) return true;
  std::error_code ec;
  return !child_->running(ec);
}

std::string QemuVm::exit_description() const {
  if (!child_) return "not started";
  const int status = child_->native_exit_code();
  std::string d = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                      : "exit status " + std::to_string(WEXITSTATUS(status));
  if (spec_.jail && jail::oom_kills(*spec_.jail) > 0) {
    d += ": the host's OOM killer ended the VMM at its cgroup's memory limit (" +
         std::to_string(spec_.jail->memory_bytes >> 20) +
         " MiB: the guest's memory plus the "
         "VMM allowance)";
  }
  return d;
}

Status QemuVm::pause() {
  std::lock_guard lock(control_mu_);
  std::string error;
  if (!qmp_.execute("stop", nullptr, 5s, error))
    return Error::unsupported(Cause::kVmmFailed, "qmp stop: " + error);
  return {};
}

Status QemuVm::resume() {
  std::lock_guard lock(control_mu_);
  std::string error;
  if (!qmp_.execute("cont", nullptr, 5s, error))
    return Error::unsupported(Cause::kVmmFailed, "qmp cont: " + error);
  return {};
}

Result<std::string> QemuVm::status() {
  std::lock_guard lock(control_mu_);
  std::string error;
  auto r = qmp_.execute("query-status", nullptr, 5s, error);
  if (!r) return Error::unsupported(Cause::kVmmFailed, "qmp query-status: " + error);
  return qmp_string(*r, "status", "unknown");
}

Result<ExecResult> QemuVm::exec(const ExecRequest& request, std::stop_token cancel,
                                const OutputSink& on_output) {
  std::lock_guard lock(exec_mu_);
  if (!agent_) return Error::guest_agent("no agent connection");
  // The agent enforces timeout_ms itself; the host allows it a margin to report.
  const auto deadline = std::chrono::milliseconds(request.timeout_ms) + 15s;
  auto result = agent_->exec(request, std::move(cancel), deadline, on_output);
  if (result) return result;
  // Say whether the guest itself went away (a kernel panic ends QEMU: -no-reboot, panic=-1).
  for (int i = 0; i < 20 && !exited(); ++i) std::this_thread::sleep_for(50ms);
  if (exited()) {
    // QEMU is gone: read its console to the end before quoting it.
    stop_console_reader();
    // A panic's cause scrolls out of the tail behind its backtrace: quote it on its own.
    std::string cause = console_.line_containing("Kernel panic");
    if (cause.empty()) cause = console_.line_containing("BUG: ");
    return Error::guest_agent("the VM stopped during the job (" + exit_description() + ")" +
                              (cause.empty() ? "" : "; guest kernel: " + cause) +
                              "; console tail:\n" + console_.tail());
  }
  return Error::guest_agent(result.error().detail() + "; console tail:\n" + console_.tail());
}

Status QemuVm::ping(std::chrono::milliseconds timeout) {
  std::lock_guard lock(exec_mu_);
  if (!agent_) return Error::guest_agent("no agent connection");
  if (!agent_->ping(timeout)) {
    return Error::guest_agent(
        agent_->healthy() ? "no answer to ping within " + std::to_string(timeout.count()) + " ms"
                          : "agent channel broken: " + agent_->broken_reason());
  }
  return {};
}

Status QemuVm::shutdown() {
  std::lock_guard lock(control_mu_);
  agent_.reset();
  if (child_ && !exited()) {
    std::string error;
    // Polls for the exit from 1 ms up to shutdown_poll: QEMU leaves within milliseconds of
    // `quit`, and a fixed 50 ms sleep would add 50 ms to every job's teardown.
    auto wait_exit = [&](Clock::time_point deadline) {
      auto pause = 1ms;
      while (!exited() && Clock::now() < deadline) {
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::milliseconds>(pause * 2, spec_.shutdown_poll);
      }
    };
    if (qmp_.connected() && qmp_.execute("quit", nullptr, 1s, error)) {
      wait_exit(Clock::now() + std::min<std::chrono::milliseconds>(spec_.shutdown_grace, 1s));
    }
    qmp_.close();
    // The reference runtime's escalation: SIGTERM, poll, SIGKILL after the grace.
    if (!exited()) ::kill(child_->id(), SIGTERM);
    wait_exit(Clock::now() + spec_.shutdown_grace);
    if (!exited()) {
      std::error_code ec;
      child_->terminate(ec);  // SIGKILL and reap
      if (ec)
        return Error::shutdown("SIGKILL qemu pid " + std::to_string(child_->id()) + ": " +
                               ec.message());
    }
  }
  if (child_) {
    std::error_code ec;
    child_->wait(ec);  // reap
  }
  qmp_.close();
  stop_console_reader();
  if (spec_.jail) {
    // The chroot (with its links) and the cgroups; idempotent.
    if (auto st = jail::teardown_jail(*spec_.jail); !st) return st;
    return {};
  }
  std::error_code ec;
  fs::remove_all(spec_.run_dir, ec);
  if (ec) return Error::shutdown("remove " + spec_.run_dir + ": " + ec.message());
  return {};
}

void QemuVm::stop_console_reader() {
  std::lock_guard lock(console_mu_);  // exec's error path and shutdown may both get here
  // QEMU is gone, so its end of the pipe is closed and the reader sees end of file.
  if (console_reader_.joinable()) console_reader_.join();
  if (console_fd_ >= 0) ::close(console_fd_);
  console_fd_ = -1;
}

QemuVm::~QemuVm() { (void)shutdown(); }

}  // namespace paddock::runtime::qemu
