// The lifecycle state machine: every operation from every state, allowed or refused.
#include <doctest/doctest.h>

#include "paddock/runtime/vm_state.h"

using namespace paddock::runtime;

TEST_CASE("every lifecycle operation from every state is allowed or refused as specified") {
  const VmState states[] = {VmState::kCreated, VmState::kRunning, VmState::kStopped,
                            VmState::kDestroyed};
  const VmOp ops[] = {VmOp::kStart, VmOp::kStop, VmOp::kResume, VmOp::kDestroy};
  // allowed[state][op]
  const bool allowed[4][4] = {
      /* created   */ {true, false, false, true},
      /* running   */ {false, true, false, true},
      /* stopped   */ {false, false, true, true},
      /* destroyed */ {false, false, false, false},
  };
  for (int s = 0; s < 4; ++s) {
    for (int o = 0; o < 4; ++o) {
      CAPTURE(s);
      CAPTURE(o);
      auto st = check_transition("vm-x", states[s], ops[o]);
      CHECK(st.ok() == allowed[s][o]);
      if (!st.ok()) {
        CHECK(st.error().variant() == Variant::kInvalidTransition);
        CHECK(st.error().from() == std::string(state_name(states[s])));
        CHECK(st.error().to() == std::string(state_name(target_of(ops[o]))));
        CHECK(st.error().vm_id() == "vm-x");
      }
    }
  }
}

TEST_CASE("operations lead to their target states") {
  CHECK(target_of(VmOp::kStart) == VmState::kRunning);
  CHECK(target_of(VmOp::kResume) == VmState::kRunning);
  CHECK(target_of(VmOp::kStop) == VmState::kStopped);
  CHECK(target_of(VmOp::kDestroy) == VmState::kDestroyed);
}

TEST_CASE("refused transition message names the vm and both states") {
  auto st = check_transition("vm-7", VmState::kCreated, VmOp::kStop);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message() == "invalid vm transition for 'vm-7': created -> stopped");
}

TEST_CASE("snapshot is allowed from every state but destroyed") {
  CHECK(check_snapshot("v", VmState::kCreated).ok());
  CHECK(check_snapshot("v", VmState::kRunning).ok());
  CHECK(check_snapshot("v", VmState::kStopped).ok());
  auto st = check_snapshot("v", VmState::kDestroyed);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message() == "invalid vm transition for 'v': destroyed -> snapshot");
}
