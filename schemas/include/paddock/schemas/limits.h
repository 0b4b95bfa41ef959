// Limits every decoder enforces. PROTOCOL.md §Limits restates them; change both together.
#pragma once

#include <cstddef>
#include <cstdint>

namespace paddock::schemas::limits {

inline constexpr size_t kMaxFrameBytes = 16u << 20;   // one ZeroMQ frame (also ZMQ_MAXMSGSIZE)
inline constexpr size_t kMaxBodiesPerMessage = 1024;  // msgpack bodies in one message (SUBMIT)

// msgpack unpack limits, applied before any field is looked at.
inline constexpr size_t kMaxDepth = 6;
inline constexpr size_t kMaxArray = 4096;
inline constexpr size_t kMaxMap = 256;
inline constexpr size_t kMaxStr = 1u << 20;
inline constexpr size_t kMaxBin = kMaxFrameBytes;

inline constexpr size_t kMaxJobId = 128;
// A tenant's name (the name of its key on the broker's client allowlist): 1..64 of [A-Za-z0-9._-],
// not starting with '.' (schemas::valid_tenant).
inline constexpr size_t kMaxTenant = 64;
inline constexpr size_t kMaxImage = 64;
inline constexpr size_t kMaxArgv = 256;
inline constexpr size_t kMaxArg = 64u << 10;
inline constexpr size_t kMaxArgvTotal = 256u << 10;
inline constexpr size_t kMaxEnv = 256;
inline constexpr size_t kMaxEnvKey = 128;
inline constexpr size_t kMaxEnvValue = 32u << 10;
inline constexpr size_t kMaxStdin = 8u << 20;
inline constexpr size_t kMaxFiles = 64;
inline constexpr size_t kMaxPath = 1024;
inline constexpr size_t kMaxFilesTotal = 8u << 20;
inline constexpr uint32_t kMaxVcpus = 16;
inline constexpr uint32_t kMinMemMib = 64;
inline constexpr uint32_t kMaxMemMib = 65536;
inline constexpr uint32_t kMaxTimeoutMs = 24u * 3600 * 1000;
inline constexpr uint32_t kMaxOutputCap = 8u << 20;
inline constexpr size_t kMaxEgressRules = 64;
inline constexpr size_t kMaxPortRanges = 32;
inline constexpr int32_t kMinPriority = -100;
inline constexpr int32_t kMaxPriority = 100;
inline constexpr size_t kMaxSteps = 16;  // JobRequest.steps
// OUTPUT: the data of one chunk. Its offset + size is at most kMaxOutputCap (only what the RESULT
// keeps of a stream is streamed).
inline constexpr size_t kMaxOutputChunk = 64u << 10;
inline constexpr size_t kMaxTags = 32;
inline constexpr size_t kMaxTagKey = 64;
inline constexpr size_t kMaxTagValue = 256;
inline constexpr size_t kMaxMessage = 4096;  // JobError.message
inline constexpr size_t kMaxWorkerId = 128;
inline constexpr size_t kMaxTemplate = 128;  // JobResult.template (a template VM id)
inline constexpr size_t kMaxCapabilities = 64;
inline constexpr size_t kMaxHostName = 255;  // WorkerStatus.host
inline constexpr size_t kMaxWarmPools = 64;  // WorkerStatus.warm_pools
inline constexpr uint32_t kMaxSlots = 4096;

// ---- Limits that compose (PROTOCOL.md, "Limits": every hop)
// -------------------------------------- A job crosses: client -> broker (a SUBMIT body: the
// JobRequest), broker -> worker (a JOB body that wraps it), worker -> agent (an exec frame,
// agent/include/paddock/agent/protocol.h), agent -> worker (a result frame), worker -> broker ->
// client (a RESULT body, forwarded as the worker wrote it). Each limit below is derived from those
// before it, so that whatever the broker accepts fits every later hop and a job is never lost
// between two of them. tests/unit/limits_test.cc walks the chain.

// A JOB body is {attempt, queued_us, request}: the request's bytes plus at most this much (a map
// header, three keys, a uint32 and a uint64 at their widest: 41 bytes).
inline constexpr size_t kMaxDispatchOverhead = 64;
// The largest SUBMIT body (one encoded JobRequest) the broker accepts: its JOB fits one frame.
inline constexpr size_t kMaxRequestBytes = kMaxFrameBytes - kMaxDispatchOverhead;
// The JOB body nests the request one level down: a worker decodes it with one level more, so a
// request at kMaxDepth inside a JOB decodes as it did at SUBMIT.
inline constexpr size_t kMaxDispatchDepth = kMaxDepth + 1;

// A RESULT body: everything but the data of stdout, stderr and the files out (job_id, worker_id,
// template and backend at their limits, timings, usage, 64 files' paths of 1 KiB, keys and
// headers) takes less than this (measured in limits_test.cc: about 72 KiB) ...
inline constexpr size_t kMaxResultOverhead = 1u << 20;
// ... so stdout, stderr and the files' data together are cut to this (the worker does it for
// every backend, schemas::fit_result; the runtime's agent client does it too), and a RESULT always
// fits one frame: 8 MiB of stdout and an 8 MiB file out at their caps cannot both be kept whole.
inline constexpr size_t kMaxResultData = kMaxFrameBytes - kMaxResultOverhead;
static_assert(kMaxResultData >= kMaxOutputCap, "one stream at its cap always fits whole");

}  // namespace paddock::schemas::limits
