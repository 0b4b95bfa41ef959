// The checks of decode_job_result and decode_job_error (codec.cc, the msgpack core's Fields)
// restated as tables of fields, run over the bytes by Scanner. A change to either decoder's fields
// changes the table here in the same commit; the unit test and the fuzz target compare the two.
#include "paddock/schemas/outcome_view.h"

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "paddock/schemas/limits.h"
#include "reader.h"
#include "scanner.h"

namespace paddock::schemas {
namespace {

using detail::Failure;
using detail::Head;
using detail::Scanner;
using Kind = Head::Kind;
namespace L = limits;

enum class Check : uint8_t { kStr, kBytes, kUint, kSint, kBool, kMap, kArrayOfMaps };

// One field of a map, as Fields reads it: nil is the same as absent.
struct Field {
  std::string_view key;
  Check check = Check::kBool;
  bool required = false;
  int64_t min = 0;   // kUint (never negative), kSint
  uint64_t max = 0;  // kStr, kBytes: bytes; kUint, kSint: value; kArrayOfMaps: entries
  std::span<const Field> nested = {};  // kMap, kArrayOfMaps: the fields of the map(s)
};

constexpr uint64_t kU64 = UINT64_MAX;
constexpr std::array<Field, 3> kFileOut{{
    {.key = "path", .check = Check::kStr, .required = true, .max = L::kMaxPath},
    {.key = "data", .check = Check::kBytes, .max = L::kMaxFilesTotal},
    {.key = "truncated", .check = Check::kBool},
}};
constexpr std::array<Field, 5> kTimings{{
    {.key = "queued_us", .check = Check::kUint, .max = kU64},
    {.key = "start_us", .check = Check::kUint, .max = kU64},
    {.key = "exec_us", .check = Check::kUint, .max = kU64},
    {.key = "teardown_us", .check = Check::kUint, .max = kU64},
    {.key = "total_us", .check = Check::kUint, .max = kU64},
}};
constexpr std::array<Field, 7> kUsage{{
    {.key = "cpu_us", .check = Check::kUint, .max = kU64},
    {.key = "peak_memory_kib", .check = Check::kUint, .max = kU64},
    {.key = "bytes_in", .check = Check::kUint, .max = kU64},
    {.key = "bytes_out", .check = Check::kUint, .max = kU64},
    {.key = "packets_in", .check = Check::kUint, .max = kU64},
    {.key = "packets_out", .check = Check::kUint, .max = kU64},
    {.key = "egress_blocked", .check = Check::kUint, .max = kU64},
}};
// A job with steps: each step's outcome (PROTOCOL.md, "JobResult").
constexpr std::array<Field, 11> kStep{{
    {.key = "exit_code", .check = Check::kSint, .min = INT32_MIN, .max = INT32_MAX},
    {.key = "signal", .check = Check::kSint, .min = 0, .max = 128},
    {.key = "stdout", .check = Check::kBytes, .max = L::kMaxOutputCap},
    {.key = "stderr", .check = Check::kBytes, .max = L::kMaxOutputCap},
    {.key = "stdout_truncated", .check = Check::kBool},
    {.key = "stderr_truncated", .check = Check::kBool},
    {.key = "timed_out", .check = Check::kBool},
    {.key = "oom_killed", .check = Check::kBool},
    {.key = "files", .check = Check::kArrayOfMaps, .max = L::kMaxFiles, .nested = kFileOut},
    {.key = "exec_us", .check = Check::kUint, .max = kU64},
    {.key = "usage", .check = Check::kMap, .nested = kUsage},
}};
constexpr size_t kResultJobId = 0, kResultTenant = 1, kResultAttempt = 14;
constexpr std::array<Field, 19> kResult{{
    {.key = "job_id", .check = Check::kStr, .required = true, .max = L::kMaxJobId},
    {.key = "tenant", .check = Check::kStr, .max = L::kMaxTenant},
    {.key = "exit_code", .check = Check::kSint, .min = INT32_MIN, .max = INT32_MAX},
    {.key = "signal", .check = Check::kSint, .min = 0, .max = 128},
    {.key = "stdout", .check = Check::kBytes, .max = L::kMaxOutputCap},
    {.key = "stderr", .check = Check::kBytes, .max = L::kMaxOutputCap},
    {.key = "stdout_truncated", .check = Check::kBool},
    {.key = "stderr_truncated", .check = Check::kBool},
    {.key = "timed_out", .check = Check::kBool},
    {.key = "oom_killed", .check = Check::kBool},
    {.key = "files", .check = Check::kArrayOfMaps, .max = L::kMaxFiles, .nested = kFileOut},
    {.key = "timings", .check = Check::kMap, .nested = kTimings},
    {.key = "usage", .check = Check::kMap, .nested = kUsage},
    {.key = "worker_id", .check = Check::kStr, .max = L::kMaxWorkerId},
    {.key = "attempt", .check = Check::kUint, .max = UINT32_MAX},
    {.key = "warm", .check = Check::kBool},
    {.key = "backend", .check = Check::kStr, .max = 32},
    {.key = "template", .check = Check::kStr, .max = L::kMaxTemplate},
    {.key = "steps", .check = Check::kArrayOfMaps, .max = L::kMaxSteps, .nested = kStep},
}};
constexpr size_t kErrorJobId = 0, kErrorTenant = 1, kErrorCode = 2, kErrorVariant = 3,
                 kErrorAttempt = 10, kErrorRetryable = 11;
constexpr std::array<Field, 13> kError{{
    {.key = "job_id", .check = Check::kStr, .max = L::kMaxJobId},
    {.key = "tenant", .check = Check::kStr, .max = L::kMaxTenant},
    {.key = "code", .check = Check::kUint, .required = true, .min = 1, .max = 65535},
    {.key = "variant", .check = Check::kStr, .required = true, .max = 64},
    {.key = "message", .check = Check::kStr, .max = L::kMaxMessage},
    {.key = "vm_id", .check = Check::kStr, .max = 256},
    {.key = "snapshot_id", .check = Check::kStr, .max = 256},
    {.key = "from", .check = Check::kStr, .max = 256},
    {.key = "to", .check = Check::kStr, .max = 256},
    {.key = "worker_id", .check = Check::kStr, .max = L::kMaxWorkerId},
    {.key = "attempt", .check = Check::kUint, .max = UINT32_MAX},
    {.key = "retryable", .check = Check::kBool},
    {.key = "index", .check = Check::kUint, .max = L::kMaxBodiesPerMessage - 1},
}};
static_assert(kResult[kResultJobId].key == "job_id" && kResult[kResultTenant].key == "tenant" &&
              kResult[kResultAttempt].key == "attempt");
static_assert(kError[kErrorJobId].key == "job_id" && kError[kErrorTenant].key == "tenant" &&
              kError[kErrorCode].key == "code" && kError[kErrorVariant].key == "variant" &&
              kError[kErrorAttempt].key == "attempt" && kError[kErrorRetryable].key == "retryable");
constexpr size_t kMaxFields = 19;  // of any table above; the found values' array
static_assert(kResult.size() <= kMaxFields && kError.size() <= kMaxFields);
static_assert(kMaxFields <= 64, "scan_map's bit masks hold 64 fields");

// Where a map sits, for error messages only (built when something fails): the body itself, a
// top-level field's map ("timings"), or an entry of a top-level array ("files[2]").
struct Where {
  std::string_view parent;
  int64_t index = -1;
};

std::string path_of(const Where& w, std::string_view key) {
  std::string p(w.parent);
  if (w.index >= 0) p += "[" + std::to_string(w.index) + "]";
  if (!key.empty()) p += (p.empty() ? "" : ".") + std::string(key);
  return p;
}

std::string map_path(const Where& w) {
  std::string p = path_of(w, "");
  return p.empty() ? "body" : p;
}

[[noreturn]] void wrong_type(std::string path, const char* want, const Head& h) {
  throw Failure{std::move(path), std::string("expected ") + want + ", got " + kind_name(h.kind)};
}

[[noreturn]] void out_of_range(std::string path, const std::string& min, uint64_t max,
                               const std::string& got) {
  throw Failure{std::move(path), "must be between " + min + " and " + std::to_string(max) + got};
}

void scan_map(Scanner& s, const Head& map, uint32_t level, std::span<const Field> fields,
              const Where& where, Head* found);

// Checks one field's value (its head just read at `level`) and reads past it.
void check_value(Scanner& s, const Head& v, uint32_t level, const Field& f, const Where& where) {
  if (v.kind == Kind::kNil) return;  // the default
  switch (f.check) {
    case Check::kStr:
      if (v.kind != Kind::kStr) wrong_type(path_of(where, f.key), "string", v);
      if (v.bytes.size() > f.max) {
        throw Failure{path_of(where, f.key), "longer than " + std::to_string(f.max) + " bytes"};
      }
      if (!valid_utf8(v.bytes)) throw Failure{path_of(where, f.key), "not valid UTF-8"};
      return;
    case Check::kBytes:
      if (v.kind != Kind::kStr && v.kind != Kind::kBin)
        wrong_type(path_of(where, f.key), "bytes", v);
      if (v.bytes.size() > f.max) {
        throw Failure{path_of(where, f.key), "longer than " + std::to_string(f.max) + " bytes"};
      }
      return;
    case Check::kUint: {
      const auto min = static_cast<uint64_t>(f.min);
      if (v.kind == Kind::kNegInt)
        out_of_range(path_of(where, f.key), std::to_string(min), f.max, "");
      if (v.kind != Kind::kUint) wrong_type(path_of(where, f.key), "integer", v);
      if (v.uint < min || v.uint > f.max) {
        out_of_range(path_of(where, f.key), std::to_string(min), f.max,
                     ", got " + std::to_string(v.uint));
      }
      return;
    }
    case Check::kSint: {
      int64_t n = 0;
      if (v.kind == Kind::kNegInt) {
        n = v.neg;
      } else if (v.kind == Kind::kUint) {
        n = v.uint > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v.uint);
      } else {
        wrong_type(path_of(where, f.key), "integer", v);
      }
      if (n < f.min || n > static_cast<int64_t>(f.max)) {
        throw Failure{path_of(where, f.key), "must be between " + std::to_string(f.min) + " and " +
                                                 std::to_string(f.max) + ", got " +
                                                 std::to_string(n)};
      }
      return;
    }
    case Check::kBool:
      if (v.kind != Kind::kBool) wrong_type(path_of(where, f.key), "bool", v);
      return;
    case Check::kMap: {
      // A top-level field's map is named by its key alone (no allocation); a deeper one (a
      // step's usage) by its whole path.
      const bool top = where.parent.empty() && where.index < 0;
      const std::string deep = top ? std::string() : path_of(where, f.key);
      scan_map(s, v, level, f.nested, Where{top ? f.key : std::string_view(deep)}, nullptr);
      return;
    }
    case Check::kArrayOfMaps: {
      if (v.kind != Kind::kArray) wrong_type(path_of(where, f.key), "array", v);
      if (v.count > f.max) {
        throw Failure{path_of(where, f.key), "more than " + std::to_string(f.max) + " entries"};
      }
      const bool top = where.parent.empty() && where.index < 0;
      const std::string deep = top ? std::string() : path_of(where, f.key);
      for (uint32_t i = 0; i < v.count; ++i) {
        scan_map(s, s.next(level + 1), level + 1, f.nested,
                 Where{top ? f.key : std::string_view(deep), i}, nullptr);
      }
      return;
    }
  }
}

// Reads the entries of a map whose head was just read at `level`: string keys only, none twice,
// known fields checked, unknown ones skipped, required ones present. found[i] (if given) is the
// value of fields[i], nil when absent.
void scan_map(Scanner& s, const Head& map, uint32_t level, std::span<const Field> fields,
              const Where& where, Head* found) {
  if (map.kind != Kind::kMap) wrong_type(map_path(where), "map", map);
  uint64_t seen = 0;   // known fields present (nil included), by index
  uint64_t given = 0;  // known fields present and not nil
  // Unknown keys, to refuse one given twice; a map has at most limits::kMaxMap entries. Left
  // uninitialized (trivial types): only the first unknown_count are read.
  std::array<const char*, L::kMaxMap> unknown_data;
  std::array<size_t, L::kMaxMap> unknown_size;
  size_t unknown_count = 0;
  size_t next = 0;  // encoders write the fields in the table's order: try the next one first
  for (uint32_t e = 0; e < map.count; ++e) {
    const Head key = s.next(level + 1);
    if (key.kind != Kind::kStr) throw Failure{map_path(where), "map key is not a string"};
    if (!valid_utf8(key.bytes)) throw Failure{map_path(where), "map key is not valid UTF-8"};
    const Head value = s.next(level + 1);
    size_t i = next;
    if (i >= fields.size() || fields[i].key != key.bytes) {
      i = 0;
      while (i < fields.size() && fields[i].key != key.bytes) ++i;
    }
    const bool duplicate = i < fields.size() ? (seen >> i & 1) != 0 : [&] {
      for (size_t u = 0; u < unknown_count; ++u) {
        if (std::string_view(unknown_data[u], unknown_size[u]) == key.bytes) return true;
      }
      unknown_data[unknown_count] = key.bytes.data();
      unknown_size[unknown_count++] = key.bytes.size();
      return false;
    }();
    next = i + 1;
    if (duplicate) {
      // An empty key has no name of its own: name the map that holds it.
      throw Failure{key.bytes.empty() ? map_path(where) : path_of(where, key.bytes),
                    "duplicate key"};
    }
    if (i == fields.size()) {
      s.skip_rest(value, level + 1);
      continue;
    }
    seen |= uint64_t{1} << i;
    if (value.kind != Kind::kNil) given |= uint64_t{1} << i;
    check_value(s, value, level + 1, fields[i], where);
    if (found != nullptr) found[i] = value;
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].required && (given >> i & 1) == 0) {
      throw Failure{path_of(where, fields[i].key), "required"};
    }
  }
}

