// Templates of the warm pools: one snapshot per VmSpec, taken of a VM that was cold-booted and
// paused, then destroyed (the snapshot outlives it). The template VM is never resumed for a job;
// clones are restored from its snapshot.
//
// Template VM ids are `tpl-<image>-<vcpus>x<mem_mib>-<unix_ms>`; the snapshot id is `template`.
//
// Thread-safety: free functions over a thread-safe Provider.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "paddock/runtime/provider.h"

namespace paddock::worker {

inline constexpr const char* kTemplateSnapshot = "template";
// Where an image's warm-up runs (its working directory, removed after it), and for how long.
inline constexpr const char* kWarmupDir = "/tmp/paddock-warmup";
inline constexpr uint32_t kWarmupTimeoutMs = 120'000;

// "tpl-<image>-<vcpus>x<mem_mib>-".
std::string template_prefix(const runtime::VmSpec& spec);

// Whether `info` is a template snapshot of `spec`: snapshot id `template`, VM id the prefix and a
// decimal timestamp, the same spec.
bool is_template_of(const runtime::SnapshotInfo& info, const runtime::VmSpec& spec);

// The newest template of `spec` that the provider already has (from an earlier worker, say); older
// duplicates are deleted. nullopt if there is none or the provider cannot list its snapshots.
std::optional<std::string> find_template(runtime::Provider& provider, const runtime::VmSpec& spec);

// Builds a new template: create -> start -> the image's warm-up, if it has one (run in kWarmupDir;
// a command that exits non-zero or times out is logged and the template kept, an error of the
// provider fails the build) -> stop -> snapshot -> destroy. Returns its VM id. The VM is destroyed
// on every path; a snapshot is left only on success.
runtime::Result<std::string> build_template(runtime::Provider& provider,
                                            const runtime::VmSpec& spec);

}  // namespace paddock::worker
