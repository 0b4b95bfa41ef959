// Runs one job: files in, fork + execve in a new session, stdin fed through a pipe, stdout and
// stderr read with poll() and kept up to output_cap each (the rest is read and dropped, so the job
// never blocks on a full pipe), a wall-clock limit, files out.
//
// The job ends when its first process exits (or is killed at timeout_ms); everything it started
// that is still running then is SIGKILLed and reaped before the result is returned, whatever
// session or process group it moved to. Output those leftovers wrote before dying is kept.
//
// oom_killed: the agent reads the kernel's OOM-kill counter (`oom_kill` in /proc/vmstat) just
// before the job starts and again once all its processes are reaped. The job was killed for
// memory when the counter rose in between and the job ended by a signal (the OOM killer sends
// SIGKILL) that was not the agent's own timeout kill. It is a machine-wide counter, not a per-
// process record: any process the kernel OOM-killed meanwhile counts. In a VM the guest runs one
// job at a time and nothing else of size (the agent, as PID 1, is never chosen by the OOM killer),
// so a rise means the job's memory. A job whose child was OOM-killed but that itself exited
// normally is not oom_killed (it ended on its own). Unreadable /proc/vmstat: never oom_killed.
// In the host test mode the counter is the host's, shared with every other process there.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "paddock/agent/protocol.h"
#include "reaper.h"

namespace paddock::guest {

struct JobContext {
  std::string work_dir;  // the cwd when the request names none; /work in a VM
  Reaper* reaper = nullptr;
  // The image's environment (rootfs images): under the request's own, over the default PATH.
  std::map<std::string, std::string> env;
  // Live output (a command with `stream`): given each piece of stdout and stderr kept (within
  // output_cap) as it is read, with its offset in its stream. Empty: none.
  std::function<void(runtime::agent::OutputStream, uint64_t offset, std::string_view data)>
      on_output = nullptr;
};

struct JobRun {
  bool ran = false;  // false: the job could not be started; `error` says why
  runtime::agent::ExecOutcome outcome;
  std::string error;
};

JobRun run_job(const runtime::agent::ExecCommand& command, const JobContext& context);

}  // namespace paddock::guest
