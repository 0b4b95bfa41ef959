#include "paddock/runtime/vm_state.h"

namespace paddock::runtime {

std::string_view state_name(VmState s) {
  switch (s) {
    case VmState::kCreated:
      return "created";
    case VmState::kRunning:
      return "running";
    case VmState::kStopped:
      return "stopped";
    case VmState::kDestroyed:
      return "destroyed";
  }
  return "unknown";
}

VmState target_of(VmOp op) {
  switch (op) {
    case VmOp::kStart:
    case VmOp::kResume:
      return VmState::kRunning;
    case VmOp::kStop:
      return VmState::kStopped;
    case VmOp::kDestroy:
      return VmState::kDestroyed;
  }
  return VmState::kDestroyed;
}

Status check_transition(std::string_view vm_id, VmState from, VmOp op) {
  bool allowed = false;
  switch (op) {
    case VmOp::kStart:
      allowed = from == VmState::kCreated;
      break;
    case VmOp::kStop:
      allowed = from == VmState::kRunning;
      break;
    case VmOp::kResume:
      allowed = from == VmState::kStopped;
      break;
    case VmOp::kDestroy:
      allowed = from != VmState::kDestroyed;
      break;
  }
  if (allowed) return {};
  return Error::invalid_transition(std::string(vm_id), std::string(state_name(from)),
                                   std::string(state_name(target_of(op))));
}
Status check_snapshot(std::string_view vm_id, VmState from) {
  if (from != VmState::kDestroyed) return {};
  return Error::invalid_transition(std::string(vm_id), std::string(state_name(from)), "snapshot");
}

}  // namespace paddock::runtime
