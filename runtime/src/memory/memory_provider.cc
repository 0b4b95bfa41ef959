#include "paddock/runtime/memory_provider.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <thread>

#include "script.h"

namespace paddock::runtime {

// Holds the provider's lock. An exception that leaves a critical section poisons the provider,
// as a poisoned lock does in the reference runtime: the state may be half-updated, so every later
// call answers StatePoisoned instead of trusting it.
struct MemoryProvider::Locked {
  explicit Locked(const MemoryProvider& p)
      : provider(p), lock(p.mu_), exceptions(std::uncaught_exceptions()) {}
  ~Locked() {
    if (std::uncaught_exceptions() > exceptions) {
      const_cast<MemoryProvider&>(provider).poisoned_ = true;
    }
  }
  bool poisoned() const { return provider.poisoned_.load(); }

  const MemoryProvider& provider;
  std::lock_guard<std::mutex> lock;
  int exceptions;
};

Status MemoryProvider::create(const std::string& vm_id, const VmSpec& spec) {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  if (vms_.count(vm_id) != 0) return Error::vm_already_exists(vm_id);
  vms_[vm_id] = Vm{VmInfo{vm_id, VmState::kCreated, spec, std::nullopt, std::nullopt}, {}, {}};
  return {};
}

Status MemoryProvider::transition(const std::string& vm_id, VmOp op) {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  auto it = vms_.find(vm_id);
  if (it == vms_.end()) return Error::vm_not_found(vm_id);
  if (auto st = check_transition(vm_id, it->second.info.state, op); !st) return st;
  it->second.info.state = target_of(op);
  if (op == VmOp::kDestroy) {
    it->second.files.clear();  // keep the tombstone (and its egress rules, for tests to read)
    tombstones_.push_back(vm_id);
    if (tombstones_.size() > kTombstones) {
      vms_.erase(tombstones_.front());
      tombstones_.pop_front();
    }
  }
  return {};
}

Status MemoryProvider::start(const std::string& vm_id) { return transition(vm_id, VmOp::kStart); }
Status MemoryProvider::stop(const std::string& vm_id) { return transition(vm_id, VmOp::kStop); }
Status MemoryProvider::resume(const std::string& vm_id) { return transition(vm_id, VmOp::kResume); }
Status MemoryProvider::destroy(const std::string& vm_id) {
  return transition(vm_id, VmOp::kDestroy);
}

Result<SnapshotInfo> MemoryProvider::snapshot(const std::string& vm_id,
                                              const std::string& snapshot_id) {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  auto it = vms_.find(vm_id);
  if (it == vms_.end()) return Error::vm_not_found(vm_id);
  if (auto st = check_snapshot(vm_id, it->second.info.state); !st) return st.error();
  auto key = std::make_pair(vm_id, snapshot_id);
  if (snapshots_.count(key) != 0) return Error::snapshot_already_exists(vm_id, snapshot_id);
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  SnapshotInfo info{vm_id, snapshot_id, it->second.info.spec, static_cast<uint64_t>(now.count()),
                    ""};
  snapshots_[key] = info;
  return info;
}

Status MemoryProvider::restore(const std::string& vm_id, const std::string& snapshot_id,
                               const std::string& new_vm_id) {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  auto snap = snapshots_.find(std::make_pair(vm_id, snapshot_id));
  if (snap == snapshots_.end()) return Error::snapshot_not_found(vm_id, snapshot_id);
  if (vms_.count(new_vm_id) != 0) return Error::vm_already_exists(new_vm_id);
  vms_[new_vm_id] =
      Vm{VmInfo{new_vm_id, VmState::kStopped, snap->second.spec, vm_id, snapshot_id}, {}, {}};
  return {};
}

Result<VmInfo> MemoryProvider::get(const std::string& vm_id) const {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  auto it = vms_.find(vm_id);
  if (it == vms_.end()) return Error::vm_not_found(vm_id);
  return it->second.info;
}

Result<std::vector<VmInfo>> MemoryProvider::list() const {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  std::vector<VmInfo> out;
  for (const auto& [id, vm] : vms_) {
    if (vm.info.state != VmState::kDestroyed) out.push_back(vm.info);
  }
  std::sort(out.begin(), out.end(), [](const VmInfo& a, const VmInfo& b) { return a.id < b.id; });
  return out;
}

Result<std::vector<SnapshotInfo>> MemoryProvider::list_snapshots(const std::string& vm_id) const {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  if (vms_.count(vm_id) == 0) return Error::vm_not_found(vm_id);
  std::vector<SnapshotInfo> out;
  for (auto it = snapshots_.lower_bound({vm_id, ""}); it != snapshots_.end(); ++it) {
    if (it->first.first != vm_id) break;
    out.push_back(it->second);
  }
  return out;
}

Result<std::vector<SnapshotInfo>> MemoryProvider::all_snapshots() const {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  std::vector<SnapshotInfo> out;
  for (const auto& [key, info] : snapshots_) out.push_back(info);
  return out;
}

Status MemoryProvider::delete_snapshot(const std::string& vm_id, const std::string& snapshot_id) {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  if (snapshots_.erase(std::make_pair(vm_id, snapshot_id)) == 0) {
    return Error::snapshot_not_found(vm_id, snapshot_id);
  }
  return {};
}

Status MemoryProvider::ping(const std::string& vm_id, std::chrono::milliseconds) {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  auto it = vms_.find(vm_id);
  if (it == vms_.end()) return Error::vm_not_found(vm_id);
  if (it->second.info.state != VmState::kRunning) {
    return Error::invalid_transition(vm_id, std::string(state_name(it->second.info.state)), "ping");
  }
  return {};
}

Status MemoryProvider::set_egress(const std::string& vm_id,
                                  const std::vector<net::EgressRule>& rules) {
  if (auto st = net::validate_egress(vm_id, rules); !st) return st;
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  auto it = vms_.find(vm_id);
  if (it == vms_.end()) return Error::vm_not_found(vm_id);
  if (it->second.info.state == VmState::kDestroyed) {
    return Error::invalid_transition(vm_id, "destroyed", "set_egress");
  }
  it->second.egress = rules;
  return {};
}

Result<NetworkUsage> MemoryProvider::network_usage(const std::string& vm_id) {
  Locked l(*this);
  if (l.poisoned()) return Error::state_poisoned();
  if (vms_.count(vm_id) == 0) return Error::vm_not_found(vm_id);
  return NetworkUsage{};
}

std::vector<net::EgressRule> MemoryProvider::egress_of(const std::string& vm_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = vms_.find(vm_id);
  return it == vms_.end() ? std::vector<net::EgressRule>{} : it->second.egress;
}

size_t MemoryProvider::live_vms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return vms_.size() - tombstones_.size();
}

