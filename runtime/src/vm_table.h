// VmTable: a VM backend's slots by VM id, and the operations every backend does alike on a slot
// (get, list, stop, ping, exec, egress, the VMM's pid, a clone's refresh), so that the QEMU and
// Firecracker providers keep one copy of their lookups, state checks and error texts.
//
// A Slot is the backend's own struct with at least:
//   std::mutex mu;                             held across slow work on this VM only
//   VmInfo info;
//   std::unique_ptr<net::VmNetwork> network;  null without a network
//   std::unique_ptr<Vm> vm;                    null before the VM is started or restored; Vm has
//                                              pause, resume, refresh, ping, exec and vmm_pid
//   bool needs_refresh;                        a restored clone not yet made unique
// Destroyed VMs stay in the table as tombstones: their ids are never reused.
//
// Thread-safety: every function may be called concurrently. Lock order: the table's lock is
// never held while a slot's lock is taken (a lookup returns the slot, then its lock is taken).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "agent/clone_hostname.h"
#include "net/vm_network.h"
#include "paddock/runtime/provider.h"

namespace paddock::runtime {

template <typename Slot>
class VmTable {
 public:
  using SlotPtr = std::shared_ptr<Slot>;

  // The slot of vm_id (a destroyed VM's too), or null.
  SlotPtr find(const std::string& vm_id) const {
    std::lock_guard lock(mu_);
    auto it = slots_.find(vm_id);
    return it == slots_.end() ? nullptr : it->second;
  }

  // Adds `slot` as vm_id unless the id is taken: VmAlreadyExists. `fill(*slot)` runs under the
  // table's lock and only when the id is free, so that it may take what only a new VM takes (a
  // run directory) and no one finds the slot half made.
  template <typename Fill>
  Status insert(const std::string& vm_id, SlotPtr slot, Fill fill) {
    std::lock_guard lock(mu_);
    if (slots_.count(vm_id) != 0) return Error::vm_already_exists(vm_id);
    fill(*slot);
    slots_[vm_id] = std::move(slot);
    return {};
  }

  Status insert(const std::string& vm_id, SlotPtr slot) {
    return insert(vm_id, std::move(slot), [](Slot&) {});
  }

  // Frees vm_id again. REQUIRES: nothing was made of its VM (a restore that failed).
  void erase(const std::string& vm_id) {
    std::lock_guard lock(mu_);
    slots_.erase(vm_id);
  }

  // Every slot, tombstones included.
  std::vector<SlotPtr> slots() const {
    std::lock_guard lock(mu_);
    std::vector<SlotPtr> out;
    for (const auto& [id, slot] : slots_) out.push_back(slot);
    return out;
  }

