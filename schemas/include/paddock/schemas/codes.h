// The wire's outcome codes. Codes are forever: a number, once given a meaning, keeps it.
//
//   1..13   runtime variants (VmAlreadyExists .. NetworkSetup), the product's, frozen; their
//           names and messages travel in the ERROR frame itself.
//   14      GuestAgent, Paddock's own runtime variant.
//   15..99  reserved for runtime variants the product grows.
//   100..   job and queue outcomes, decided by the broker or the worker, listed here.
//
// Decoders keep codes they do not know as numbers; code_name() answers "Unknown" for them.
#pragma once

#include <cstdint>
#include <iterator>
#include <string_view>

namespace paddock::schemas {

enum class JobCode : uint32_t {
  kInvalidRequest = 100,    // the request or frame broke the protocol; message names the field
  kCancelled = 101,         // cancelled by the submitter before it finished
  kWorkerLost = 102,        // every attempt's worker died or vanished; attempts exhausted
  kQueueFull = 103,         // the broker's queue is at its limit; retry later (REJECTED)
  kDeadlineExceeded = 104,  // the job's deadline passed before a worker could start it
  kUnknownJob = 105,        // CANCEL or FETCH named a job the broker does not hold
  kUnknownImage = 106,      // no connected worker has the job's image
  kJournalDamaged = 107,    // the broker's stored copy of the job failed its checksum; quarantined
  kQuotaExceeded = 108,     // the tenant is at a limit of its own; retry later (REJECTED)
  kTooLarge = 109,          // no connected worker that has the image can ever fit the job
};

// The runtime variants' names by code (1..14), the one table paddock::runtime and the CLI read.
inline constexpr std::string_view kRuntimeVariantNames[] = {"VmAlreadyExists",
                                                            "VmNotFound",
                                                            "InvalidTransition",
                                                            "SnapshotAlreadyExists",
                                                            "SnapshotNotFound",
                                                            "StatePoisoned",
                                                            "Unsupported",
                                                            "Metrics",
                                                            "Shutdown",
                                                            "Firewall",
                                                            "Jailer",
                                                            "NetworkConfig",
                                                            "NetworkSetup",
                                                            "GuestAgent"};
inline constexpr uint32_t kRuntimeVariantCount = std::size(kRuntimeVariantNames);

// Name of runtime variant `code` ("VmAlreadyExists" for 1, ...), or "Unknown" for any other.
constexpr std::string_view runtime_variant_name(uint32_t code) {
  return code >= 1 && code <= kRuntimeVariantCount ? kRuntimeVariantNames[code - 1]
                                                   : std::string_view("Unknown");
}

inline constexpr uint32_t kFirstRuntimeCode = 1;
inline constexpr uint32_t kLastRuntimeCode = 99;
inline constexpr uint32_t kFirstJobCode = 100;

// Name of a job/queue code ("InvalidRequest", ...), or "Unknown" for any other number.
std::string_view job_code_name(uint32_t code);

inline constexpr uint32_t code(JobCode c) { return static_cast<uint32_t>(c); }

}  // namespace paddock::schemas
