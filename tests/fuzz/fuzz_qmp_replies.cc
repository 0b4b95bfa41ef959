// libFuzzer target: bytes QEMU sends on its QMP socket, as the host's QmpClient reads them
// (runtime/src/qemu/qmp_client.h): cut into lines by QmpLineBuffer (fed in two pieces, split where
// the first byte says) and decoded by parse_qmp_message; the whole input is also decoded as one
// line. A compromised QEMU is as hostile as its guest: nothing may crash or throw, a refusal must
// say why, and every text taken from QEMU (an error's desc, a string member read with
// qmp_string) must come out bounded and printable.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "qemu/qmp_client.h"

namespace qemu = paddock::runtime::qemu;

namespace {

// What os::peer_text promises: at most kMaxText characters and "...",
// all printable ASCII.
void check_quoted(const std::string& text) {
  if (text.size() > qemu::qmp_limits::kMaxText + 3) __builtin_trap();
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) __builtin_trap();
  }
}

void decode(std::string_view line) {
  std::string error;
  auto m = qemu::parse_qmp_message(line, error);
  if (!m) {
    if (error.empty()) __builtin_trap();
    return;
  }
  check_quoted(m->error);
  if (m->kind == qemu::QmpMessage::Kind::kError && m->error.empty()) __builtin_trap();
  // What QemuVm reads of a return value.
  for (const char* key : {"status", "error-desc"}) {
    check_quoted(qemu::qmp_string(m->value, key, ""));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  decode(input);
  if (size == 0) return 0;
  const size_t split = static_cast<size_t>(data[0]) % size;
  qemu::QmpLineBuffer lines;
  size_t taken = 0;
  const auto drain = [&] {
    while (auto line = lines.next_line()) {
      taken += line->size() + 1;
      if (line->find('\n') != std::string::npos) __builtin_trap();
      decode(*line);
    }
    if (lines.overflowed() && size - taken <= qemu::qmp_limits::kMaxLine) __builtin_trap();
  };
  lines.feed(input.substr(0, split));
  drain();
  lines.feed(input.substr(split));
  drain();
  return 0;
}
