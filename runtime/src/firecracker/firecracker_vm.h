// One Firecracker process and what it owns: its run directory (the chroot when jailed: API socket,
// vsock socket, metrics FIFO, the kernel and drives linked in), the process, the API client, the
// metrics poller and the guest agent connection. boot() returns a VM whose agent answered;
// restore() one loaded from a snapshot and paused. shutdown() (and the destructor) escalate like
// the QEMU backend: SendCtrlAltDel, then SIGTERM, then SIGKILL after the grace; the process is
// always reaped and its directory (and jail) removed.
//
// Thread-safety: exec() and the control calls may come from different threads; each takes the
// lock it needs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "firecracker/api_client.h"
#include "firecracker/metrics.h"
#include "paddock/runtime/agent_client.h"
#include "paddock/runtime/jailer.h"
#include "paddock/runtime/provider.h"

namespace paddock::runtime::firecracker {

// The guest agent's vsock port (the agent listens on it under Firecracker).
inline constexpr uint32_t kAgentVsockPort = 1024;

struct FcLaunch {
  std::string firecracker_binary;  // absolute
  std::string kernel;              // host paths
  std::string initrd;              // empty: none
  std::string rootfs;              // empty: none (read-only root drive)
  std::string kernel_args;
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
  // Not jailed: a fresh directory this VM owns. Jailed: unused (the chroot is the jailer's).
  std::string run_dir;
  // Start through Firecracker's jailer (uid, gid, chroot base, cgroups). Its id names the chroot
  // <chroot_base_dir>/firecracker/<id>/root, which then holds everything the VM uses.
  std::optional<jail::FirecrackerJailerSpec> jail;
  // The VM's network namespace (a /run/netns path; empty: Firecracker's own, and no network):
  // jailed, the jailer joins it (--netns); otherwise Firecracker is started in it.
  std::string netns;
  // The TAP in that namespace the guest's eth0 uses (Firecracker opens it by name); empty: none.
  std::string tap_name;
  std::string guest_mac;
  // Restore instead of boot: the snapshot's device state and memory (host paths).
  std::string snapshot_state;
  std::string snapshot_memory;
  std::chrono::milliseconds api_timeout{5'000};
  std::chrono::milliseconds boot_timeout{30'000};
  std::chrono::milliseconds shutdown_grace{2'000};
  std::chrono::milliseconds shutdown_poll{50};
};

class FirecrackerVm {
 public:
  // Spawns Firecracker, configures it in the reference order, starts it and waits until the
  // guest agent answers over vsock. On failure everything started is stopped and removed.
  static Result<std::unique_ptr<FirecrackerVm>> boot(const FcLaunch& launch);
  // Spawns Firecracker and loads the snapshot (File memory backend), paused.
  static Result<std::unique_ptr<FirecrackerVm>> restore(const FcLaunch& launch);
  ~FirecrackerVm();
  FirecrackerVm(const FirecrackerVm&) = delete;
  FirecrackerVm& operator=(const FirecrackerVm&) = delete;

  Status pause();
  Status resume();
  // REQUIRES: paused. Writes a Full snapshot and copies it to state_path and memory_path.
  Status snapshot_to(const std::string& state_path, const std::string& memory_path);
  Result<AgentIdentity> refresh(const std::string& hostname);
  Status ping(std::chrono::milliseconds timeout);
  Result<ExecResult> exec(const ExecRequest& request, std::stop_token cancel,
                          const OutputSink& on_output = {});
  // Counters from the metrics FIFO (after a FlushMetrics): Metrics error if none could be read.
  Result<MetricsSample> metrics();
  // SendCtrlAltDel, SIGTERM, SIGKILL; always reaps and removes the directory. Idempotent.
  Status shutdown();

  // The chroot (jailed) or run directory: host paths of the VM's files are below it.
  const std::string& root() const { return root_; }
  pid_t vmm_pid() const { return vmm_pid_; }
  const std::vector<std::string>& argv() const { return argv_; }

 private:
  explicit FirecrackerVm(FcLaunch launch);
  Status spawn();
  Status prepare_root();
  // A path as Firecracker sees it: inside the chroot when jailed.
  std::string vm_path(const std::string& name) const;
  std::string host_path(const std::string& name) const { return root_ + "/" + name; }
  // Links (or copies) a host file into the root as `name`, readable by the VMM.
  Status link_in(const std::string& source, const std::string& name);
  // Jailed: waits for the jailer to exit 0 and reads Firecracker's pid from its pid file.
  Status await_jailer();
  Status start_metrics();
  Status connect_agent(std::chrono::steady_clock::time_point deadline);
  // The tail of what the jailer and Firecracker wrote to stderr (their log file), for errors.
  std::string log_tail() const;
  std::string log_path() const;
  bool exited();    // reaps the child if it has exited
  bool vmm_gone();  // Firecracker has exited (jailed: the jailer too)
  bool wait_exit(std::chrono::steady_clock::time_point deadline);

  FcLaunch launch_;
  std::string root_;
  std::vector<std::string> argv_;
  pid_t child_ = -1;    // our child: the jailer (which exits after starting Firecracker) or FC
  pid_t vmm_pid_ = -1;  // Firecracker itself
  bool reaped_ = false;
  std::unique_ptr<ApiClient> api_;
  std::mutex control_mu_;
  std::unique_ptr<MetricsPoller> metrics_;
  std::mutex exec_mu_;
  std::unique_ptr<AgentClient> agent_;
};

}  // namespace paddock::runtime::firecracker
