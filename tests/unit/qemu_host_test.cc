// QEMU backend pieces that need no VM: the accelerator choice and the console ring buffer.
#include <doctest/doctest.h>

#include "qemu/accel.h"
#include "qemu/console_ring.h"

using namespace paddock::runtime;
using namespace paddock::runtime::qemu;

TEST_CASE("accel auto: KVM only with hardware KVM, never on a nested PVM host") {
  HostVirtFacts hw{true, true, false};
  CHECK(choose_accel("auto", hw).value().accel == "kvm");

  HostVirtFacts pvm{true, false, true};
  auto c = choose_accel("auto", pvm).value();
  CHECK(c.accel == "tcg");
  CHECK(c.reason.find("kvm_pvm") != std::string::npos);

  HostVirtFacts none{false, false, false};
  CHECK(choose_accel("auto", none).value().reason.find("/dev/kvm") != std::string::npos);
  CHECK(choose_accel("tcg", hw).value().accel == "tcg");
}

TEST_CASE("accel kvm where KVM cannot work is Unsupported with the reason") {
  HostVirtFacts pvm{true, false, true};
  auto r = choose_accel("kvm", pvm);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().variant() == Variant::kUnsupported);
  CHECK(r.error().message().find("--accel tcg") != std::string::npos);
  CHECK(choose_accel("warp", pvm).error().variant() == Variant::kUnsupported);
}

TEST_CASE("host TSC frequency is read from /proc/cpuinfo") {
  auto khz = host_tsc_khz();
  REQUIRE(khz.has_value());
  CHECK(*khz > 100'000);  // more than 100 MHz on any host that runs this
}

TEST_CASE("console ring keeps only the last bytes and quotes the last lines") {
  ConsoleRing ring(64);
  for (int i = 0; i < 100; ++i) ring.append("line " + std::to_string(i) + "\n");
  const std::string tail = ring.tail(3);
  CHECK(tail == "line 97\nline 98\nline 99");
  CHECK(ring.contains("line 99"));
  CHECK_FALSE(ring.contains("line 1\n"));
}

TEST_CASE("console ring tail drops control characters") {
  ConsoleRing ring;
  ring.append(std::string("ok\x1b[0m\x07 done\r\n", 14));
  CHECK(ring.tail() == "ok[0m done");
}

TEST_CASE("console ring finds the first line that names a panic") {
  ConsoleRing ring;
  ring.append("[ 1.0] booting\n[ 1.7] Kernel panic - not syncing: sysrq triggered crash\n");
  for (int i = 0; i < 100; ++i) ring.append("[ 1.8]  trace line\n");
  CHECK(ring.line_containing("Kernel panic") ==
        "[ 1.7] Kernel panic - not syncing: sysrq triggered crash");
  CHECK(ring.tail().find("Kernel panic") == std::string::npos);  // scrolled out of the tail
  CHECK(ring.line_containing("nothing like this").empty());
}
