// The job model: the value types a job is made of from the submitter to the guest and back, where
// a field is the same thing at every hop. The wire messages (messages.h: JobRequest, JobResult),
// the runtime's exec (paddock/runtime/provider.h) and the guest agent protocol
// (paddock/agent/protocol.h) are built from these, so a field added here travels without being
// copied by hand at each hop.
//
// Header-only plain values: no msgpack, no I/O (the static guest agent includes it as it is).
// Byte strings (stdin, stdout, file data) are std::string. Limits and validation are the codecs'
// (limits.h and codec.h for the wire, the agent protocol's own limits for the guest).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace paddock::schemas {

// Inclusive port range; a single port has first == last.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  bool operator==(const PortRange&) const = default;
};

// One allowed egress destination: an IPv4 CIDR ("a.b.c.d/n"; a bare address means /32), a
// protocol ("tcp", "udp", "icmp" or "any"; "tcp" when a request gives none, as on the wire:
// PROTOCOL.md, "JobRequest") and, for tcp and udp only, port ranges (empty: every port).
struct EgressRule {
  std::string cidr;
  std::string protocol = "tcp";
  std::vector<PortRange> ports;
  bool operator==(const EgressRule&) const = default;
};

// A file placed into the job's working directory before it runs.
struct FileIn {
  std::string path;  // relative, no "..", no leading '/'
  uint32_t mode = 0644;
  std::string data;
  bool operator==(const FileIn&) const = default;
};

// A file collected from the job's working directory after it ran.
struct FileOut {
  std::string path;
  std::string data;
  bool truncated = false;  // cut at its cap (or at what one result carries in all)
  bool operator==(const FileOut&) const = default;
};

// Durations in microseconds, measured by the worker.
struct Timings {
  uint64_t queued_us = 0;
  uint64_t start_us = 0;  // restore (warm) or boot (cold)
  uint64_t exec_us = 0;
  uint64_t teardown_us = 0;
  uint64_t total_us = 0;
  bool operator==(const Timings&) const = default;
};

// What a job used. The guest agent measures cpu_us and peak_memory_kib (the agent protocol
// carries those); the host measures the network counters (a VM's network, outside the guest).
struct Usage {
  uint64_t cpu_us = 0;
  uint64_t peak_memory_kib = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t packets_in = 0;
  uint64_t packets_out = 0;
  uint64_t egress_blocked = 0;  // packets the egress firewall dropped
  bool operator==(const Usage&) const = default;
};

// Which output stream of a program.
enum class OutputStream : uint8_t { kStdout = 1, kStderr = 2 };

// One program to run in a VM: argv, or (when not empty) a script. The worker builds it from a
// JobRequest; the runtime hands it to the guest agent as it is (runtime::ExecRequest,
// agent::ExecCommand are this type).
struct ExecCommand {
  std::vector<std::string> argv;
  // Instead of argv (which is then empty): run in the guest as /bin/sh -c SCRIPT. The memory test
  // double interprets argv only.
  std::string script;
  std::map<std::string, std::string> env;
  std::string cwd;  // absolute; empty: the agent's work directory (/work in a VM)
  std::string stdin_data;
  std::vector<FileIn> files;
  std::vector<std::string> files_out;  // paths to collect after the run
  uint32_t timeout_ms = 30'000;
  uint32_t output_cap = 1u << 20;     // bytes kept per stream (stdout, stderr)
  uint32_t files_out_cap = 1u << 20;  // bytes kept per file out
  // Live output: the agent sends what the program writes as it does (within output_cap), before
  // its result (agent protocol "output" replies).
  bool stream = false;
  bool operator==(const ExecCommand&) const = default;
};

// What a program did: measured in the guest, returned by the runtime, carried to the submitter
// as the first part of a JobResult (messages.h). exit_code is 128 + signal when a signal ended it.
struct ExecOutcome {
  int32_t exit_code = 0;
  int32_t signal = 0;  // non-zero when the program was killed by a signal
  std::string stdout_data;
  std::string stderr_data;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  bool timed_out = false;
  // Killed for memory: the guest kernel's OOM killer ended the program (it ended by a signal, and
  // the guest's OOM-kill counter rose while it ran: agent/guest/exec.h). Wire key "oom_killed",
  // optional, default false (an agent or a worker that predates it sends none).
  bool oom_killed = false;
  std::vector<FileOut> files;
  Usage usage;
  bool operator==(const ExecOutcome&) const = default;
};

}  // namespace paddock::schemas
