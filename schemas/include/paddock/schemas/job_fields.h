// The job model's fields that both codecs carry the same way (the wire codec, codec.h, and the
// guest agent protocol, paddock/agent/protocol.h): written and read here once, so that a field
// the guest measures reaches the submitter by adding it to job.h and to this file.
#pragma once

#include <cstdint>

#include "paddock/schemas/job.h"
#include "paddock/schemas/msgpack_core.h"

namespace paddock::schemas::mp {

// The usage the guest agent measures (job.h, Usage): entries of the agent's result map and the
// first entries of a JobResult's "usage" map, the same keys in the same order in both. Each is an
// unsigned 64-bit integer, 0 when absent.
inline void write_guest_usage(MapWriter& w, const Usage& u) {
  w.num("cpu_us", u.cpu_us).num("peak_memory_kib", u.peak_memory_kib);
}

inline void read_guest_usage(const Fields& f, Usage& u) {
  u.cpu_us = f.uint("cpu_us", 0, UINT64_MAX, 0);
  u.peak_memory_kib = f.uint("peak_memory_kib", 0, UINT64_MAX, 0);
}

}  // namespace paddock::schemas::mp
