// Runs one job: files in, fork + execve in a new session, stdin fed through a pipe, stdout and
// stderr read with poll() and kept up to output_cap each (the rest is read and dropped, so the job
// never blocks on a full pipe), a wall-clock limit, files out.
//
// The job ends when its first process exits (or is killed at timeout_ms); everything it started
// that is still running then is SIGKILLed and reaped before the result is returned, whatever
// session or process group it moved to. Output those leftovers wrote before dying is kept.
#pragma once

#include <string>

#include "agent/protocol.h"
#include "reaper.h"

namespace paddock::guest {

struct JobContext {
  std::string work_dir;  // the cwd when the request names none; /work in a VM
  Reaper* reaper = nullptr;
};

struct JobRun {
  bool ran = false;  // false: the job could not be started; `error` says why
  runtime::agent::ExecOutcome outcome;
  std::string error;
};

JobRun run_job(const runtime::agent::ExecCommand& command, const JobContext& context);

}  // namespace paddock::guest
