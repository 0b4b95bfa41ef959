// MemoryProvider: the in-memory TEST DOUBLE of the provider interface. It starts no process and
// no VM; it keeps VM and snapshot records in memory with the real lifecycle rules, so that the
// queue, the worker and the clients can be tested and load-tested without VMs.
//
// exec() does not execute anything. It interprets argv as a tiny script (runtime/README.md,
// "The in-memory test double"):
//
//   echo ARGS...          stdout "ARGS joined by spaces\n", exit 0
//   cat                   stdout = stdin
//   env NAME              stdout = value of NAME from the request's env, "\n"
//   stderr TEXT...        stderr "TEXT\n"
//   output N              N bytes of 'x' on stdout (to exercise output caps)
//   exit N                exit code N
//   true | false          exit 0 | exit 1
//   sleep MS              waits MS ms; honours timeout_ms (timed_out) and cancellation
//   every MS N TEXT...    stdout "TEXT\n" N times (N <= 100000): at once, then every MS ms;
//                         honours timeout_ms and cancellation. Streamed (exec_streaming) as it
//                         is written; every other command's output is streamed at its end
//   fail VARIANT [DETAIL] returns that runtime error (e.g. "fail Jailer no cgroup")
//   sh -c "WORDS"         WORDS split at spaces, interpreted as one of these (no shell syntax:
//                         `paddock submit --step` runs its steps so)
//   poison                throws while holding the state lock: the provider is poisoned and
//                         every later call returns StatePoisoned, as a real backend whose shared
//                         state was left half-updated would
//   anything else         exit 127 and a stderr line saying nothing was executed
//
// Files in are kept in the VM's record; files_out returns those of them that were asked for.
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "paddock/runtime/provider.h"

namespace paddock::runtime {

class MemoryProvider final : public Provider {
 public:
  std::string_view backend() const override { return "memory"; }

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
  // Validates the rules as a real backend does (nothing is touched before) and records them.
  Status set_egress(const std::string& vm_id, const std::vector<net::EgressRule>& rules) override;
  Result<NetworkUsage> network_usage(const std::string& vm_id) override;
  // The rules set_egress recorded for a VM (empty if none).
  std::vector<net::EgressRule> egress_of(const std::string& vm_id) const;
  Result<ExecResult> exec(const std::string& vm_id, const ExecRequest& request,
                          std::stop_token cancel) override;
  Result<ExecResult> exec_streaming(const std::string& vm_id, const ExecRequest& request,
                                    std::stop_token cancel, const OutputSink& sink) override;

  // Number of VM records that are not destroyed (what a leak check looks at).
  size_t live_vms() const;
  // How many destroyed VMs are remembered at most.
  static constexpr size_t kTombstones = 16384;

 private:
  struct Vm {
    VmInfo info;
    std::map<std::string, schemas::FileIn> files;  // by path: what the jobs put in
    std::vector<net::EgressRule> egress;
  };
  struct Locked;  // the lock plus poisoning, see memory_provider.cc

  Status transition(const std::string& vm_id, VmOp op);
  Result<ExecResult> run_script(const std::string& vm_id, const ExecRequest& request,
                                std::stop_token cancel, const OutputSink* sink);

  mutable std::mutex mu_;
  std::atomic<bool> poisoned_{false};
  // Live VMs, and destroyed ones as tombstones (their files dropped), so that a call on a VM just
  // destroyed answers as a real backend does (InvalidTransition, not VmNotFound) and its id is not
  // reused. Only the newest kTombstones are kept, oldest dropped first: a load test's millions of
  // jobs do not grow the provider without bound. An id older than that answers VmNotFound.
  std::unordered_map<std::string, Vm> vms_;
  std::deque<std::string> tombstones_;  // destroyed ids, oldest first
  std::map<std::pair<std::string, std::string>, SnapshotInfo> snapshots_;
};

}  // namespace paddock::runtime