// The "tenant" value found (nil when absent): "" or a valid name, as decode_job_result reads it.
std::string_view checked_tenant(const Head& h) {
  if (h.kind != Kind::kStr || h.bytes.empty()) return {};
  if (!valid_tenant(h.bytes)) {
    throw Failure{"tenant", "must be 1-64 characters of [A-Za-z0-9._-], not starting with '.'"};
  }
  return h.bytes;
}

// Scans a whole body against `fields`; found[i] is the top-level value of fields[i].
void scan_body(std::string_view bytes, std::span<const Field> fields, Head* found) {
  Scanner s(bytes);
  const Head top = s.next(1);
  scan_map(s, top, 1, fields, Where{}, found);
  s.expect_end();
}

}  // namespace

Decoded<OutcomeView> view_job_result(std::string_view bytes) {
  return detail::guarded<OutcomeView>([&] {
    std::array<Head, kMaxFields> found;
    scan_body(bytes, kResult, found.data());
    OutcomeView v;
    v.job_id = found[kResultJobId].bytes;
    v.tenant = checked_tenant(found[kResultTenant]);
    // decode_job_result's default: a RESULT without an attempt is of the first.
    v.attempt = found[kResultAttempt].kind == Kind::kUint
                    ? static_cast<uint32_t>(found[kResultAttempt].uint)
                    : 1;
    return v;
  });
}

Decoded<OutcomeView> view_job_error(std::string_view bytes) {
  return detail::guarded<OutcomeView>([&] {
    std::array<Head, kMaxFields> found;
    scan_body(bytes, kError, found.data());
    OutcomeView v;
    v.job_id = found[kErrorJobId].bytes;
    v.tenant = checked_tenant(found[kErrorTenant]);
    v.code = static_cast<uint32_t>(found[kErrorCode].uint);
    v.variant = found[kErrorVariant].bytes;
    v.retryable = found[kErrorRetryable].boolean;
    v.attempt = found[kErrorAttempt].kind == Kind::kUint
                    ? static_cast<uint32_t>(found[kErrorAttempt].uint)
                    : 0;  // decode_job_error's default
    return v;
  });
}

}  // namespace paddock::schemas
