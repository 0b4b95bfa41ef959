// Shared by the codec's unit tests (codec_test.cc, outcome_view_test.cc): values with every field
// set, msgpack written by hand for bodies the C++ encoder never writes, and test files read whole.
#pragma once

#include <doctest/doctest.h>

#include <msgpack.hpp>

#include <cstdint>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>

#include "paddock/schemas/messages.h"

namespace paddock::test {

namespace sc = paddock::schemas;

inline sc::JobResult full_result() {
  sc::JobResult r;
  r.job_id = "res-1";
  r.exit_code = INT32_MIN;
  r.signal = 128;
  r.stdout_data = "hello\n";
  r.stderr_data = std::string("\xff\0warn", 6);
  r.stdout_truncated = true;
  r.stderr_truncated = true;
  r.timed_out = true;
  r.oom_killed = true;
  r.files = {sc::FileOut{"out/a.txt", "A", false},
             sc::FileOut{"b.bin", std::string("\0", 1), true}};
  r.timings = sc::Timings{1, 2, 3, 4, UINT64_MAX};
  r.usage = sc::Usage{5, 6, 7, 8, 9, 10, 11};
  r.worker_id = "worker-7";
  r.attempt = UINT32_MAX;
  r.warm = true;
  r.backend = "memory";
  r.template_vm = std::string(128, 't');
  return r;
}

inline sc::JobError full_error() {
  sc::JobError e;
  e.job_id = "err-1";
  e.code = 5;
  e.variant = "SnapshotNotFound";
  e.message = "snapshot 's1' not found for vm 'vm-1'";
  e.vm_id = "vm-1";
  e.snapshot_id = "s1";
  e.from = "Running";
  e.to = "Paused";
  e.worker_id = "w";
  e.attempt = 2;
  e.retryable = true;
  return e;
}

// msgpack bytes written by a callback, for bodies the C++ encoder would never produce.
inline std::string pack(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fn) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  fn(pk);
  return std::string(buf.data(), buf.size());
}

inline void pack_str(msgpack::packer<msgpack::sbuffer>& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace paddock::test
