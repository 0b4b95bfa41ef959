// The runtime variants: the product's 13 (codes, names, exact messages, fields) and Paddock's own
// from 14 on; the causes, and the one mapping from cause to retryable.
#include <doctest/doctest.h>

#include <iterator>
#include <tuple>

#include "paddock/runtime/error.h"

using paddock::runtime::Cause;
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
  CHECK(Error::firewall(Cause::kHostIo, "iptables-restore: exit 1").message() ==
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

TEST_CASE("every cause maps to retryable exactly where another attempt may succeed") {
  // The one mapping, as a table: the host or its VMM failed (retryable) or the request, the
  // caller, the backend's abilities, the guest or Paddock did (final).
  const std::tuple<Cause, const char*, bool> table[] = {
      {Cause::kInvalidInput, "InvalidInput", false},
      {Cause::kVmState, "VmState", false},
      {Cause::kNotSupported, "NotSupported", false},
      {Cause::kHostIo, "HostIo", true},
      {Cause::kResourceExhausted, "ResourceExhausted", true},
      {Cause::kVmmStartFailed, "VmmStartFailed", true},
      {Cause::kVmmFailed, "VmmFailed", true},
      {Cause::kTimeout, "Timeout", true},
      {Cause::kGuestAgent, "GuestAgent", false},
      {Cause::kInternal, "Internal", false},
  };
  REQUIRE(std::size(table) == paddock::runtime::kCauseCount);
  uint32_t expected = 1;
  for (const auto& [cause, name, retryable] : table) {
    CAPTURE(name);
    CHECK(static_cast<uint32_t>(cause) == expected++);
    CHECK(paddock::runtime::cause_name(cause) == name);
    CHECK(paddock::runtime::cause_from_name(name) == cause);
    CHECK(paddock::runtime::cause_retryable(cause) == retryable);
    // The cause alone decides, whatever the variant it is raised as.
    for (uint32_t code = 1; code <= paddock::runtime::kLastVariantCode; ++code) {
      const auto e = Error::of(static_cast<Variant>(code), cause, "x");
      CHECK(e.cause() == cause);
      CHECK(e.retryable() == retryable);
      CHECK(e.code() == code);
    }
  }
  CHECK(paddock::runtime::cause_name(static_cast<Cause>(0)) == "Unknown");
  CHECK(paddock::runtime::cause_name(static_cast<Cause>(11)) == "Unknown");
  CHECK_FALSE(paddock::runtime::cause_from_name("Nope").has_value());
}

TEST_CASE("each variant has its usual cause, so a factory without one keeps its old retryable") {
  const std::tuple<Variant, Cause, bool> table[] = {
      {Variant::kVmAlreadyExists, Cause::kVmState, false},
      {Variant::kVmNotFound, Cause::kVmState, false},
      {Variant::kInvalidTransition, Cause::kVmState, false},
      {Variant::kSnapshotAlreadyExists, Cause::kVmState, false},
      {Variant::kSnapshotNotFound, Cause::kVmState, false},
      {Variant::kStatePoisoned, Cause::kInternal, false},
      {Variant::kUnsupported, Cause::kNotSupported, false},
      {Variant::kMetrics, Cause::kHostIo, true},
      {Variant::kShutdown, Cause::kHostIo, true},
      {Variant::kFirewall, Cause::kHostIo, true},
      {Variant::kJailer, Cause::kHostIo, true},
      {Variant::kNetworkConfig, Cause::kInvalidInput, false},
      {Variant::kNetworkSetup, Cause::kHostIo, true},
      {Variant::kGuestAgent, Cause::kGuestAgent, false},
  };
  REQUIRE(std::size(table) == paddock::runtime::kLastVariantCode);
  for (const auto& [variant, cause, retryable] : table) {
    CAPTURE(paddock::runtime::variant_name(variant));
    CHECK(Error::default_cause(variant) == cause);
    CHECK(Error::of(variant, "x").cause() == cause);
    CHECK(Error::of(variant, "x").retryable() == retryable);
  }
  CHECK(Error::jailer("x").retryable());
  CHECK(Error::network_setup("x").retryable());
  CHECK(Error::shutdown("x").retryable());
  CHECK(Error::metrics("x").retryable());
  CHECK_FALSE(Error::network_config("x").retryable());
  CHECK_FALSE(Error::unsupported("x").retryable());
  CHECK_FALSE(Error::vm_not_found("x").retryable());
  CHECK_FALSE(Error::state_poisoned().retryable());
  CHECK(Error::state_poisoned().cause() == Cause::kInternal);
  CHECK(Error::invalid_transition("v", "a", "b").cause() == Cause::kVmState);
}

TEST_CASE("one wire variant, two causes: a backend's host failure and a Firewall's") {
  // Unsupported on the wire (code 7, the product's message) whether the backend cannot do a thing
  // or its disk is full; only the second is worth another attempt.
  const auto cannot = Error::unsupported("no /dev/kvm");
  const auto full =
      Error::unsupported(Cause::kHostIo, "write /snap/memory: No space left on device");
  CHECK(cannot.code() == 7);
  CHECK(full.code() == 7);
  CHECK(full.message() == "backend unsupported: write /snap/memory: No space left on device");
  CHECK_FALSE(cannot.retryable());
  CHECK(full.retryable());
  // Firewall (code 10) for an invalid rule (the submitter's) and for iptables failing (the host's).
  const auto rule = Error::firewall(Cause::kInvalidInput, "rule 0: reversed range 90-80");
  const auto host = Error::firewall(Cause::kHostIo, "iptables-restore -w failed (exit 4)");
  CHECK(rule.code() == 10);
  CHECK(host.code() == 10);
  CHECK_FALSE(rule.retryable());
  CHECK(host.retryable());
  CHECK(Error::jailer(Cause::kInternal, "step validate: x").code() == 11);
  CHECK_FALSE(Error::jailer(Cause::kInternal, "step validate: x").retryable());
  CHECK(Error::guest_agent(Cause::kTimeout, "no guest agent within 5000 ms").code() == 14);
  CHECK(Error::guest_agent(Cause::kTimeout, "no guest agent within 5000 ms").retryable());
  CHECK(Error::network_setup(Cause::kResourceExhausted, "address pool exhausted").code() == 13);
}
