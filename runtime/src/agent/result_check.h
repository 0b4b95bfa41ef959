// What the host keeps of a guest agent's exec result. The guest is an attacker
// (schemas/PROTOCOL.md, "The channel's two ends"): its result has passed the decoder's limits, and
// is now checked against the request it answers and capped, before the worker turns it into a
// JobResult.
//
// Pure functions, no I/O (fuzzed with the agent frames: tests/fuzz/fuzz_agent_frames.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "paddock/agent/protocol.h"
#include "paddock/schemas/limits.h"

namespace paddock::runtime::agent {

namespace host_limits {
// stdout, stderr and the data of the files out together. A JobResult carries them to the broker
// in one ZeroMQ frame: the contract's figure (schemas/limits.h, "Limits that compose"), which
// leaves room for the files' paths (64 x 1 KiB at most) and the other fields.
inline constexpr size_t kMaxResultData = schemas::limits::kMaxResultData;
inline constexpr int32_t kMaxSignal = 64;  // SIGRTMAX on Linux
}  // namespace host_limits

// Caps `outcome` to what `asked` allows: stdout and stderr at asked.output_cap bytes, each file
// at asked.files_out_cap, and all of them together at kMaxResultData (stdout is kept first, then
// stderr, then the files in order); whatever is cut gets its truncated flag.
// Returns "" when the result can be believed, else why not, naming the field: a file out that
// was not asked for or comes twice ("files[2].path: 'x' was not asked for"), a signal outside
// 0..kMaxSignal. The reasons quote the guest's text through os::peer_text (bounded, escaped).
std::string check_result(const ExecCommand& asked, ExecOutcome& outcome);

}  // namespace paddock::runtime::agent
