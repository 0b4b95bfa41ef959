// libFuzzer target: a snapshot's meta.json as the QEMU backend's snapshot store reads it
// (runtime/src/qemu/snapshot_store.h, parse_meta). It must never crash or throw. A refusal must be
// Unsupported and name the field; an accepted value must satisfy the contract parse_meta promises
// (valid ids, memory.size == mem_mib MiB, hex checksums, limits) and survive encode_meta and
// parse_meta again unchanged. The same bytes are also read as an image's image.json
// (runtime/src/qemu/guest_image.h, parse_image_warmup): a refusal is Unsupported, an accepted
// warm-up keeps the limits.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "qemu/guest_image.h"
#include "qemu/snapshot_store.h"

namespace rt = paddock::runtime;
namespace qemu = paddock::runtime::qemu;
namespace lim = paddock::runtime::qemu::snapshot_limits;

namespace {

bool is_hex128(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void check_contract(const qemu::SnapshotMeta& m) {
  if (m.format != lim::kFormat) __builtin_trap();
  if (!qemu::valid_path_id(m.vm_id) || !qemu::valid_path_id(m.snapshot_id)) __builtin_trap();
  if (m.image.size() > lim::kMaxId) __builtin_trap();
  if (m.vcpus < 1 || m.vcpus > lim::kMaxVcpus) __builtin_trap();
  if (m.mem_mib < 1 || m.mem_mib > lim::kMaxMemMib) __builtin_trap();
  if (m.memory.size != uint64_t{m.mem_mib} << 20) __builtin_trap();
  if (!is_hex128(m.memory.xxh3_128) || !is_hex128(m.state.xxh3_128)) __builtin_trap();
  for (const auto* text : {&m.env.qemu_version, &m.env.accel, &m.env.machine, &m.env.cpu,
                           &m.env.image_id, &m.env.kernel_args}) {
    if (text->size() > lim::kMaxText) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto warmup = qemu::parse_image_warmup("fuzz", text); warmup) {
    if (warmup.value().size() > qemu::kMaxWarmupArgs) __builtin_trap();
    for (const auto& arg : warmup.value()) {
      if (arg.size() > qemu::kMaxWarmupArgBytes) __builtin_trap();
    }
  } else if (warmup.error().variant() != rt::Variant::kUnsupported) {
    __builtin_trap();
  }
  auto meta = qemu::parse_meta(text);
  if (!meta) {
    if (meta.error().variant() != rt::Variant::kUnsupported || meta.error().detail().empty()) {
      __builtin_trap();
    }
    return 0;
  }
  check_contract(meta.value());
  auto again = qemu::parse_meta(qemu::encode_meta(meta.value()));
  if (!again || !(again.value() == meta.value())) __builtin_trap();
  return 0;
}
