// The provider interface: one backend's way to create, run, snapshot and destroy VMs. Backends:
// "memory" (the in-memory test double), "qemu" and "firecracker" (later). The runtime knows
// nothing of queues; the worker drives a provider for each job.
//
// Thread-safety: every method may be called concurrently from any thread, for different VMs or
// the same one. Errors are returned as values (Result), never thrown.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/runtime/error.h"
#include "paddock/runtime/network.h"
#include "paddock/runtime/vm_state.h"
#include "paddock/schemas/job.h"

namespace paddock::runtime {

struct VmSpec {
  std::string image = "default";
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
};

struct VmInfo {
  std::string id;
  VmState state = VmState::kCreated;
  VmSpec spec;
  // Set for a VM restored from a snapshot: the snapshot's VM and id.
  std::optional<std::string> restored_from_vm;
  std::optional<std::string> restored_from_snapshot;
};

// A snapshot belongs to the VM it was taken of; it outlives that VM's destruction (and, on a
// backend that keeps snapshots on disk, the process that took it).
struct SnapshotInfo {
  std::string vm_id;
  std::string snapshot_id;
  VmSpec spec;
  uint64_t created_unix_ms = 0;
  // The content hash of the guest image the snapshot was taken from ("" on the test double).
  std::string image_id;
};

// One program run inside a running VM, through the guest agent: the job model's command
// (paddock/schemas/job.h), handed to the agent as it is. The memory test double interprets argv
// only.
using ExecRequest = schemas::ExecCommand;

// What the program did (the job model's outcome, paddock/schemas/job.h, as the guest agent
// reported it: of its usage, cpu_us and peak_memory_kib; the test double reports none and never
// oom_killed), and whether the caller stopped it.
struct ExecResult : schemas::ExecOutcome {
  bool cancelled = false;  // stopped because the caller's stop_token was triggered
};

// Live output of a program (Provider::exec_streaming): the bytes at [offset, offset + data.size())
// of one of its streams, within the request's output_cap. Called on the exec's thread, in order.
using OutputSink =
    std::function<void(schemas::OutputStream stream, uint64_t offset, std::string_view data)>;

// What a VM's guest sent and received on its network, and what its egress firewall dropped.
struct NetworkUsage {
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t packets_in = 0;
  uint64_t packets_out = 0;
  uint64_t egress_blocked = 0;  // packets
};

class Provider {
 public:
  virtual ~Provider() = default;

  // "memory", "qemu", ...
  virtual std::string_view backend() const = 0;

  // New VM in state created. VmAlreadyExists if the id is in use or was ever destroyed.
  virtual Status create(const std::string& vm_id, const VmSpec& spec) = 0;
  virtual Status start(const std::string& vm_id) = 0;    // created -> running
  virtual Status stop(const std::string& vm_id) = 0;     // running -> stopped (pause)
  virtual Status resume(const std::string& vm_id) = 0;   // stopped -> running
  virtual Status destroy(const std::string& vm_id) = 0;  // any but destroyed -> destroyed

  // SnapshotAlreadyExists if (vm_id, snapshot_id) exists; VmNotFound; InvalidTransition if the VM
  // is destroyed. A running VM is paused while its state is saved and then runs on.
  virtual Result<SnapshotInfo> snapshot(const std::string& vm_id,
                                        const std::string& snapshot_id) = 0;
  // New VM `new_vm_id`, state stopped, from snapshot (vm_id, snapshot_id). SnapshotNotFound if it
  // does not exist; VmAlreadyExists if new_vm_id is taken. The first resume() of a restored VM
  // makes it unique before it returns (fresh entropy, the wall clock, a new hostname), so no job
  // code ever runs with state it shares with another clone.
  virtual Status restore(const std::string& vm_id, const std::string& snapshot_id,
                         const std::string& new_vm_id) = 0;
  // Removes a snapshot and its files. SnapshotNotFound if it does not exist. VMs restored from it
  // earlier are not affected.
  virtual Status delete_snapshot(const std::string& vm_id, const std::string& snapshot_id) = 0;

  virtual Result<VmInfo> get(const std::string& vm_id) const = 0;
  // Every VM that is not destroyed, ordered by id.
  virtual Result<std::vector<VmInfo>> list() const = 0;
  // VmNotFound if the VM never existed.
  virtual Result<std::vector<SnapshotInfo>> list_snapshots(const std::string& vm_id) const = 0;
  // Every snapshot the provider has, of any VM, ordered by (vm_id, snapshot_id); on a backend
  // that keeps snapshots on disk this includes those an earlier process took.
  virtual Result<std::vector<SnapshotInfo>> all_snapshots() const = 0;

  // Opens the VM's egress for `rules` (runtime/README.md, "Networks and egress"): validated first
  // (NetworkConfig / Firewall errors, before anything is touched), then narrowed by the operator's
  // policy. Empty rules: the VM keeps no route out. Once per VM, on a created, running or stopped
  // VM. A qemu provider without networks refuses non-empty rules (Unsupported); the test double
  // validates and records them.
  virtual Status set_egress(const std::string& vm_id,
                            const std::vector<net::EgressRule>& rules) = 0;
  // Counters of the VM's network; zeros on a backend without networks.
  virtual Result<NetworkUsage> network_usage(const std::string& vm_id) = 0;

  // Whether the guest of a running VM answers within `timeout`: VmNotFound, InvalidTransition if
  // it is not running, GuestAgent if it does not answer.
  virtual Status ping(const std::string& vm_id, std::chrono::milliseconds timeout) = 0;

  // Runs a program in a running VM. A program that fails, times out or is cancelled is still an
  // ExecResult; an Error means the provider could not run it.
  virtual Result<ExecResult> exec(const std::string& vm_id, const ExecRequest& request,
                                  std::stop_token cancel) = 0;

  // exec(), with the program's output given to `sink` as it is written (within output_cap), before
  // the result (which still holds all of it). A backend that cannot stream gives the result's
  // output to the sink at the end, in pieces of at most 64 KiB: this default.
  virtual Result<ExecResult> exec_streaming(const std::string& vm_id, const ExecRequest& request,
                                            std::stop_token cancel, const OutputSink& sink);

  // The warm-up of an image (its definition's `warmup`; agent/guest/IMAGE.md): a command that a
  // template VM of that image runs once, booted and before its snapshot, so that every clone starts
  // with what it loaded (the guest's page cache, dentries, what the command wrote). Empty: none,
  // or an image this provider does not have.
  virtual std::vector<std::string> warmup_argv(const std::string& image) const {
    (void)image;
    return {};
  }
};

}  // namespace paddock::runtime
