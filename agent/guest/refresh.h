// Making a clone unique (the `refresh` request, schemas/PROTOCOL.md): a VM restored from a
// snapshot shares its kernel's entropy pool and CRNG state, clock and hostname with every other
// clone of that snapshot. refresh_identity() gives it fresh entropy and reseeds the CRNG, sets the
// wall clock and the hostname, and only then reads the kernel's boot id.
//
// The boot id (/proc/sys/kernel/random/boot_id) is made from the CRNG on its first read (Linux
// 6.1, drivers/char/random.c, proc_do_uuid), so the agent never reads it before a refresh: read
// before the snapshot, it would be the same in every clone.
#pragma once

#include <string>

#include "paddock/agent/protocol.h"

namespace paddock::guest {

struct Refresh {
  bool ok = false;  // false: `error` names the step that failed and why
  runtime::agent::RefreshedIdentity identity;
  std::string error;
};

// `apply` (the agent is PID 1 of a guest): RNDADDENTROPY on /dev/urandom with the entropy
// credited in full, RNDRESEEDCRNG, clock_settime(CLOCK_REALTIME), sethostname(), in that order;
// then reads the boot id and the hostname back. A step that fails ends it (the steps before it
// stay done: the host should destroy such a clone).
// Not `apply` (host test mode): changes nothing; reports the host's hostname and boot id with
// applied = false.
// REQUIRES: command keeps the limits (decode_request checked them).
Refresh refresh_identity(const runtime::agent::RefreshCommand& command, bool apply);

}  // namespace paddock::guest
