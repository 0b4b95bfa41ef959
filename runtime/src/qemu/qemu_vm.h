// One QEMU microvm process and everything it owns: its run directory (QMP and agent sockets,
// pidfile), the child process, the console reader, the QMP and agent connections. boot() returns
// a VM whose agent answered; the destructor shuts it down (QMP quit, SIGTERM, SIGKILL) and
// always reaps it and removes its directory.
//
// Thread-safety: exec() and the control calls may come from different threads; each takes the
// lock it needs.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "paddock/runtime/agent_client.h"
#include "paddock/runtime/jailer.h"
#include "paddock/runtime/provider.h"
#include "qemu/console_ring.h"
#include "qemu/qmp_client.h"

namespace boost::process {
class child;
}

namespace paddock::runtime::qemu {

struct LaunchSpec;
// The fd number QEMU finds the TAP on.
inline constexpr int kTapFd = 100;
// The jailer's lifeline (JailSpec::lifeline_fd) is passed at this number.
inline constexpr int kLifelineFd = 99;
// The -M and -cpu arguments of a launch (also recorded in snapshot metadata).
std::string machine_arg(const LaunchSpec& spec);
std::string cpu_arg(const LaunchSpec& spec);

struct LaunchSpec {
  std::string qemu_binary;
  std::string kernel;
  std::string initrd;
  // The image's root filesystem (host path; empty: none): a read-only virtio-blk drive, last of
  // the devices so a restored clone finds it where its template had it. Jailed, the jail binds it
  // read-only at the same path (never a copy: it can be hundreds of MiB).
  std::string rootfs;
  std::string accel;        // "kvm" or "tcg"
  std::string kernel_args;  // full guest command line
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
  std::string run_dir;  // a fresh directory this VM owns (removed when the VM goes)
  // The guest's RAM is a file. A booted VM shares it (share=on: the file is the RAM, so a snapshot
  // can copy it); it lives in run_dir and goes with it. A restored clone maps its snapshot's file
  // read-only and private (copy-on-write): the clone never writes it.
  std::string memory_file;  // empty: run_dir + "/ram"
  bool memory_private = false;
  // Restore instead of boot: QEMU starts with -incoming defer, loads this device state and stays
  // paused.
  std::string incoming_state;
  // The VM's TAP (opened in its network namespace), passed to QEMU as fd kTapFd; -1: no network
  // device. Not owned.
  int tap_fd = -1;
  // Start QEMU through paddock-jailer (runtime/README.md "The jail"). The provider fills the jail's
  // id, base, user, cgroup, limits and network namespace; QemuVm adds the binary, its arguments,
  // the files to link and the fds to keep. run_dir is then the chroot (host view), and QEMU sees
  // its files at /vmlinuz, /initrd, /ram or /memory, /state and its sockets at /.
  std::optional<jail::JailSpec> jail;
  std::string jailer_binary;
  std::chrono::milliseconds boot_timeout{60'000};
  std::chrono::milliseconds shutdown_grace{2'000};
  std::chrono::milliseconds shutdown_poll{50};
};

class QemuVm {
 public:
  // Spawns QEMU and waits until the guest agent answers PING. On failure everything started is
  // stopped and removed, and the error quotes the console's tail.
  static Result<std::unique_ptr<QemuVm>> boot(const LaunchSpec& spec);
  // Spawns QEMU on spec.incoming_state and spec.memory_file (private) and loads the device state;
  // the VM is paused when this returns. resume() then runs it; refresh() makes it unique.
  static Result<std::unique_ptr<QemuVm>> restore(const LaunchSpec& spec);
  ~QemuVm();

  // Saves the paused VM's device state (no RAM: it is in memory_file) to `path`.
  Status save_state(const std::string& path);
  // Gives the guest fresh entropy, the wall clock and a hostname (after a restore, before any job).
  Result<AgentIdentity> refresh(const std::string& hostname);
  const std::string& memory_file() const { return spec_.memory_file; }
  const std::optional<jail::JailSpec>& jail() const { return spec_.jail; }

  Status pause();   // QMP stop
  Status resume();  // QMP cont
  // QMP query-status: "running", "paused", ... (QEMU's run state).
  Result<std::string> status();
  Result<ExecResult> exec(const ExecRequest& request, std::stop_token cancel,
                          const OutputSink& on_output = {});
  // Whether the agent answers a PING within `timeout` (GuestAgent if not).
  Status ping(std::chrono::milliseconds timeout);
  // QMP quit, then SIGTERM, poll, SIGKILL after the grace period; always reaps. Idempotent.
  Status shutdown();

  // Spawn to agent ready (boot) or spawn to restored and paused (restore), in microseconds.
  uint64_t boot_us() const { return boot_us_; }
  int pid() const;
  // The QEMU process itself: the jailer's child when jailed, else pid(); -1 if unknown.
  int vmm_pid() const;
  std::string console_tail() const { return console_.tail(); }
  // The command line QEMU was started with (for logs and the benchmark).
  const std::vector<std::string>& argv() const { return argv_; }

 private:
  explicit QemuVm(LaunchSpec spec);
  Status spawn();
  Status wait_for_agent();
  Status connect_qmp();
  // Runs a migration command and polls query-migrate until it completes or fails.
  Status migrate(const std::string& command, const std::string& uri);
  bool exited();  // reaps the child if it has exited
  std::string exit_description() const;
  void stop_console_reader();

  LaunchSpec spec_;
  std::vector<std::string> argv_;
  std::unique_ptr<boost::process::child> child_;
  int console_fd_ = -1;
  ConsoleRing console_;
  std::thread console_reader_;
  std::mutex console_mu_;  // guards joining the reader and closing console_fd_
  std::mutex control_mu_;  // QMP and process state
  QmpClient qmp_;
  std::mutex exec_mu_;  // one exec at a time on the agent channel
  std::unique_ptr<AgentClient> agent_;
  uint64_t boot_us_ = 0;
};

}  // namespace paddock::runtime::qemu
