// The operator's limits per tenant (broker/README.md, "Tenants"): a TOML file given with
// --tenants, read at start and again on SIGHUP (a file that does not read keeps the limits before
// it, and the broker says why). Without a file every tenant has the defaults below, which limit
// nothing that the protocol's own limits do not.
//
//   [defaults]                 # every tenant's, unless its own table says otherwise
//   max_queued = 100000        # its jobs waiting for a worker, at most (REJECTED 108 past it)
//   max_running = 64           # its jobs on workers at once, at most (the rest wait queued)
//   weight = 1.0               # its share of dispatch against other tenants' (fair share)
//   submit_rate = 500.0        # jobs accepted per second, sustained (token bucket; 0 = no limit)
//   submit_burst = 1000        # jobs accepted at once above the rate (the bucket's size)
//   max_vcpus = 4              # per job: past any of these, ERROR 100 naming the limit
//   max_mem_mib = 4096
//   max_timeout_ms = 600000
//   max_output_cap = 1048576
//   images = ["default", "python"]   # images its jobs may name (absent or []: any)
//
//   [tenants.alice]            # alice's: the defaults, with these changed
//   max_queued = 500
//
// Thread-safety: a value; the loop owns its copy.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/base/expected.h"
#include "paddock/schemas/limits.h"
#include "paddock/schemas/messages.h"

namespace paddock::broker {

struct TenantLimits {
  uint64_t max_queued = 1'000'000'000;
  uint64_t max_running = 1'000'000'000;
  double weight = 1.0;
  double submit_rate = 0;  // jobs per second; 0: no rate limit
  uint64_t submit_burst = 1000;
  uint32_t max_vcpus = 16;
  uint32_t max_mem_mib = 65536;
  uint32_t max_timeout_ms = 86'400'000;
  uint32_t max_output_cap = schemas::limits::kMaxOutputCap;
  std::vector<std::string> images;  // empty: any image
};

// A request past one of `limits`' per-job caps: the ERROR 100's field and message; nullopt if
// it is within them.
struct CapRefusal {
  std::string field;
  std::string message;
};
std::optional<CapRefusal> check_caps(const TenantLimits& limits, std::string_view tenant,
                                     const schemas::JobRequest& request);

// The REJECTED 108's message of a job past its tenant's max_queued (one wording for both stores).
std::string max_queued_refusal(std::string_view tenant, uint64_t max_queued);

class TenantPolicy {
 public:
  // Reads and checks a policy file: a Failure names the file, the key and what is wrong (an
  // unknown key, a value out of range, a tenant name that is not one).
  static base::Expected<TenantPolicy> load(const std::string& path);
  static base::Expected<TenantPolicy> parse(std::string_view text, const std::string& source);

  const TenantLimits& of(std::string_view tenant) const;
  const TenantLimits& defaults() const { return defaults_; }
  size_t named() const { return tenants_.size(); }

 private:
  TenantLimits defaults_;
  std::map<std::string, TenantLimits, std::less<>> tenants_;
};

}  // namespace paddock::broker
