// Which accelerator QEMU should use on this host, and why.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "paddock/runtime/error.h"

namespace paddock::runtime::qemu {

struct AccelChoice {
  std::string accel;   // "kvm" or "tcg"
  std::string reason;  // for the log: why this one
};

// Facts about the host that decide the accelerator (read from /dev and /sys; injectable in tests).
struct HostVirtFacts {
  bool kvm_device_usable = false;  // /dev/kvm opens read-write
  bool hardware_kvm = false;       // kvm_intel or kvm_amd is loaded
  bool nested_pvm = false;         // kvm_pvm is loaded: a stock guest kernel hangs under it
};
HostVirtFacts probe_host();

// `requested` is "auto", "kvm" or "tcg". auto picks KVM only where it really works; kvm where it
// cannot work is Unsupported with the reason.
Result<AccelChoice> choose_accel(const std::string& requested, const HostVirtFacts& facts);

// The host's TSC frequency in kHz (from /proc/cpuinfo "cpu MHz"), for tsc_early_khz= on the
// guest's command line: under TCG the guest cannot calibrate its TSC reliably (it has no
// usable PIT to measure it against, so its clock drifts).
std::optional<uint64_t> host_tsc_khz();

}  // namespace paddock::runtime::qemu
