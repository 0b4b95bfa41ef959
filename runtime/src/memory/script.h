// Internal: the scripted behaviour of the in-memory test double (memory_provider.h lists it).
#pragma once

#include <stop_token>
#include <string>

#include "paddock/runtime/provider.h"

namespace paddock::runtime::memory {

// Interprets request.argv; never executes anything. Scripted failures come back as Errors.
// With a sink, the output is given to it as the script makes it (`every` over time, the rest at
// its end), within output_cap.
Result<ExecResult> run_script(const std::string& vm_id, const ExecRequest& request,
                              std::stop_token cancel, const OutputSink* sink = nullptr);

}  // namespace paddock::runtime::memory
