// paddock-worker's configuration as a value: what its command line says, checked, with every
// default derived (worker/README.md, "Flags", lists the options). Parsing prints nothing and exits
// nothing: a bad value is a daemon::ConfigError saying which flag and why, so main stays short and
// tests can check each refusal.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "paddock/daemon/daemon.h"
#include "paddock/runtime/backends.h"
#include "paddock/schemas/limits.h"
#include "paddock/worker/worker.h"

namespace paddock::worker {

// READY carries at most schemas::limits::kMaxCapabilities capabilities: one is "backend:<name>",
// each of the others "image:<name>". So a worker advertises at most this many images.
inline constexpr size_t kMaxAdvertisedImages = schemas::limits::kMaxCapabilities - 1;

struct WorkerConfig {
  Options options;  // worker_id, run_dir and friends already derived when not given
  // "qemu" (the default: the real backend), "firecracker", or "memory": the in-memory test
  // double that executes nothing, only when named.
  std::string backend = "qemu";
  runtime::BackendConfig backend_config;
  std::vector<std::string> memory_images;  // --memory-images (the memory backend only)
  std::string ready_file;                  // empty: none
  std::string log_level = "info";
};

// The config, or why the command line is not one (exit code 2; 0 with the help text for --help).
// Reads the CURVE key files it names; resolves tcp:// broker hosts (their addresses are denied
// to jobs).
daemon::Parsed<WorkerConfig> parse_worker_args(int argc, const char* const* argv);

// A network prefix that is this worker's across restarts (so its sweep finds what it left) and
// differs between workers on a host: "p" and 5 hex digits of FNV-1a of the worker id.
std::string derived_net_prefix(const std::string& worker_id);

// The provider the config names, with the images this worker advertises on it: a qemu
// provider's are the ones it really loaded (an image that did not load is not there), the memory
// double's are --memory-images, a firecracker provider's are none (that is, "default").
struct OpenedBackend {
  std::unique_ptr<runtime::Provider> provider;
  std::vector<std::string> images;
};
runtime::Result<OpenedBackend> open_backend(const WorkerConfig& config);

// Checks the images a backend advertises against READY's room (kMaxAdvertisedImages) and
// --warm-images (each must be one of them); a Failure saying which.
base::Status check_images(const std::vector<std::string>& images,
                          const std::vector<std::string>& warm_images);

}  // namespace paddock::worker
