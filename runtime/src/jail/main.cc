// paddock-jailer: starts one VMM jailed (runtime/README.md "The jail"). Run as root, by the QEMU
// backend; its arguments are built by jail::paddock_jailer_argv.
#include <cstdio>

#include "jail/steps.h"

// In a sanitizer build, LeakSanitizer's exit-time check needs /proc, which the jail does not have.
extern "C" int __lsan_is_turned_off() { return 1; }

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto spec = paddock::runtime::jail::parse_paddock_jailer_args(args);
  if (!spec) {
    std::fprintf(stderr, "paddock-jailer: %s\n", spec.error().detail().c_str());
    return 64;
  }
  return paddock::runtime::jail::steps::run(spec.value());
}
