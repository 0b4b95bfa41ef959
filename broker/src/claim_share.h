// Weighted fair share of a shared-queue broker's claims (shared_store.h). When this broker's
// workers have room for n jobs of an image, split() says how many to claim of each tenant that
// has queued jobs of it: each tenant has a virtual time that a job claimed for it advances by
// 1/weight, and each of the n goes to the tenant with the least (ties by name). A tenant that had
// nothing claimed for a while comes back at the current time: no credit is saved up by waiting.
// It is the queue's own fair share (job_queue.h) applied to what is taken from the shared queue;
// every broker keeps its own, and since each broker's claims are fair, so is their sum.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace paddock::broker {

class ClaimShare {
 public:
  struct Tenant {
    std::string name;
    double weight = 1.0;
    uint64_t allowance = UINT64_MAX;  // at most this many (what its running cap leaves)
  };
  // How many of `n` to claim of each of `tenants` (parallel to it), charged as if all are
  // claimed: settle() gives back what was asked and not got.
  std::vector<size_t> split(const std::vector<Tenant>& tenants, size_t n);
  void settle(const Tenant& tenant, size_t asked, size_t got);
  // For tests: a tenant's virtual time (the current time if it has none).
  double vtime_of(std::string_view tenant) const;

 private:
  std::map<std::string, double, std::less<>> vtime_;
  double vnow_ = 0;
};

}  // namespace paddock::broker
