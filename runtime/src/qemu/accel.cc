#include "qemu/accel.h"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace paddock::runtime::qemu {

HostVirtFacts probe_host() {
  HostVirtFacts f;
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    f.kvm_device_usable = true;
    ::close(fd);
  }
  std::error_code ec;
  f.hardware_kvm = std::filesystem::exists("/sys/module/kvm_intel", ec) ||
                   std::filesystem::exists("/sys/module/kvm_amd", ec);
  f.nested_pvm = std::filesystem::exists("/sys/module/kvm_pvm", ec);
  return f;
}

Result<AccelChoice> choose_accel(const std::string& requested, const HostVirtFacts& facts) {
  std::string why_not_kvm;
  if (!facts.kvm_device_usable) {
    why_not_kvm = "/dev/kvm is missing or not read-write";
  } else if (facts.nested_pvm) {
    why_not_kvm =
        "/dev/kvm is served by kvm_pvm (a nested PVM hypervisor), under which a stock "
        "guest kernel hangs at boot";
  } else if (!facts.hardware_kvm) {
    why_not_kvm = "neither kvm_intel nor kvm_amd is loaded";
  }
  if (requested == "tcg") return AccelChoice{"tcg", "requested"};
  if (requested == "kvm") {
    if (why_not_kvm.empty()) return AccelChoice{"kvm", "requested"};
    return Error::unsupported("accel kvm requested but " + why_not_kvm + "; use --accel tcg");
  }
  if (requested != "auto") {
    return Error::unsupported("unknown accel '" + requested + "'; choose auto, kvm or tcg");
  }
  if (why_not_kvm.empty()) return AccelChoice{"kvm", "hardware KVM is available"};
  return AccelChoice{"tcg", "KVM not usable: " + why_not_kvm + "; using TCG (software emulation)"};
}

std::optional<uint64_t> host_tsc_khz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) return std::nullopt;
    try {
      const double mhz = std::stod(line.substr(colon + 1));
      if (mhz <= 0) return std::nullopt;
      return static_cast<uint64_t>(std::llround(mhz * 1000));
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace paddock::runtime::qemu
