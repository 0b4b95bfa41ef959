#include "paddock/runtime/error.h"

#include <array>

#include "paddock/schemas/codes.h"

namespace paddock::runtime {
namespace {

// The names are the wire's (schemas/codes.h), the one table of them.
static_assert(kLastVariantCode == schemas::kRuntimeVariantCount);

constexpr std::array<std::string_view, kCauseCount> kCauseNames = {
    "InvalidInput",   "VmState",   "NotSupported", "HostIo",     "ResourceExhausted",
    "VmmStartFailed", "VmmFailed", "Timeout",      "GuestAgent", "Internal"};

std::string quoted(const std::optional<std::string>& s) {
  // Appended piecewise: g++ 12 at -O3 warns falsely (-Wrestrict) on "'" + str + "'".
  std::string out(1, '\'');
  out.append(s.value_or("")).push_back('\'');
  return out;
}

}  // namespace

std::string_view variant_name(Variant v) {
  const auto i = static_cast<uint32_t>(v);
  return schemas::runtime_variant_name(i);
}

std::optional<Variant> variant_from_name(std::string_view name) {
  for (uint32_t i = 0; i < kLastVariantCode; ++i) {
    if (schemas::kRuntimeVariantNames[i] == name) return static_cast<Variant>(i + 1);
  }
  return std::nullopt;
}

std::string_view cause_name(Cause c) {
  const auto i = static_cast<uint32_t>(c);
  return i >= 1 && i <= kCauseCount ? kCauseNames[i - 1] : std::string_view("Unknown");
}

std::optional<Cause> cause_from_name(std::string_view name) {
  for (uint32_t i = 0; i < kCauseCount; ++i) {
    if (kCauseNames[i] == name) return static_cast<Cause>(i + 1);
  }
  return std::nullopt;
}

bool cause_retryable(Cause c) {
  switch (c) {
    // The host or its VMM failed: another VM, or another host, may not.
    case Cause::kHostIo:
    case Cause::kResourceExhausted:
    case Cause::kVmmStartFailed:
    case Cause::kVmmFailed:
    case Cause::kTimeout:
      return true;
    // The request, the caller, the backend's abilities, the guest (the job can end or wedge it)
    // or Paddock itself: the same attempt fails the same way elsewhere.
    case Cause::kInvalidInput:
    case Cause::kVmState:
    case Cause::kNotSupported:
    case Cause::kGuestAgent:
    case Cause::kInternal:
      return false;
  }
  return false;
}

Cause Error::default_cause(Variant v) {
  switch (v) {
    case Variant::kVmAlreadyExists:
    case Variant::kVmNotFound:
    case Variant::kInvalidTransition:
    case Variant::kSnapshotAlreadyExists:
    case Variant::kSnapshotNotFound:
      return Cause::kVmState;
    case Variant::kStatePoisoned:
      return Cause::kInternal;
    case Variant::kUnsupported:
      return Cause::kNotSupported;
    case Variant::kNetworkConfig:
      return Cause::kInvalidInput;
    case Variant::kGuestAgent:
      return Cause::kGuestAgent;
    case Variant::kMetrics:
    case Variant::kShutdown:
    case Variant::kFirewall:
    case Variant::kJailer:
    case Variant::kNetworkSetup:
      return Cause::kHostIo;
  }
  return Cause::kInternal;
}

Error Error::vm_already_exists(std::string vm_id) {
  Error e(Variant::kVmAlreadyExists);
  e.vm_id_ = std::move(vm_id);
  return e;
}
Error Error::vm_not_found(std::string vm_id) {
  Error e(Variant::kVmNotFound);
  e.vm_id_ = std::move(vm_id);
  return e;
}
Error Error::invalid_transition(std::string vm_id, std::string from, std::string to) {
  Error e(Variant::kInvalidTransition);
  e.vm_id_ = std::move(vm_id);
  e.from_ = std::move(from);
  e.to_ = std::move(to);
  return e;
}
Error Error::snapshot_already_exists(std::string vm_id, std::string snapshot_id) {
  Error e(Variant::kSnapshotAlreadyExists);
  e.vm_id_ = std::move(vm_id);
  e.snapshot_id_ = std::move(snapshot_id);
  return e;
}
Error Error::snapshot_not_found(std::string vm_id, std::string snapshot_id) {
  Error e(Variant::kSnapshotNotFound);
  e.vm_id_ = std::move(vm_id);
  e.snapshot_id_ = std::move(snapshot_id);
  return e;
}
Error Error::state_poisoned() { return Error(Variant::kStatePoisoned); }
Error Error::unsupported(std::string detail) {
  return of(Variant::kUnsupported, std::move(detail));
}
Error Error::unsupported(Cause cause, std::string detail) {
  return of(Variant::kUnsupported, cause, std::move(detail));
}
Error Error::metrics(std::string detail) { return of(Variant::kMetrics, std::move(detail)); }
Error Error::shutdown(std::string detail) { return of(Variant::kShutdown, std::move(detail)); }
Error Error::firewall(Cause cause, std::string detail) {
  return of(Variant::kFirewall, cause, std::move(detail));
}
Error Error::jailer(std::string detail) { return of(Variant::kJailer, std::move(detail)); }
Error Error::jailer(Cause cause, std::string detail) {
  return of(Variant::kJailer, cause, std::move(detail));
}
Error Error::network_config(std::string detail) {
  return of(Variant::kNetworkConfig, std::move(detail));
}
Error Error::network_setup(std::string detail) {
  return of(Variant::kNetworkSetup, std::move(detail));
}
Error Error::network_setup(Cause cause, std::string detail) {
  return of(Variant::kNetworkSetup, cause, std::move(detail));
}
Error Error::guest_agent(std::string detail) { return of(Variant::kGuestAgent, std::move(detail)); }
Error Error::guest_agent(Cause cause, std::string detail) {
  return of(Variant::kGuestAgent, cause, std::move(detail));
}

Error Error::of(Variant v, std::string detail) {
  Error e(v);
  e.detail_ = std::move(detail);
  return e;
}

Error Error::of(Variant v, Cause cause, std::string detail) {
  Error e = of(v, std::move(detail));
  e.cause_ = cause;
  return e;
}

std::string Error::message() const {
  switch (variant_) {
    case Variant::kVmAlreadyExists:
      return "vm " + quoted(vm_id_) + " already exists";
    case Variant::kVmNotFound:
      return "vm " + quoted(vm_id_) + " not found";
    case Variant::kInvalidTransition:
      return "invalid vm transition for " + quoted(vm_id_) + ": " + from_.value_or("") + " -> " +
             to_.value_or("");
    case Variant::kSnapshotAlreadyExists:
      return "snapshot " + quoted(snapshot_id_) + " already exists for vm " + quoted(vm_id_);
    case Variant::kSnapshotNotFound:
      return "snapshot " + quoted(snapshot_id_) + " not found for vm " + quoted(vm_id_);
    case Variant::kStatePoisoned:
      return "provider state lock poisoned";
    case Variant::kUnsupported:
      return "backend unsupported: " + detail_;
    case Variant::kMetrics:
      return "metrics: " + detail_;
    case Variant::kShutdown:
      return "shutdown failed: " + detail_;
    case Variant::kFirewall:
      return "firewall error: " + detail_;
    case Variant::kJailer:
      return "jailer error: " + detail_;
    case Variant::kNetworkConfig:
      return "network config invalid: " + detail_;
    case Variant::kNetworkSetup:
      return "network setup failed: " + detail_;
    case Variant::kGuestAgent:
      return "guest agent error: " + detail_;
  }
  return "unknown runtime error";
}

}  // namespace paddock::runtime
