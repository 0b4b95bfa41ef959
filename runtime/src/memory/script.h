// Internal: the scripted behaviour of the in-memory test double (memory_provider.h lists it).
#pragma once

#include <stop_token>
#include <string>

#include "paddock/runtime/provider.h"

namespace paddock::runtime::memory {

// Interprets request.argv; never executes anything. Scripted failures come back as Errors.
Result<ExecResult> run_script(const std::string& vm_id, const ExecRequest& request,
                              std::stop_token cancel);

}  // namespace paddock::runtime::memory
