// What the QEMU and Firecracker providers do alike with snapshots in a qemu::SnapshotStore (both
// keep theirs there): taking one of a VM in its slot, listing, deleting, and the tombstones of
// the VMs whose snapshots an earlier process left. A null store: the provider has no snapshot
// directory. Slots as in vm_table.h.
//
// Thread-safety: as the store's and the table's; take_snapshot REQUIRES the slot's lock.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "qemu/snapshot_store.h"
#include "vm_table.h"

namespace paddock::runtime {

// Snapshots a started VM into `store` as vm_id/snapshot_id: a running VM is paused while
// `capture(partial_dir)` writes <partial_dir>/state and <partial_dir>/memory (device state and
// RAM of the same instant), then resumed. On failure nothing is kept and the VM runs again as it
// did. REQUIRES: slot.mu held, slot.vm set, the state checked (check_snapshot).
template <typename Slot, typename Capture>
Result<SnapshotInfo> take_snapshot(qemu::SnapshotStore& store, Slot& slot, const std::string& vm_id,
                                   const std::string& snapshot_id, const qemu::SnapshotEnv& env,
                                   Capture capture) {
  auto partial = store.begin(vm_id, snapshot_id);
  if (!partial) return partial.error();
  const bool was_running = slot.info.state == VmState::kRunning;
  auto fail = [&](const Error& e) -> Result<SnapshotInfo> {
    store.abort(partial.value());
    if (was_running) (void)slot.vm->resume();
    return e;
  };
  if (was_running) {
    if (auto st = slot.vm->pause(); !st) return fail(st.error());
  }
  if (auto st = capture(partial.value()); !st) return fail(st.error());
  if (was_running) {
    if (auto st = slot.vm->resume(); !st) {
      store.abort(partial.value());
      return st.error();
    }
  }
  qemu::SnapshotMeta meta;
  meta.vm_id = vm_id;
  meta.snapshot_id = snapshot_id;
  meta.created_unix_ms =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  meta.image = slot.info.spec.image;
  meta.vcpus = slot.info.spec.vcpus;
  meta.mem_mib = slot.info.spec.mem_mib;
  meta.env = env;
  auto committed = store.commit(partial.value(), meta);
  if (!committed) return committed.error();
  return qemu::snapshot_info(committed.value());
}

// The snapshots of a known VM (a destroyed one's too); VmNotFound for an unknown one.
template <typename Slot>
Result<std::vector<SnapshotInfo>> list_vm_snapshots(const VmTable<Slot>& vms,
                                                    const qemu::SnapshotStore* store,
                                                    const std::string& vm_id) {
  if (!vms.find(vm_id)) return Error::vm_not_found(vm_id);
  std::vector<SnapshotInfo> out;
  if (store) {
    for (const auto& m : store->list(vm_id)) out.push_back(qemu::snapshot_info(m));
  }
  return out;
}

inline std::vector<SnapshotInfo> list_all_snapshots(const qemu::SnapshotStore* store) {
  std::vector<SnapshotInfo> out;
  if (store) {
    for (const auto& m : store->list()) out.push_back(qemu::snapshot_info(m));
  }
  return out;
}

inline Status delete_snapshot_in(qemu::SnapshotStore* store, const std::string& vm_id,
                                 const std::string& snapshot_id) {
  if (!store) return Error::snapshot_not_found(vm_id, snapshot_id);
  return store->remove(vm_id, snapshot_id);
}

// A snapshot's VM is known (as destroyed) even when an earlier process made it: its id is not
// reused, and its snapshots can be listed. For open(), before any VM is created.
template <typename Slot>
void add_tombstones(VmTable<Slot>& vms, const qemu::SnapshotStore& store) {
  for (const auto& meta : store.list()) {
    // VmAlreadyExists for a VM's second snapshot: it has its tombstone.
    (void)vms.insert(meta.vm_id,
                     make_slot<Slot>(VmInfo{meta.vm_id, VmState::kDestroyed,
                                            VmSpec{meta.image, meta.vcpus, meta.mem_mib},
                                            std::nullopt, std::nullopt}));
  }
}

}  // namespace paddock::runtime