  // Empties the table and hands its slots over (a provider's destructor shuts their VMs down).
  std::map<std::string, SlotPtr> take_all() {
    std::lock_guard lock(mu_);
    return std::exchange(slots_, {});
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, SlotPtr> slots_;
};

// A new slot for `info`: a VM as create() makes it, or a tombstone.
template <typename Slot>
std::shared_ptr<Slot> make_slot(VmInfo info) {
  auto slot = std::make_shared<Slot>();
  slot->info = std::move(info);
  return slot;
}

// A slot found and locked, as every lifecycle operation starts.
template <typename Slot>
struct LockedSlot {
  std::shared_ptr<Slot> slot;
  std::unique_lock<std::mutex> lock;  // of slot->mu; declared after slot: released first
};

// vm_id's slot, locked, when `op` is allowed from its state; VmNotFound or InvalidTransition
// otherwise.
template <typename Slot>
Result<LockedSlot<Slot>> lock_for(VmTable<Slot>& vms, const std::string& vm_id, VmOp op) {
  auto slot = vms.find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::unique_lock lock(slot->mu);
  if (auto st = check_transition(vm_id, slot->info.state, op); !st) return st.error();
  return LockedSlot<Slot>{std::move(slot), std::move(lock)};
}

template <typename Slot>
Result<VmInfo> get_vm(const VmTable<Slot>& vms, const std::string& vm_id) {
  auto slot = vms.find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  return slot->info;
}

// Every VM that is not destroyed, by id.
template <typename Slot>
std::vector<VmInfo> list_vms(const VmTable<Slot>& vms) {
  std::vector<VmInfo> out;
  for (const auto& slot : vms.slots()) {
    std::lock_guard lock(slot->mu);
    if (slot->info.state != VmState::kDestroyed) out.push_back(slot->info);
  }
  return out;
}

// Pauses a running VM; it is then stopped.
template <typename Slot>
Status stop_vm(VmTable<Slot>& vms, const std::string& vm_id) {
  auto locked = lock_for(vms, vm_id, VmOp::kStop);
  if (!locked) return locked.error();
  auto& slot = locked.value().slot;
  if (auto st = slot->vm->pause(); !st) return st;
  slot->info.state = VmState::kStopped;
  return {};
}

// A restored clone, on its first resume, before anything else runs in it: fresh entropy, the
// clock, its own hostname. On failure the clone is paused again. REQUIRES: slot.mu held, the VM
// resumed.
template <typename Slot>
Status refresh_clone(Slot& slot, const std::string& vm_id) {
  if (!slot.needs_refresh) return {};
  auto identity = slot.vm->refresh(agent::clone_hostname(vm_id));
  if (!identity || !identity.value().applied) {
    (void)slot.vm->pause();
    if (!identity) return identity.error();
    return Error::guest_agent("refresh of clone '" + vm_id +
                              "': the agent applied nothing (it is not the guest's init)");
  }
  slot.needs_refresh = false;
  return {};
}

template <typename Slot>
Status ping_vm(VmTable<Slot>& vms, const std::string& vm_id, std::chrono::milliseconds timeout) {
  auto slot = vms.find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (slot->info.state != VmState::kRunning) {
    return Error::invalid_transition(vm_id, std::string(state_name(slot->info.state)), "ping");
  }
  return slot->vm->ping(timeout);
}

// The slot's lock is held only to check the state: an exec runs beside the VM's control calls.
template <typename Slot>
Result<ExecResult> exec_in_vm(VmTable<Slot>& vms, const std::string& vm_id,
                              const ExecRequest& request, std::stop_token cancel,
                              const OutputSink& on_output = {}) {
  auto slot = vms.find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  decltype(slot->vm.get()) vm = nullptr;
  {
    std::lock_guard lock(slot->mu);
    if (slot->info.state != VmState::kRunning) {
      return Error::invalid_transition(vm_id, std::string(state_name(slot->info.state)), "exec");
    }
    vm = slot->vm.get();
  }
  // REQUIRES: the caller does not destroy the VM while its exec runs (the worker never does).
  return vm->exec(request, std::move(cancel), on_output);
}

// `networks_on`: the provider makes per-VM networks. No rules is always accepted (nothing to
// allow); rules need the VM's network, made when it starts or is restored.
template <typename Slot>
Status set_vm_egress(VmTable<Slot>& vms, bool networks_on, const std::string& vm_id,
                     const std::vector<net::EgressRule>& rules) {
  // Validation first, before anything is looked up or touched.
  if (auto st = net::validate_egress(vm_id, rules); !st) return st;
  auto slot = vms.find(vm_id);
  if (!slot) return Error::vm_not_found(vm_id);
  std::lock_guard lock(slot->mu);
  if (slot->info.state == VmState::kDestroyed) {
    return Error::invalid_transition(vm_id, "destroyed", "set_egress");
  }
  if (rules.empty()) return {};
  if (!networks_on) {
    return Error::unsupported("vm '" + vm_id +
                              "' asks for egress, but this worker runs VMs without networks");
  }
  if (!slot->network) {
    return Error::network_config("vm '" + vm_id +
                                 "' has no network yet: start or restore it first");
  }
  return slot->network->allow_egress(rules);
}

// The VMM process of a started VM; -1 if none.
template <typename Slot>
int vmm_pid_of(const VmTable<Slot>& vms, const std::string& vm_id) {
  auto slot = vms.find(vm_id);
  if (!slot) return -1;
  std::lock_guard lock(slot->mu);
  return slot->vm ? slot->vm->vmm_pid() : -1;
}

}  // namespace paddock::runtime
