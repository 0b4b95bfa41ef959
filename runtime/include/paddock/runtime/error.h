// The runtime's error type: one of the thirteen product variants (codes 1-13, fixed by the product,
// with the exact messages of the reference runtime) or one of Paddock's own runtime variants
// (14 and up; runtime/README.md "Errors"), and the cause: why it failed. Codes are forever.
// Errors are values: providers return Result<T> and never throw across their interface.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "paddock/base/expected.h"

namespace paddock::runtime {

enum class Variant : uint32_t {
  kVmAlreadyExists = 1,
  kVmNotFound = 2,
  kInvalidTransition = 3,
  kSnapshotAlreadyExists = 4,
  kSnapshotNotFound = 5,
  kStatePoisoned = 6,
  kUnsupported = 7,
  kMetrics = 8,
  kShutdown = 9,
  kFirewall = 10,
  kJailer = 11,
  kNetworkConfig = 12,
  kNetworkSetup = 13,
  // Paddock's own runtime variants (codes 14-99).
  kGuestAgent = 14,  // the guest agent could not be reached or could not run the request
};

// The product's variants are codes 1..kVariantCount; Paddock's own follow, up to kLastVariantCode.
inline constexpr uint32_t kVariantCount = 13;
inline constexpr uint32_t kLastVariantCode = 14;

std::string_view variant_name(Variant v);
// Parses a variant by its name ("VmNotFound"); nullopt for anything else.
std::optional<Variant> variant_from_name(std::string_view name);
inline constexpr uint32_t code_of(Variant v) { return static_cast<uint32_t>(v); }

// Why an operation failed. The variant says where (the wire's frozen contract: a submitter sees
// it); the cause says why, and alone decides whether another attempt may succeed (cause_retryable).
// A cause never reaches the wire itself. Append only: tests walk 1..kCauseCount.
enum class Cause : uint8_t {
  // The request is wrong (a bad rule, id, name or size): it fails alike anywhere.
  kInvalidInput = 1,
  // No such VM or snapshot, or one in the wrong state: the caller's order of calls.
  kVmState,
  // This backend or host cannot do it at all (no binary, no /dev/kvm, no such image).
  kNotSupported,
  // A host file, syscall or command failed (a full or read-only disk, a failed iptables-restore,
  // a damaged stored file).
  kHostIo,
  // The host ran out of something it hands out (addresses, jail uids, memory, processes).
  kResourceExhausted,
  // The VMM exited, or did not come up, before its guest ran anything.
  kVmmStartFailed,
  // A VMM that was up died, stopped answering or failed a command (QMP, Firecracker's API).
  kVmmFailed,
  // A host-side wait ran out (a boot, a migration) with the VMM alive.
  kTimeout,
  // The guest agent could not be reached or could not run the request, or the VM stopped during
  // a job: a job can do each of these to itself.
  kGuestAgent,
  // A broken invariant in Paddock (a poisoned lock, a spec or id it built itself).
  kInternal,
};
inline constexpr uint32_t kCauseCount = 10;

std::string_view cause_name(Cause c);
// Parses a cause by its name ("HostIo"); nullopt for anything else.
std::optional<Cause> cause_from_name(std::string_view name);

// THE mapping from why to whether: true where another attempt (another VM, maybe another host) may
// succeed, i.e. the host or its VMM failed, not the request, the backend's abilities or the guest.
// Error::retryable() and so the worker's JobError.retryable come from here, nowhere else.
bool cause_retryable(Cause c);

class Error {
 public:
  static Error vm_already_exists(std::string vm_id);
  static Error vm_not_found(std::string vm_id);
  static Error invalid_transition(std::string vm_id, std::string from, std::string to);
  static Error snapshot_already_exists(std::string vm_id, std::string snapshot_id);
  static Error snapshot_not_found(std::string vm_id, std::string snapshot_id);
  static Error state_poisoned();
  // The variants with a detail. Without a cause each takes its variant's usual one
  // (default_cause); a call site whose failure is something else names it, e.g.
  // unsupported(Cause::kHostIo, "write ...") for a backend's failed write (code 7 on the wire, as
  // the product reports a backend's failures, but retryable).
  static Error unsupported(std::string detail);
  static Error unsupported(Cause cause, std::string detail);
  static Error metrics(std::string detail);
  static Error shutdown(std::string detail);
  static Error firewall(Cause cause, std::string detail);  // an invalid rule, or the host's tools
  static Error jailer(std::string detail);
  static Error jailer(Cause cause, std::string detail);
  static Error network_config(std::string detail);
  static Error network_setup(std::string detail);
  static Error network_setup(Cause cause, std::string detail);
  static Error guest_agent(std::string detail);
  static Error guest_agent(Cause cause, std::string detail);
  // Any variant with a detail; for the variants with structured fields the detail is ignored and
  // the fields stay empty. Used by the in-memory test double's scripted failures.
  static Error of(Variant v, std::string detail);
  static Error of(Variant v, Cause cause, std::string detail);
  // A variant's usual cause: kVmState for the five structured ones, kInternal for StatePoisoned,
  // kNotSupported for Unsupported, kInvalidInput for NetworkConfig, kGuestAgent for GuestAgent,
  // kHostIo for the host-side rest (Metrics, Shutdown, Firewall, Jailer, NetworkSetup).
  static Cause default_cause(Variant v);

  Variant variant() const { return variant_; }
  uint32_t code() const { return code_of(variant_); }
  std::string_view name() const { return variant_name(variant_); }
  // The exact message of schemas/PROTOCOL.md, "Codes".
  std::string message() const;
  Cause cause() const { return cause_; }
  // Whether a new attempt (another VM, maybe another host) may succeed: cause_retryable(cause()).
  bool retryable() const { return cause_retryable(cause_); }

  const std::optional<std::string>& vm_id() const { return vm_id_; }
  const std::optional<std::string>& snapshot_id() const { return snapshot_id_; }
  const std::optional<std::string>& from() const { return from_; }
  const std::optional<std::string>& to() const { return to_; }
  const std::string& detail() const { return detail_; }

 private:
  explicit Error(Variant v) : variant_(v), cause_(default_cause(v)) {}

  Variant variant_;
  Cause cause_;
  std::optional<std::string> vm_id_;
  std::optional<std::string> snapshot_id_;
  std::optional<std::string> from_;
  std::optional<std::string> to_;
  std::string detail_;
};

// A value or an Error (paddock/base/expected.h). Result<void> carries no value.
template <class T>
using Result = base::Expected<T, Error>;

using Status = Result<void>;

}  // namespace paddock::runtime
