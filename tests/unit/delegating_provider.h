// A Provider for tests that keeps the in-memory test double's VM lifecycle (create, start,
// snapshots, destroy, ...) and lets a subclass decide what exec() does: a fault, a fake guest.
//
// Thread-safety: the test double's.
#pragma once

#include <chrono>
#include <stop_token>
#include <string>
#include <vector>

#include "paddock/runtime/memory_provider.h"

namespace paddock::testing {

class DelegatingProvider : public runtime::Provider {
 public:
  std::string_view backend() const override { return "delegating-double"; }
  runtime::Status create(const std::string& id, const runtime::VmSpec& spec) override {
    return p_.create(id, spec);
  }
  runtime::Status start(const std::string& id) override { return p_.start(id); }
  runtime::Status stop(const std::string& id) override { return p_.stop(id); }
  runtime::Status resume(const std::string& id) override { return p_.resume(id); }
  runtime::Status destroy(const std::string& id) override { return p_.destroy(id); }
  runtime::Result<runtime::SnapshotInfo> snapshot(const std::string& id,
                                                  const std::string& s) override {
    return p_.snapshot(id, s);
  }
  runtime::Status restore(const std::string& id, const std::string& s,
                          const std::string& n) override {
    return p_.restore(id, s, n);
  }
  runtime::Status delete_snapshot(const std::string& id, const std::string& s) override {
    return p_.delete_snapshot(id, s);
  }
  runtime::Result<runtime::VmInfo> get(const std::string& id) const override { return p_.get(id); }
  runtime::Result<std::vector<runtime::VmInfo>> list() const override { return p_.list(); }
  runtime::Result<std::vector<runtime::SnapshotInfo>> list_snapshots(
      const std::string& id) const override {
    return p_.list_snapshots(id);
  }
  runtime::Result<std::vector<runtime::SnapshotInfo>> all_snapshots() const override {
    return p_.all_snapshots();
  }
  runtime::Status set_egress(const std::string& id,
                             const std::vector<runtime::net::EgressRule>& rules) override {
    return p_.set_egress(id, rules);
  }
  runtime::Result<runtime::NetworkUsage> network_usage(const std::string& id) override {
    return p_.network_usage(id);
  }
  runtime::Status ping(const std::string& id, std::chrono::milliseconds timeout) override {
    return p_.ping(id, timeout);
  }
  // The test double's exec (argv as a tiny script) unless a subclass overrides it.
  runtime::Result<runtime::ExecResult> exec(const std::string& id, const runtime::ExecRequest& r,
                                            std::stop_token cancel) override {
    return p_.exec(id, r, cancel);
  }
  size_t live_vms() const { return p_.live_vms(); }

 protected:
  runtime::MemoryProvider p_;
};

}  // namespace paddock::testing
