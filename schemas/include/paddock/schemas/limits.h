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
inline constexpr size_t kMaxTags = 32;
inline constexpr size_t kMaxTagKey = 64;
inline constexpr size_t kMaxTagValue = 256;
inline constexpr size_t kMaxMessage = 4096;  // JobError.message
inline constexpr size_t kMaxWorkerId = 128;
inline constexpr size_t kMaxTemplate = 128;  // JobResult.template (a template VM id)
inline constexpr size_t kMaxCapabilities = 64;
inline constexpr size_t kMaxHostName = 255;   // WorkerStatus.host
inline constexpr size_t kMaxWarmPools = 64;   // WorkerStatus.warm_pools
inline constexpr uint32_t kMaxSlots = 4096;

}  // namespace paddock::schemas::limits
