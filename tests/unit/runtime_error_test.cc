// The runtime variants: the product's 13 (codes, names, exact messages, fields, retryability) and
// Paddock's own from 14 on.
#include <doctest/doctest.h>

#include "paddock/runtime/error.h"

using paddock::runtime::Error;
using paddock::runtime::Variant;

TEST_CASE("runtime error variants have the product's codes and names, in order") {
  const std::pair<Variant, const char*> table[] = {
      {Variant::kVmAlreadyExists, "VmAlreadyExists"},
      {Variant::kVmNotFound, "VmNotFound"},
      {Variant::kInvalidTransition, "InvalidTransition"},
      {Variant::kSnapshotAlreadyExists, "SnapshotAlreadyExists"},
      {Variant::kSnapshotNotFound, "SnapshotNotFound"},
      {Variant::kStatePoisoned, "StatePoisoned"},
      {Variant::kUnsupported, "Unsupported"},
      {Variant::kMetrics, "Metrics"},
      {Variant::kShutdown, "Shutdown"},
      {Variant::kFirewall, "Firewall"},
      {Variant::kJailer, "Jailer"},
      {Variant::kNetworkConfig, "NetworkConfig"},
      {Variant::kNetworkSetup, "NetworkSetup"},
  };
  uint32_t expected_code = 1;
  for (const auto& [v, name] : table) {
    CHECK(paddock::runtime::code_of(v) == expected_code);
    CHECK(paddock::runtime::variant_name(v) == name);
    CHECK(paddock::runtime::variant_from_name(name) == v);
    ++expected_code;
  }
  CHECK(expected_code - 1 == paddock::runtime::kVariantCount);
  CHECK_FALSE(paddock::runtime::variant_from_name("Nope").has_value());
  CHECK(paddock::runtime::variant_name(static_cast<Variant>(99)) == "Unknown");
}

TEST_CASE("Paddock's own runtime variants follow the product's 13") {
  CHECK(paddock::runtime::kVariantCount == 13);
  CHECK(paddock::runtime::kLastVariantCode == 14);
  CHECK(paddock::runtime::code_of(Variant::kGuestAgent) == 14);
  CHECK(paddock::runtime::variant_name(Variant::kGuestAgent) == "GuestAgent");
  CHECK(paddock::runtime::variant_from_name("GuestAgent") == Variant::kGuestAgent);
  CHECK(paddock::runtime::variant_name(static_cast<Variant>(15)) == "Unknown");
  CHECK(paddock::runtime::variant_name(static_cast<Variant>(0)) == "Unknown");
  const auto e = Error::guest_agent("read agent channel: Connection reset by peer");
  CHECK(e.code() == 14);
  CHECK(e.name() == "GuestAgent");
  CHECK(e.message() == "guest agent error: read agent channel: Connection reset by peer");
  CHECK(e.detail() == "read agent channel: Connection reset by peer");
  CHECK_FALSE(e.retryable());
  CHECK_FALSE(e.vm_id().has_value());
  CHECK(Error::of(Variant::kGuestAgent, "x").message() == "guest agent error: x");
}

TEST_CASE("runtime error messages are exactly the reference runtime's") {
  CHECK(Error::vm_already_exists("vm-1").message() == "vm 'vm-1' already exists");
  CHECK(Error::vm_not_found("vm-2").message() == "vm 'vm-2' not found");
  CHECK(Error::invalid_transition("vm-3", "created", "stopped").message() ==
        "invalid vm transition for 'vm-3': created -> stopped");
  CHECK(Error::snapshot_already_exists("vm-4", "s1").message() ==
        "snapshot 's1' already exists for vm 'vm-4'");
  CHECK(Error::snapshot_not_found("vm-5", "s2").message() ==
        "snapshot 's2' not found for vm 'vm-5'");
  CHECK(Error::state_poisoned().message() == "provider state lock poisoned");
  CHECK(Error::unsupported("no kvm").message() == "backend unsupported: no kvm");
  CHECK(Error::metrics("fifo gone").message() == "metrics: fifo gone");
  CHECK(Error::shutdown("still alive").message() == "shutdown failed: still alive");
  CHECK(Error::firewall("iptables-restore: exit 1").message() ==
        "firewall error: iptables-restore: exit 1");
  CHECK(Error::jailer("chroot: EPERM").message() == "jailer error: chroot: EPERM");
  CHECK(Error::network_config("bad cidr").message() == "network config invalid: bad cidr");
  CHECK(Error::network_setup("no tap").message() == "network setup failed: no tap");
}

TEST_CASE("runtime errors carry their structured fields") {
  auto e = Error::invalid_transition("vm-9", "running", "created");
  CHECK(e.variant() == Variant::kInvalidTransition);
  CHECK(e.code() == 3);
  CHECK(e.name() == "InvalidTransition");
  CHECK(e.vm_id() == "vm-9");
  CHECK(e.from() == "running");
  CHECK(e.to() == "created");
  CHECK_FALSE(e.snapshot_id().has_value());
  auto s = Error::snapshot_not_found("vm-1", "snap");
  CHECK(s.vm_id() == "vm-1");
  CHECK(s.snapshot_id() == "snap");
  CHECK_FALSE(s.from().has_value());
  CHECK(Error::jailer("x").detail() == "x");
}

TEST_CASE("host-side faults are retryable, request and state faults are not") {
  CHECK(Error::jailer("x").retryable());
  CHECK(Error::network_setup("x").retryable());
  CHECK(Error::firewall("x").retryable());
  CHECK(Error::shutdown("x").retryable());
  CHECK(Error::metrics("x").retryable());
  CHECK_FALSE(Error::network_config("x").retryable());
  CHECK_FALSE(Error::unsupported("x").retryable());
  CHECK_FALSE(Error::vm_not_found("x").retryable());
  CHECK_FALSE(Error::state_poisoned().retryable());
}
