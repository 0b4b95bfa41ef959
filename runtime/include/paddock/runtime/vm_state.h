// The VM lifecycle, as the reference runtime has it:
//
//   created --start--> running --stop (pause)--> stopped --resume--> running
//   any state but destroyed --destroy--> destroyed          (a destroyed id is never reused)
//   snapshot: from any state but destroyed; the state does not change
//   restore: makes a new VM, in state stopped (paused), from a snapshot
//
// Anything else is InvalidTransition{vm_id, from, to}.
#pragma once

#include <string>
#include <string_view>

#include "paddock/runtime/error.h"

namespace paddock::runtime {

enum class VmState { kCreated, kRunning, kStopped, kDestroyed };

// "created", "running", "stopped", "destroyed": the names used in InvalidTransition messages.
std::string_view state_name(VmState s);

// The lifecycle operations that change a VM's state.
enum class VmOp { kStart, kStop, kResume, kDestroy };

// The state an operation leads to (start and resume: running; stop: stopped; destroy: destroyed).
VmState target_of(VmOp op);

// Checks `op` on a VM in state `from`; returns InvalidTransition{vm_id, from, target} when the
// operation is not allowed from that state (start only from created, resume only from stopped).
Status check_transition(std::string_view vm_id, VmState from, VmOp op);

// Snapshot is allowed from every state but destroyed; its refusal names "snapshot" as the target.
Status check_snapshot(std::string_view vm_id, VmState from);

}  // namespace paddock::runtime