Result<ExecResult> MemoryProvider::exec(const std::string& vm_id, const ExecRequest& request,
                                        std::stop_token cancel) {
  try {
    return run_script(vm_id, request, std::move(cancel), nullptr);
  } catch (const std::exception&) {
    // Only "poison" throws; the Locked guard has marked the provider poisoned.
    return Error::state_poisoned();
  }
}

Result<ExecResult> MemoryProvider::exec_streaming(const std::string& vm_id,
                                                  const ExecRequest& request,
                                                  std::stop_token cancel, const OutputSink& sink) {
  try {
    return run_script(vm_id, request, std::move(cancel), &sink);
  } catch (const std::exception&) {
    return Error::state_poisoned();
  }
}

Result<ExecResult> MemoryProvider::run_script(const std::string& vm_id, const ExecRequest& request,
                                              std::stop_token cancel, const OutputSink* sink) {
  {
    Locked l(*this);
    if (l.poisoned()) return Error::state_poisoned();
    auto it = vms_.find(vm_id);
    if (it == vms_.end()) return Error::vm_not_found(vm_id);
    if (it->second.info.state != VmState::kRunning) {
      return Error::invalid_transition(vm_id, std::string(state_name(it->second.info.state)),
                                       "exec");
    }
    if (!request.argv.empty() && request.argv[0] == "poison") {
      throw std::runtime_error("scripted poison inside the provider's critical section");
    }
    for (const auto& f : request.files) it->second.files[f.path] = f;
  }
  auto outcome = memory::run_script(vm_id, request, cancel, sink);
  if (!outcome) return outcome.error();
  ExecResult result = std::move(outcome.value());
  Locked l(*this);
  auto it = vms_.find(vm_id);
  if (it == vms_.end()) return Error::vm_not_found(vm_id);
  for (const auto& path : request.files_out) {
    auto f = it->second.files.find(path);
    if (f != it->second.files.end()) result.files.push_back({f->second.path, f->second.data});
  }
  return result;
}

}  // namespace paddock::runtime
