// The worker daemon: connects to one or more brokers (a DEALER each), grants them credits for
// its slots, runs each job it receives through a runtime provider, and sends back RESULT or ERROR
// (schemas/PROTOCOL.md, "Worker session"). Slots are split between brokers; a credit goes back to
// the broker whose job freed it.
//
// Thread-safety: run() is called once, on one thread; request_drain() may be called from any
// thread or a signal handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "paddock/base/expected.h"
#include "paddock/client/curve.h"
#include "paddock/runtime/provider.h"
#include "paddock/worker/warm_pool.h"

namespace paddock::worker {

struct Capacity {
  uint32_t vcpus = 0;
  uint32_t mem_mib = 0;
};
struct Options;
// What a worker advertises (Options::capacity_*): the operator's, or from the host where unset.
Capacity capacity_defaults(const Options& o);

struct Options {
  std::vector<std::string> brokers;  // worker endpoints, e.g. tcp://127.0.0.1:5556
  std::string worker_id;
  uint32_t slots = 4;
  // What the worker commits to guests at once, advertised to brokers (READY "vcpus:<n>",
  // "mem_mib:<n>"; split between brokers as the slots are); the broker places jobs within it.
  // 0: from the host, capacity_defaults().
  uint32_t capacity_vcpus = 0;
  uint32_t capacity_mem_mib = 0;
  uint32_t heartbeat_ms = 1000;
  uint32_t liveness = 3;            // missed broker heartbeats before reconnecting
  uint32_t reconnect_min_ms = 250;  // backoff, doubled per failed attempt, with jitter
  uint32_t reconnect_max_ms = 8000;
  uint32_t drain_timeout_ms = 600'000;  // jobs in flight get this long to finish on SIGTERM
  // Warm pools (worker/README.md, "Warm pools"), one per VmSpec (image, vCPUs, memory). The pools
  // of warm_images (below) are made at start; other specs' on their first job. vm_prefix is set by
  // the worker (<worker-id>-warm).
  bool warm = true;
  WarmPoolConfig warm_pool;
  // Pools made for one tenant's jobs, at most (WarmPools): its jobs of further shapes boot cold.
  uint32_t warm_pools_per_tenant = 2;
  // The images this worker has, advertised to brokers as READY capabilities "image:<name>" (the
  // broker sends it only jobs of these). Empty: {"default"}.
  std::vector<std::string> images;
  // Images whose template (1 vCPU, 128 MiB) is built or found at start, before their first job;
  // others' on their first job. Empty: {"default"} if this worker has it.
  std::vector<std::string> warm_images;
  // Serve Prometheus metrics over HTTP at http://<this>/metrics: "HOST:PORT", ":PORT" for
  // loopback, port 0 for an ephemeral one (worker/README.md, "Metrics"). Empty: no server. No
  // authentication: a non-loopback address shows the metrics to whoever can reach it.
  std::string metrics_address;
  // CURVE to every broker (README.md, "Operating Paddock"): the brokers' public key and this
  // worker's key pair, whose public key must be in their --worker-allow lists. nullopt: plaintext.
  std::optional<curve::ClientKeys> curve;
};

class Worker {
 public:
  // Connects to the brokers and starts the metrics server, if asked; a Failure if an endpoint is
  // malformed or the metrics server cannot listen on its address.
  static base::Expected<std::unique_ptr<Worker>> open(Options options,
                                                      std::unique_ptr<runtime::Provider> provider);
  ~Worker();

  // The metrics server's bound "HOST:PORT"; "" without one.
  std::string metrics_address() const;

  // Runs until drained (request_drain) or the provider is poisoned. Returns the process exit
  // code: 0 after a clean drain, 1 if jobs were abandoned at the drain timeout, 3 if the
  // provider's state was poisoned.
  int run();
  void request_drain() { drain_requested_.store(true); }

 private:
  class Loop;
  explicit Worker(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
  std::atomic<bool> drain_requested_{false};
};

}  // namespace paddock::worker
