// The wire codec (schemas/): round trips, every decoder-enforced limit at and one past the limit,
// envelopes, peek_job_id, and the shared vectors of schemas/vectors/ (written by an independent
// Python encoder).
#include <doctest/doctest.h>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "codec_builders.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"
#include "paddock/schemas/messages.h"
#include "paddock/schemas/outcome_view.h"

namespace {

namespace sc = paddock::schemas;
namespace L = paddock::schemas::limits;
using json = nlohmann::json;
using paddock::test::full_error;
using paddock::test::full_result;
using paddock::test::pack;
using paddock::test::pack_str;
using paddock::test::read_file;

// ---- builders ---------------------------------------------------------------------------------

sc::JobRequest minimal_request(std::string id = "job-1") {
  sc::JobRequest r;
  r.job_id = std::move(id);
  r.argv = {"echo", "hello"};
  return r;
}

sc::JobRequest full_request() {
  sc::JobRequest r;
  r.job_id = "full.Job_1:x-y";
  r.image = "python3.11-slim";
  r.argv = {"python3", "-c", "print('h\xc3\xa9llo')", ""};
  r.env = {{"PATH", "/usr/bin"}, {"_UNDER", ""}, {"LANG", "C.UTF-8"}};
  r.stdin_data = std::string("\0\1\2\xff binary", 11);
  r.files = {sc::FileIn{"main.py", 0755, "print(1)\n"},
             sc::FileIn{"data/blob.bin", 0600, std::string("\0\xfe", 2)},
             sc::FileIn{"empty", 0, ""}};
  r.files_out = {"out/result.json", "log.txt"};
  r.vcpus = 16;
  r.mem_mib = 65536;
  r.timeout_ms = 86'400'000;
  r.output_cap = 0;
  r.egress = {sc::EgressRule{"10.0.0.0/8", "tcp", {{80, 80}, {8000, 8999}}},
              sc::EgressRule{"192.168.1.7", "udp", {{53, 53}}},
              sc::EgressRule{"0.0.0.0/0", "icmp", {}}, sc::EgressRule{"1.2.3.4/32", "any", {}}};
  r.priority = -100;
  r.deadline_ms = UINT64_MAX;
  r.tags = {{"team", "infra"}, {"k", std::string(256, 'v')}};
  return r;
}

sc::JobError make_error(std::string job_id, uint32_t code, std::string variant,
                        std::string message) {
  sc::JobError e;
  e.job_id = std::move(job_id);
  e.code = code;
  e.variant = std::move(variant);
  e.message = std::move(message);
  return e;
}

// An encoded body with one more key appended (`key` -> whatever `value` packs). The C++ encoder
// always writes a map; its first byte(s) carry the count, which is rewritten here.
std::string with_extra_key(const std::string& encoded, std::string_view key,
                           const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& value) {
  auto h = msgpack::unpack(encoded.data(), encoded.size());
  const auto& m = h.get().via.map;
  return pack([&](auto& pk) {
    pk.pack_map(m.size + 1);
    for (uint32_t i = 0; i < m.size; ++i) {
      pk.pack(m.ptr[i].key);
      pk.pack(m.ptr[i].val);
    }
    pack_str(pk, key);
    value(pk);
  });
}

template <class T>
sc::DecodeError error_of(const sc::Decoded<T>& d) {
  REQUIRE_FALSE(static_cast<bool>(d));
  return d.error();
}

// Decodes the request after `change` was applied to a valid one; the field of the error, or ""
// when it decoded. Checks that validate() agrees with the decoder.
std::string request_field(const std::function<void(sc::JobRequest&)>& change) {
  sc::JobRequest r = minimal_request();
  change(r);
  auto d = sc::decode_job_request(sc::encode(r));
  if (d) {
    CHECK(d.value() == r);
    return "";
  }
  return d.error().field;
}

// ---- JSON view of decoded values (bytes as {"hex": ...}) ---------------------------------------

std::string hex(std::string_view b) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

json jbytes(std::string_view b) { return json{{"hex", hex(b)}}; }

json opt(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }

json to_json(const sc::JobRequest& r) {
  json files = json::array();
  for (const auto& f : r.files) {
    files.push_back({{"path", f.path}, {"mode", f.mode}, {"data", jbytes(f.data)}});
  }
  json egress = json::array();
  for (const auto& e : r.egress) {
    json ports = json::array();
    for (const auto& p : e.ports) ports.push_back({{"first", p.first}, {"last", p.last}});
    egress.push_back({{"cidr", e.cidr}, {"protocol", e.protocol}, {"ports", ports}});
  }
  json steps = json::array();
  for (const auto& st : r.steps) {
    steps.push_back({{"argv", st.argv},
                     {"env", st.env},
                     {"stdin", jbytes(st.stdin_data)},
                     {"timeout_ms", st.timeout_ms},
                     {"output_cap", st.output_cap},
                     {"files_out", st.files_out}});
  }
  return {{"job_id", r.job_id},
          {"image", r.image},
          {"argv", r.argv},
          {"env", r.env},
          {"stdin", jbytes(r.stdin_data)},
          {"files", files},
          {"files_out", r.files_out},
          {"vcpus", r.vcpus},
          {"mem_mib", r.mem_mib},
          {"timeout_ms", r.timeout_ms},
          {"output_cap", r.output_cap},
          {"egress", egress},
          {"priority", r.priority},
          {"deadline_ms", r.deadline_ms},
          {"tags", r.tags},
          {"steps", steps},
          {"stop_on_failure", r.stop_on_failure},
          {"stream", r.stream}};
}

json files_json(const std::vector<sc::FileOut>& out) {
  json files = json::array();
  for (const auto& f : out) {
    files.push_back({{"path", f.path}, {"data", jbytes(f.data)}, {"truncated", f.truncated}});
  }
  return files;
}

json usage_json(const sc::Usage& u) {
  return {{"cpu_us", u.cpu_us},
          {"peak_memory_kib", u.peak_memory_kib},
          {"bytes_in", u.bytes_in},
          {"bytes_out", u.bytes_out},
          {"packets_in", u.packets_in},
          {"packets_out", u.packets_out},
          {"egress_blocked", u.egress_blocked}};
}

json to_json(const sc::JobResult& r) {
  const json files = files_json(r.files);
  const auto& t = r.timings;
  json steps = json::array();
  for (const auto& st : r.steps) {
    steps.push_back({{"exit_code", st.exit_code},
                     {"signal", st.signal},
                     {"stdout", jbytes(st.stdout_data)},
                     {"stderr", jbytes(st.stderr_data)},
                     {"stdout_truncated", st.stdout_truncated},
                     {"stderr_truncated", st.stderr_truncated},
                     {"timed_out", st.timed_out},
                     {"oom_killed", st.oom_killed},
                     {"files", files_json(st.files)},
                     {"exec_us", st.exec_us},
                     {"usage", usage_json(st.usage)}});
  }
  return {{"job_id", r.job_id},
          {"exit_code", r.exit_code},
          {"signal", r.signal},
          {"stdout", jbytes(r.stdout_data)},
          {"stderr", jbytes(r.stderr_data)},
          {"stdout_truncated", r.stdout_truncated},
          {"stderr_truncated", r.stderr_truncated},
          {"timed_out", r.timed_out},
          {"oom_killed", r.oom_killed},
          {"files", files},
          {"timings",
           {{"queued_us", t.queued_us},
            {"start_us", t.start_us},
            {"exec_us", t.exec_us},
            {"teardown_us", t.teardown_us},
            {"total_us", t.total_us}}},
          {"usage", usage_json(r.usage)},
          {"worker_id", r.worker_id},
          {"attempt", r.attempt},
          {"warm", r.warm},
          {"backend", r.backend},
          {"template", r.template_vm},
          {"steps", steps}};
}

json to_json(const sc::JobError& e) {
  return {{"job_id", e.job_id},   {"code", e.code},          {"variant", e.variant},
          {"message", e.message}, {"vm_id", opt(e.vm_id)},   {"snapshot_id", opt(e.snapshot_id)},
          {"from", opt(e.from)},  {"to", opt(e.to)},         {"worker_id", e.worker_id},
          {"attempt", e.attempt}, {"retryable", e.retryable}};
}

json to_json(const sc::JobDispatch& d) {
  return {{"tenant", d.tenant},
          {"attempt", d.attempt},
          {"queued_us", d.queued_us},
          {"request", to_json(d.request)}};
}
json to_json(const sc::Ready& r) {
  return {{"worker_id", r.worker_id}, {"slots", r.slots}, {"capabilities", r.capabilities}};
}
json to_json(const sc::Credit& c) { return {{"credits", c.credits}}; }
json to_json(const sc::Accepted& a) { return {{"job_ids", a.job_ids}}; }
json to_json(const sc::JobRef& r) { return {{"job_id", r.job_id}, {"tenant", r.tenant}}; }
json to_json(const sc::OutputChunk& o) {
  return {{"job_id", o.job_id},
          {"tenant", o.tenant},
          {"attempt", o.attempt},
          {"step", o.step ? json(*o.step) : json(nullptr)},
          {"stream", o.stream == sc::OutputStream::kStderr ? "stderr" : "stdout"},
          {"offset", o.offset},
          {"data", jbytes(o.data)}};
}

// The manifest writes UTF-8 byte fields as plain strings; turn them into {"hex"} like to_json.
json normalize_bytes(const json& v, const std::string& key = "") {
  static const std::array<std::string, 4> kBytesKeys = {"stdin", "stdout", "stderr", "data"};
  if (v.is_string() && std::find(kBytesKeys.begin(), kBytesKeys.end(), key) != kBytesKeys.end()) {
    return jbytes(v.get<std::string>());
  }
  if (v.is_object() && !v.contains("hex")) {
    json out = json::object();
    for (const auto& [k, x] : v.items()) out[k] = normalize_bytes(x, k);
    return out;
  }
  if (v.is_array()) {
    json out = json::array();
    for (const auto& x : v) out.push_back(normalize_bytes(x, key));
    return out;
  }
  return v;
}

// Decodes `bytes` as `type`; the decoded value as JSON, or the error.
std::variant<json, sc::DecodeError> decode_as(const std::string& type, std::string_view bytes) {
  auto conv = [](auto d) -> std::variant<json, sc::DecodeError> {
    if (d) return to_json(d.value());
    return d.error();
  };
  if (type == "JobRequest") return conv(sc::decode_job_request(bytes));
  if (type == "JobResult") return conv(sc::decode_job_result(bytes));
  if (type == "JobError") return conv(sc::decode_job_error(bytes));
  if (type == "JobDispatch") return conv(sc::decode_job_dispatch(bytes));
  if (type == "Ready") return conv(sc::decode_ready(bytes));
  if (type == "Credit") return conv(sc::decode_credit(bytes));
  if (type == "Accepted") return conv(sc::decode_accepted(bytes));
  if (type == "JobRef") return conv(sc::decode_job_ref(bytes));
  if (type == "OutputChunk") return conv(sc::decode_output(bytes));
  FAIL("unknown vector type " << type);
  return sc::DecodeError{};
}

const std::string kVectors = std::string(PADDOCK_SOURCE_DIR) + "/schemas/vectors";

}  // namespace

// ==== round trips =============================================================================

TEST_CASE("codec: every type round-trips through encode and decode") {
  SUBCASE("JobRequest, minimal and full") {
    for (const auto& r : {minimal_request(), full_request()}) {
      auto d = sc::decode_job_request(sc::encode(r));
      REQUIRE_MESSAGE(d, d.error().message());
      CHECK(d.value() == r);
    }
  }
  SUBCASE("JobResult, default and full") {
    sc::JobResult empty;
    empty.job_id = "r";
    for (const auto& r : {empty, full_result()}) {
      auto d = sc::decode_job_result(sc::encode(r));
      REQUIRE_MESSAGE(d, d.error().message());
      CHECK(d.value() == r);
    }
  }
  SUBCASE("JobError, with and without the optional fields") {
    sc::JobError plain = make_error("e", 11, "Jailer", "jailer error: boom");
    for (const auto& e : {plain, full_error()}) {
      auto d = sc::decode_job_error(sc::encode(e));
      REQUIRE_MESSAGE(d, d.error().message());
      CHECK(d.value() == e);
    }
    CHECK_FALSE(sc::decode_job_error(sc::encode(plain))->vm_id.has_value());
    CHECK_FALSE(sc::decode_job_error(sc::encode(plain))->index.has_value());
    // The body's index of an ERROR 100 answering one body of a SUBMIT: 0..1023.
    sc::JobError indexed = make_error("", 100, "InvalidRequest", "job_id: required");
    indexed.index = 1023;
    auto d = sc::decode_job_error(sc::encode(indexed));
    REQUIRE_MESSAGE(d, d.error().message());
    CHECK(d.value() == indexed);
    indexed.index = 1024;
    CHECK_FALSE(sc::decode_job_error(sc::encode(indexed)));
    CHECK_FALSE(sc::view_job_error(sc::encode(indexed)));
  }
  SUBCASE("JobDispatch (its request at the nesting limit: egress ports)") {
    sc::JobDispatch dispatch{"", 7, 123456789, full_request()};
    auto d = sc::decode_job_dispatch(sc::encode(dispatch));
    REQUIRE_MESSAGE(d, d.error().message());
    CHECK(d.value() == dispatch);
  }
  SUBCASE("Ready") {
    sc::Ready r{"worker-1", 4096, {"backend:memory", "image:default"}};
    auto d = sc::decode_ready(sc::encode(r));
    REQUIRE_MESSAGE(d, d.error().message());
    CHECK(d.value() == r);
  }
  SUBCASE("Credit") {
    auto d = sc::decode_credit(sc::encode(sc::Credit{17}));
    REQUIRE_MESSAGE(d, d.error().message());
    CHECK(d->credits == 17);
  }
  SUBCASE("Accepted, empty and with ids") {
    for (const auto& a : {sc::Accepted{}, sc::Accepted{{"a", "b.c", "d:e"}}}) {
      auto d = sc::decode_accepted(sc::encode(a));
      REQUIRE_MESSAGE(d, d.error().message());
      CHECK(d.value() == a);
    }
  }
  SUBCASE("JobRef") {
    auto d = sc::decode_job_ref(sc::encode(sc::JobRef{"ref-1", {}}));
    REQUIRE_MESSAGE(d, d.error().message());
    CHECK(d->job_id == "ref-1");
    CHECK(d->tenant.empty());
  }
}

TEST_CASE("codec: a tenant rides on JOB, CANCEL and outcomes when set, and must be a tenant name") {
  // Set: written and read back, by the decoders and by the broker's views of outcomes.
  sc::JobDispatch dispatch;
  dispatch.tenant = "team-a.ci_1";
  dispatch.request = minimal_request();
  auto d = sc::decode_job_dispatch(sc::encode(dispatch));
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d.value() == dispatch);
  CHECK(sc::peek_dispatch(sc::encode(dispatch))->tenant == "team-a.ci_1");
  auto ref = sc::decode_job_ref(sc::encode(sc::JobRef{"j", "team-a.ci_1"}));
  REQUIRE_MESSAGE(ref, ref.error().message());
  CHECK(ref->tenant == "team-a.ci_1");
  sc::JobResult result;
  result.job_id = "j";
  result.tenant = "bob";
  auto r = sc::decode_job_result(sc::encode(result));
  REQUIRE_MESSAGE(r, r.error().message());
  CHECK(r->tenant == "bob");
  CHECK(sc::view_job_result(sc::encode(result))->tenant == "bob");
  sc::JobError error;
  error.job_id = "j";
  error.tenant = "bob";
  error.code = 101;
  error.variant = "Cancelled";
  CHECK(sc::decode_job_error(sc::encode(error))->tenant == "bob");
  CHECK(sc::view_job_error(sc::encode(error))->tenant == "bob");
  // Unset: not written at all, so bodies without tenants are the bytes they always were.
  dispatch.tenant.clear();
  CHECK(sc::encode(dispatch).find("tenant") == std::string::npos);
  result.tenant.clear();
  CHECK(sc::encode(result).find("tenant") == std::string::npos);
  CHECK(sc::encode(sc::JobRef{"j", {}}).find("tenant") == std::string::npos);
  // Not a tenant name: refused by every decoder and view, naming the field.
  for (const std::string& bad :
       std::vector<std::string>{".hidden", "has space", "a/b", std::string(65, 'x')}) {
    CAPTURE(bad);
    CHECK_FALSE(sc::valid_tenant(bad));
    dispatch.tenant = bad;
    auto bd = sc::decode_job_dispatch(sc::encode(dispatch));
    REQUIRE_FALSE(bd);
    CHECK(bd.error().field == "tenant");
    CHECK(sc::peek_dispatch(sc::encode(dispatch))->tenant.empty());
    result.tenant = bad;
    CHECK_FALSE(sc::decode_job_result(sc::encode(result)));
    CHECK_FALSE(sc::view_job_result(sc::encode(result)));
    error.tenant = bad;
    CHECK_FALSE(sc::decode_job_error(sc::encode(error)));
    CHECK_FALSE(sc::view_job_error(sc::encode(error)));
    CHECK_FALSE(sc::decode_job_ref(sc::encode(sc::JobRef{"j", bad})));
  }
  CHECK(sc::valid_tenant("local"));
  CHECK(sc::valid_tenant(std::string(64, 'x')));
}

TEST_CASE("codec: encoders write byte fields as msgpack bin and text fields as str") {
  sc::JobRequest r = minimal_request();
  r.stdin_data = "in";
  auto h = msgpack::unpack(sc::encode(r).data(), sc::encode(r).size());
  bool saw_stdin = false;
  for (uint32_t i = 0; i < h.get().via.map.size; ++i) {
    const auto& kv = h.get().via.map.ptr[i];
    REQUIRE(kv.key.type == msgpack::type::STR);
    const std::string key = kv.key.as<std::string>();
    if (key == "stdin") {
      saw_stdin = true;
      CHECK(kv.val.type == msgpack::type::BIN);
    }
    if (key == "job_id") CHECK(kv.val.type == msgpack::type::STR);
  }
  CHECK(saw_stdin);
}

TEST_CASE("codec: a JobResult's oom_killed is a bool on the wire, absent or nil decodes as false") {
  sc::JobResult oom;
  oom.job_id = "oom-1";
  oom.exit_code = 137;
  oom.signal = 9;
  oom.oom_killed = true;
  const std::string bytes = sc::encode(oom);
  auto h = msgpack::unpack(bytes.data(), bytes.size());
  const auto map = h.get().as<std::map<std::string, msgpack::object>>();
  REQUIRE(map.count("oom_killed") == 1);
  CHECK(map.at("oom_killed").type == msgpack::type::BOOLEAN);
  CHECK(map.at("oom_killed").as<bool>());
  auto d = sc::decode_job_result(bytes);
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d->oom_killed);
  CHECK(d.value() == oom);
  // What a sender that predates the field writes: no key, or nil.
  auto without = pack([](auto& pk) {
    pk.pack_map(2);
    pack_str(pk, "job_id");
    pack_str(pk, "old");
    pack_str(pk, "signal");
    pk.pack(9);
  });
  auto old = sc::decode_job_result(without);
  REQUIRE_MESSAGE(old, old.error().message());
  CHECK_FALSE(old->oom_killed);
  auto nil = pack([](auto& pk) {
    pk.pack_map(2);
    pack_str(pk, "job_id");
    pack_str(pk, "n");
    pack_str(pk, "oom_killed");
    pk.pack_nil();
  });
  auto n = sc::decode_job_result(nil);
  REQUIRE_MESSAGE(n, n.error().message());
  CHECK_FALSE(n->oom_killed);
  auto wrong = pack([](auto& pk) {
    pk.pack_map(2);
    pack_str(pk, "job_id");
    pack_str(pk, "w");
    pack_str(pk, "oom_killed");
    pk.pack(1);
  });
  CHECK(error_of(sc::decode_job_result(wrong)).field == "oom_killed");
}

TEST_CASE("codec: Ready is encoded with protocol 1 and decoding requires it") {
  auto bytes = sc::encode(sc::Ready{"w", 1, {}});
  auto h = msgpack::unpack(bytes.data(), bytes.size());
  const auto map = h.get().as<std::map<std::string, msgpack::object>>();
  CHECK(map.at("protocol").as<uint32_t>() == 1);
  auto no_protocol = pack([](auto& pk) {
    pk.pack_map(2);
    pack_str(pk, "worker_id");
    pack_str(pk, "w");
    pack_str(pk, "slots");
    pk.pack(1);
  });
  CHECK(error_of(sc::decode_ready(no_protocol)).field == "protocol");
}

TEST_CASE("codec: absent and nil optional request fields take their defaults") {
  const sc::JobRequest defaults = minimal_request("d");
  const std::vector<std::string> optional = {
      "image",      "env",        "stdin",  "files",    "files_out",   "vcpus", "mem_mib",
      "timeout_ms", "output_cap", "egress", "priority", "deadline_ms", "tags"};
  auto body = pack([&](auto& pk) {
    pk.pack_map(static_cast<uint32_t>(2 + optional.size()));
    pack_str(pk, "job_id");
    pack_str(pk, "d");
    pack_str(pk, "argv");
    pk.pack(std::vector<std::string>{"echo", "hello"});
    for (const auto& k : optional) {
      pack_str(pk, k);
      pk.pack_nil();
    }
  });
  auto d = sc::decode_job_request(body);
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d.value() == defaults);
  CHECK(d->image == "default");

  // An egress rule with protocol nil is tcp; a port range without last is a single port.
  auto rule = pack([&](auto& pk) {
    pk.pack_map(3);
    pack_str(pk, "job_id");
    pack_str(pk, "e");
    pack_str(pk, "argv");
    pk.pack(std::vector<std::string>{"x"});
    pack_str(pk, "egress");
    pk.pack_array(1);
    pk.pack_map(3);
    pack_str(pk, "cidr");
    pack_str(pk, "1.1.1.1");
    pack_str(pk, "protocol");
    pk.pack_nil();
    pack_str(pk, "ports");
    pk.pack_array(1);
    pk.pack_map(1);
    pack_str(pk, "first");
    pk.pack(443);
  });
  auto e = sc::decode_job_request(rule);
  REQUIRE_MESSAGE(e, e.error().message());
  REQUIRE(e->egress.size() == 1);
  CHECK(e->egress[0].protocol == "tcp");
  CHECK(e->egress[0].ports == std::vector<sc::PortRange>{{443, 443}});
}

TEST_CASE("codec: unknown keys are ignored, integers of any width are accepted, str for bytes") {
  auto body = pack([](auto& pk) {
    pk.pack_map(6);
    pack_str(pk, "job_id");
    pack_str(pk, "j");
    pack_str(pk, "argv");
    pk.pack(std::vector<std::string>{"cat"});
    pack_str(pk, "from_the_future");
    pk.pack(std::map<std::string, int>{{"x", 1}});
    pack_str(pk, "vcpus");
    pk.pack_uint64(3);  // always 9 bytes
    pack_str(pk, "priority");
    pk.pack_int64(-5);
    pack_str(pk, "stdin");
    pack_str(pk, "text stdin");
  });
  auto d = sc::decode_job_request(body);
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d->vcpus == 3);
  CHECK(d->priority == -5);
  CHECK(d->stdin_data == "text stdin");
}

TEST_CASE("codec: JobError keeps an unknown code as its number") {
  sc::JobError e = make_error("j", 4242, "FromTheFuture", "?");
  auto d = sc::decode_job_error(sc::encode(e));
  REQUIRE_MESSAGE(d, d.error().message());
  CHECK(d->code == 4242);
  CHECK(d->variant == "FromTheFuture");
  CHECK(sc::job_code_name(4242) == "Unknown");
  CHECK(sc::job_code_name(100) == "InvalidRequest");
  CHECK(sc::job_code_name(105) == "UnknownJob");
  CHECK(sc::job_code_name(106) == "UnknownImage");
  CHECK(sc::job_code_name(107) == "JournalDamaged");
  CHECK(sc::job_code_name(108) == "QuotaExceeded");
  CHECK(sc::job_code_name(109) == "TooLarge");
  CHECK(error_of(sc::decode_job_error(sc::encode(make_error("j", 65536, "X", "")))).field ==
        "code");
  CHECK(sc::decode_job_error(sc::encode(make_error("j", 65535, "X", ""))));
}

TEST_CASE("codec: a nested request's errors are named from the dispatch's root") {
  sc::JobDispatch d{"", 1, 0, minimal_request()};
  d.request.argv = {};
  CHECK(error_of(sc::decode_job_dispatch(sc::encode(d))).field == "request.argv");
  d.request = minimal_request("bad id");
  CHECK(error_of(sc::decode_job_dispatch(sc::encode(d))).field == "request.job_id");
  d.request = minimal_request();
  d.request.vcpus = 99;
  CHECK(error_of(sc::decode_job_dispatch(sc::encode(d))).field == "request.vcpus");
  d.attempt = 0;
  d.request = minimal_request();
  CHECK(error_of(sc::decode_job_dispatch(sc::encode(d))).field == "attempt");
}

TEST_CASE("codec: egress CIDRs must be IPv4 with a prefix of 0..32 and no NUL") {
  auto cidr = [](std::string c) {
    return request_field([&](sc::JobRequest& r) { r.egress = {sc::EgressRule{c, "any", {}}}; });
  };
  CHECK(cidr("10.0.0.0/8") == "");
  CHECK(cidr("10.0.0.1") == "");
  CHECK(cidr("0.0.0.0/0") == "");
  CHECK(cidr("1.2.3.4/32") == "");
  CHECK(cidr("1.2.3.4/33") == "egress[0].cidr");
  CHECK(cidr("1.2.3.4/") == "egress[0].cidr");
  CHECK(cidr("1.2.3.4/-1") == "egress[0].cidr");
  CHECK(cidr("1.2.3.4/\xb9") == "egress[0].cidr");
  CHECK(cidr("1.2.3.4/8/8") == "egress[0].cidr");
  CHECK(cidr("::1") == "egress[0].cidr");
  CHECK(cidr("1.2.3") == "egress[0].cidr");
  CHECK(cidr(std::string("1.2.3.4\0/99", 10)) == "egress[0].cidr");
  CHECK(cidr(std::string("1.2.3.4\0", 8)) == "egress[0].cidr");
}

TEST_CASE("codec: paths must be relative without empty, '.' or '..' parts") {
  auto path = [](std::string p) {
    return request_field([&](sc::JobRequest& r) { r.files = {sc::FileIn{p, 0644, ""}}; });
  };
  CHECK(path("a") == "");
  CHECK(path("a/b.c/d") == "");
  CHECK(path("..a/b..") == "");
  CHECK(path("") == "files[0].path");
  CHECK(path("/etc/passwd") == "files[0].path");
  CHECK(path("a/../b") == "files[0].path");
  CHECK(path("..") == "files[0].path");
  CHECK(path("./a") == "files[0].path");
  CHECK(path("a//b") == "files[0].path");
  CHECK(path("a/") == "files[0].path");
  CHECK(path(std::string("a\0b", 3)) == "files[0].path");
  CHECK(request_field([](sc::JobRequest& r) {
          r.files_out = {"ok", "x/../../y"};
        }) == "files_out[1]");
}

TEST_CASE("codec: job ids, images and env names are checked for their characters") {
  CHECK(request_field([](sc::JobRequest& r) { r.job_id = "aZ09._:-"; }) == "");
  CHECK(request_field([](sc::JobRequest& r) { r.job_id = "a b"; }) == "job_id");
  CHECK(request_field([](sc::JobRequest& r) { r.job_id = "a/b"; }) == "job_id");
  CHECK(request_field([](sc::JobRequest& r) { r.job_id = ""; }) == "job_id");
  CHECK(request_field([](sc::JobRequest& r) { r.image = "ubuntu-22.04_x"; }) == "");
  CHECK(request_field([](sc::JobRequest& r) { r.image = "Ubuntu"; }) == "image");
  CHECK(request_field([](sc::JobRequest& r) { r.image = ""; }) == "image");
  CHECK(request_field([](sc::JobRequest& r) { r.env = {{"_a1", "x"}}; }) == "");
  CHECK(request_field([](sc::JobRequest& r) { r.env = {{"1a", "x"}}; }) == "env.1a");
  CHECK(request_field([](sc::JobRequest& r) { r.env = {{"A-B", "x"}}; }) == "env.A-B");
  CHECK(request_field([](sc::JobRequest& r) {
          r.env = {{"A", std::string("x\0", 2)}};
        }) == "env.A");
  CHECK(request_field([](sc::JobRequest& r) {
          r.argv = {"x", std::string("\0", 1)};
        }) == "argv[1]");
  CHECK(request_field([](sc::JobRequest& r) { r.argv = {"", "x"}; }) == "argv[0]");
  CHECK(request_field([](sc::JobRequest& r) { r.argv = {}; }) == "argv");
  CHECK(request_field([](sc::JobRequest& r) {
          r.egress = {sc::EgressRule{"1.1.1.1", "sctp", {}}};
        }) == "egress[0].protocol");
  CHECK(request_field([](sc::JobRequest& r) {
          r.egress = {sc::EgressRule{"1.1.1.1", "any", {{1, 1}}}};
        }) == "egress[0].ports");
  CHECK(request_field([](sc::JobRequest& r) {
          r.egress = {sc::EgressRule{"1.1.1.1", "tcp", {{10, 9}}}};
        }) == "egress[0].ports[0]");
  CHECK(request_field([](sc::JobRequest& r) {
          r.egress = {sc::EgressRule{"1.1.1.1", "udp", {{1, 65535}}}};
        }) == "");
}

TEST_CASE("codec: type errors name the field and the types") {
  auto body = pack([](auto& pk) {
    pk.pack_map(2);
    pack_str(pk, "job_id");
    pack_str(pk, "j");
    pack_str(pk, "argv");
    pk.pack_array(3);
    pack_str(pk, "a");
    pack_str(pk, "b");
    pk.pack(7);
  });
  auto e = error_of(sc::decode_job_request(body));
  CHECK(e.field == "argv[2]");
  CHECK(e.message() == "argv[2]: expected string, got integer");
}

TEST_CASE("codec: a key given twice is an error naming the key") {
  auto body = pack([](auto& pk) {
    pk.pack_map(3);
    pack_str(pk, "job_id");
    pack_str(pk, "a");
    pack_str(pk, "argv");
    pk.pack(std::vector<std::string>{"x"});
    pack_str(pk, "argv");
    pk.pack(std::vector<std::string>{"y"});
  });
  CHECK(error_of(sc::decode_job_request(body)).field == "argv");
  auto env = pack([](auto& pk) {
    pk.pack_map(3);
    pack_str(pk, "job_id");
    pack_str(pk, "a");
    pack_str(pk, "argv");
    pk.pack(std::vector<std::string>{"x"});
    pack_str(pk, "env");
    pk.pack_map(2);
    pack_str(pk, "A");
    pack_str(pk, "1");
    pack_str(pk, "A");
    pack_str(pk, "2");
  });
  CHECK(error_of(sc::decode_job_request(env)).field == "env");
  // An empty key given twice has no name: the map that holds it is named (found by fuzzing).
  auto empty_key = [](std::string_view nested) {
    return pack([&](auto& pk) {
      pk.pack_map(nested.empty() ? 3 : 2);
      pack_str(pk, "job_id");
      pack_str(pk, "r");
      if (!nested.empty()) {
        pack_str(pk, nested);
        pk.pack_map(2);
      }
      pack_str(pk, "");
      pk.pack(1);
      pack_str(pk, "");
      pk.pack(2);
    });
  };
  CHECK(error_of(sc::decode_job_result(empty_key(""))).field == "body");
  CHECK(error_of(sc::decode_job_result(empty_key("timings"))).field == "timings");
}

TEST_CASE("codec: malformed bodies are refused with field 'body'") {
  const std::string good = sc::encode(sc::JobRef{"a", {}});
  CHECK(error_of(sc::decode_job_ref("")).field == "body");
  CHECK(error_of(sc::decode_job_ref(good + '\xc0')).field == "body");  // trailing bytes
  CHECK(error_of(sc::decode_job_ref(good.substr(0, good.size() - 1))).field == "body");
  CHECK(error_of(sc::decode_job_ref("\xc1")).field == "body");  // never used
  CHECK(error_of(sc::decode_job_ref(pack([](auto& pk) { pk.pack(1); }))).field == "body");
  CHECK(error_of(sc::decode_job_ref(pack([](auto& pk) {
          pk.pack_map(1);
          pk.pack(1);
          pk.pack(2);
        }))).field == "body");  // non-string key
  const std::string ext = with_extra_key(good, "x", [](auto& pk) {
    pk.pack_ext(1, 7);
    pk.pack_ext_body("a", 1);
  });
  CHECK(error_of(sc::decode_job_ref(ext)).field == "body");
  const std::string empty_ext = with_extra_key(good, "x", [](auto& pk) { pk.pack_ext(0, 7); });
  CHECK(error_of(sc::decode_job_ref(empty_ext)).field == "body");
  // Every decoder refuses a non-map body in the same way.
  const std::string array = pack([](auto& pk) { pk.pack_array(0); });
  CHECK(error_of(sc::decode_job_request(array)).field == "body");
  CHECK(error_of(sc::decode_job_result(array)).field == "body");
  CHECK(error_of(sc::decode_job_error(array)).field == "body");
  CHECK(error_of(sc::decode_job_dispatch(array)).field == "body");
  CHECK(error_of(sc::decode_ready(array)).field == "body");
  CHECK(error_of(sc::decode_credit(array)).field == "body");
  CHECK(error_of(sc::decode_accepted(array)).field == "body");
}

// ==== limits.h, at the limit and one past it =====================================================

TEST_CASE("limits: kMaxFrameBytes, a body of exactly 16 MiB decodes and one byte more does not") {
  // A JobRef padded with an unknown bin key to a given total size.
  auto padded = [](size_t total) {
    const std::string head = sc::encode(sc::JobRef{"a", {}});
    // map header grows from fixmap(1) to fixmap(2); key "p" is 2 bytes; bin32 header 5 bytes.
    const size_t overhead = head.size() + 2 + 5;
    std::string body = with_extra_key(head, "p", [&](auto& pk) {
      pk.pack_bin(static_cast<uint32_t>(total - overhead));
      std::string pad(total - overhead, 'x');
      pk.pack_bin_body(pad.data(), static_cast<uint32_t>(pad.size()));
    });
    REQUIRE(body.size() == total);
    return body;
  };
  CHECK(sc::decode_job_ref(padded(L::kMaxFrameBytes)));
  CHECK(error_of(sc::decode_job_ref(padded(L::kMaxFrameBytes + 1))).field == "frame");
}

TEST_CASE("limits: kMaxDepth, 6 nested containers decode and 7 do not") {
  auto nested = [](size_t depth) {  // the body map is the first container
    return with_extra_key(sc::encode(sc::JobRef{"a", {}}), "x", [&](auto& pk) {
      for (size_t i = 1; i < depth; ++i) pk.pack_array(1);
      pk.pack_nil();
    });
  };
  CHECK(sc::decode_job_ref(nested(L::kMaxDepth)));
  CHECK(error_of(sc::decode_job_ref(nested(L::kMaxDepth + 1))).field == "body");
}

TEST_CASE("limits: kMaxArray, kMaxMap, kMaxStr are msgpack limits reported as 'body'") {
  const std::string ref = sc::encode(sc::JobRef{"a", {}});
  auto array = [&](size_t n) {
    return with_extra_key(ref, "x", [&](auto& pk) {
      pk.pack_array(static_cast<uint32_t>(n));
      for (size_t i = 0; i < n; ++i) pk.pack_nil();
    });
  };
  CHECK(sc::decode_job_ref(array(L::kMaxArray)));
  CHECK(error_of(sc::decode_job_ref(array(L::kMaxArray + 1))).field == "body");
  auto map = [&](size_t n) {
    return with_extra_key(ref, "x", [&](auto& pk) {
      pk.pack_map(static_cast<uint32_t>(n));
      for (size_t i = 0; i < n; ++i) {
        pk.pack(std::to_string(i));
        pk.pack_nil();
      }
    });
  };
  CHECK(sc::decode_job_ref(map(L::kMaxMap)));
  CHECK(error_of(sc::decode_job_ref(map(L::kMaxMap + 1))).field == "body");
  auto str = [&](size_t n) {
    return with_extra_key(ref, "x", [&](auto& pk) { pack_str(pk, std::string(n, 's')); });
  };
  CHECK(sc::decode_job_ref(str(L::kMaxStr)));
  CHECK(error_of(sc::decode_job_ref(str(L::kMaxStr + 1))).field == "body");
  // kMaxBin equals kMaxFrameBytes: a bin that large cannot fit in a frame with its header.
  static_assert(L::kMaxBin == L::kMaxFrameBytes);
}

TEST_CASE("limits: JobRequest identifiers (job_id, image)") {
  CHECK(request_field([](auto& r) { r.job_id = std::string(L::kMaxJobId, 'j'); }) == "");
  CHECK(request_field([](auto& r) { r.job_id = std::string(L::kMaxJobId + 1, 'j'); }) == "job_id");
  CHECK(request_field([](auto& r) { r.image = std::string(L::kMaxImage, 'i'); }) == "");
  CHECK(request_field([](auto& r) { r.image = std::string(L::kMaxImage + 1, 'i'); }) == "image");
}

TEST_CASE("limits: JobRequest argv (count, entry size, total size)") {
  CHECK(request_field([](auto& r) { r.argv.assign(L::kMaxArgv, "a"); }) == "");
  CHECK(request_field([](auto& r) { r.argv.assign(L::kMaxArgv + 1, "a"); }) == "argv");
  CHECK(request_field([](auto& r) { r.argv = {"x", std::string(L::kMaxArg, 'a')}; }) == "");
  CHECK(request_field([](auto& r) {
          r.argv = {"x", std::string(L::kMaxArg + 1, 'a')};
        }) == "argv[1]");
  static_assert(L::kMaxArgvTotal == 4 * L::kMaxArg);
  CHECK(request_field([](auto& r) { r.argv.assign(4, std::string(L::kMaxArg, 'a')); }) == "");
  CHECK(request_field([](auto& r) {
          r.argv.assign(4, std::string(L::kMaxArg, 'a'));
          r.argv.push_back("b");
        }) == "argv");
}

TEST_CASE("limits: JobRequest env (entries, name, value)") {
  auto env_of = [](size_t n) {
    std::map<std::string, std::string> env;
    for (size_t i = 0; i < n; ++i) env["V" + std::to_string(i)] = "x";
    return env;
  };
  CHECK(request_field([&](auto& r) { r.env = env_of(L::kMaxEnv); }) == "");
  // kMaxEnv equals the msgpack map limit, which the unpacker enforces first.
  static_assert(L::kMaxEnv == L::kMaxMap);
  CHECK(request_field([&](auto& r) { r.env = env_of(L::kMaxEnv + 1); }) == "body");
  CHECK(request_field([](auto& r) { r.env = {{std::string(L::kMaxEnvKey, 'K'), "v"}}; }) == "");
  CHECK(request_field([](auto& r) {
          r.env = {{std::string(L::kMaxEnvKey + 1, 'K'), "v"}};
        }) == "env");
  CHECK(request_field([](auto& r) { r.env = {{"K", std::string(L::kMaxEnvValue, 'v')}}; }) == "");
  CHECK(request_field([](auto& r) {
          r.env = {{"K", std::string(L::kMaxEnvValue + 1, 'v')}};
        }) == "env.K");
}

TEST_CASE("limits: JobRequest stdin") {
  CHECK(request_field([](auto& r) { r.stdin_data.assign(L::kMaxStdin, 'i'); }) == "");
  CHECK(request_field([](auto& r) { r.stdin_data.assign(L::kMaxStdin + 1, 'i'); }) == "stdin");
}

TEST_CASE("limits: JobRequest files (count, path, total data) and files_out") {
  auto files_of = [](size_t n) {
    std::vector<sc::FileIn> files;
    for (size_t i = 0; i < n; ++i) files.push_back(sc::FileIn{"f" + std::to_string(i), 0644, ""});
    return files;
  };
  CHECK(request_field([&](auto& r) { r.files = files_of(L::kMaxFiles); }) == "");
  CHECK(request_field([&](auto& r) { r.files = files_of(L::kMaxFiles + 1); }) == "files");
  CHECK(request_field([](auto& r) {
          r.files = {sc::FileIn{std::string(L::kMaxPath, 'p'), 0644, ""}};
        }) == "");
  CHECK(request_field([](auto& r) {
          r.files = {sc::FileIn{std::string(L::kMaxPath + 1, 'p'), 0644, ""}};
        }) == "files[0].path");
  CHECK(request_field([](auto& r) {
          r.files = {sc::FileIn{"a", 0644, std::string(L::kMaxFilesTotal / 2, 'd')},
                     sc::FileIn{"b", 0644, std::string(L::kMaxFilesTotal / 2, 'd')}};
        }) == "");
  CHECK(request_field([](auto& r) {
          r.files = {sc::FileIn{"a", 0644, std::string(L::kMaxFilesTotal / 2, 'd')},
                     sc::FileIn{"b", 0644, std::string(L::kMaxFilesTotal / 2 + 1, 'd')}};
        }) == "files");
  CHECK(request_field([](auto& r) {
          r.files = {sc::FileIn{"a", 0644, std::string(L::kMaxFilesTotal + 1, 'd')}};
        }) == "files[0].data");
  CHECK(request_field([](auto& r) { r.files = {sc::FileIn{"a", 07777, ""}}; }) == "");
  CHECK(request_field([](auto& r) { r.files = {sc::FileIn{"a", 010000, ""}}; }) == "files[0].mode");
  auto paths_of = [](size_t n) {
    std::vector<std::string> paths;
    for (size_t i = 0; i < n; ++i) paths.push_back("o" + std::to_string(i));
    return paths;
  };
  CHECK(request_field([&](auto& r) { r.files_out = paths_of(L::kMaxFiles); }) == "");
  CHECK(request_field([&](auto& r) { r.files_out = paths_of(L::kMaxFiles + 1); }) == "files_out");
  CHECK(request_field([](auto& r) { r.files_out = {std::string(L::kMaxPath, 'p')}; }) == "");
  CHECK(request_field([](auto& r) { r.files_out = {std::string(L::kMaxPath + 1, 'p')}; }) ==
        "files_out[0]");
}

TEST_CASE("limits: JobRequest numeric ranges (vcpus, mem_mib, timeout_ms, output_cap, priority)") {
  CHECK(request_field([](auto& r) { r.vcpus = 1; }) == "");
  CHECK(request_field([](auto& r) { r.vcpus = 0; }) == "vcpus");
  CHECK(request_field([](auto& r) { r.vcpus = L::kMaxVcpus; }) == "");
  CHECK(request_field([](auto& r) { r.vcpus = L::kMaxVcpus + 1; }) == "vcpus");
  CHECK(request_field([](auto& r) { r.mem_mib = L::kMinMemMib; }) == "");
  CHECK(request_field([](auto& r) { r.mem_mib = L::kMinMemMib - 1; }) == "mem_mib");
  CHECK(request_field([](auto& r) { r.mem_mib = L::kMaxMemMib; }) == "");
  CHECK(request_field([](auto& r) { r.mem_mib = L::kMaxMemMib + 1; }) == "mem_mib");
  CHECK(request_field([](auto& r) { r.timeout_ms = 1; }) == "");
  CHECK(request_field([](auto& r) { r.timeout_ms = 0; }) == "timeout_ms");
  CHECK(request_field([](auto& r) { r.timeout_ms = L::kMaxTimeoutMs; }) == "");
  CHECK(request_field([](auto& r) { r.timeout_ms = L::kMaxTimeoutMs + 1; }) == "timeout_ms");
  CHECK(request_field([](auto& r) { r.output_cap = 0; }) == "");
  CHECK(request_field([](auto& r) { r.output_cap = L::kMaxOutputCap; }) == "");
  CHECK(request_field([](auto& r) { r.output_cap = L::kMaxOutputCap + 1; }) == "output_cap");
  CHECK(request_field([](auto& r) { r.priority = L::kMinPriority; }) == "");
  CHECK(request_field([](auto& r) { r.priority = L::kMinPriority - 1; }) == "priority");
  CHECK(request_field([](auto& r) { r.priority = L::kMaxPriority; }) == "");
  CHECK(request_field([](auto& r) { r.priority = L::kMaxPriority + 1; }) == "priority");
  CHECK(request_field([](auto& r) { r.deadline_ms = UINT64_MAX; }) == "");
}

TEST_CASE("limits: JobRequest egress (rules, port ranges, port values)") {
  auto rules_of = [](size_t n) { return std::vector<sc::EgressRule>(n, {"1.1.1.1", "tcp", {}}); };
  CHECK(request_field([&](auto& r) { r.egress = rules_of(L::kMaxEgressRules); }) == "");
  CHECK(request_field([&](auto& r) { r.egress = rules_of(L::kMaxEgressRules + 1); }) == "egress");
  auto ports_of = [](size_t n) {
    return std::vector<sc::EgressRule>{{"1.1.1.1", "tcp", std::vector<sc::PortRange>(n, {1, 2})}};
  };
  CHECK(request_field([&](auto& r) { r.egress = ports_of(L::kMaxPortRanges); }) == "");
  CHECK(request_field([&](auto& r) { r.egress = ports_of(L::kMaxPortRanges + 1); }) ==
        "egress[0].ports");
  CHECK(request_field([](auto& r) {
          r.egress = {{"1.1.1.1", "tcp", {{0, 5}}}};
        }) == "egress[0].ports[0].first");
  // 65536 does not fit a PortRange; write it by hand.
  auto body = pack([](auto& pk) {
    pk.pack_map(3);
    pack_str(pk, "job_id");
    pack_str(pk, "j");
    pack_str(pk, "argv");
    pk.pack(std::vector<std::string>{"x"});
    pack_str(pk, "egress");
    pk.pack_array(1);
    pk.pack_map(2);
    pack_str(pk, "cidr");
    pack_str(pk, "1.1.1.1");
    pack_str(pk, "ports");
    pk.pack_array(2);
    pk.pack_map(1);
    pack_str(pk, "first");
    pk.pack(65535);
    pk.pack_map(2);
    pack_str(pk, "first");
    pk.pack(1);
    pack_str(pk, "last");
    pk.pack(65536);
  });
  CHECK(error_of(sc::decode_job_request(body)).field == "egress[0].ports[1].last");
}

TEST_CASE("limits: JobRequest tags (entries, key, value)") {
  auto tags_of = [](size_t n) {
    std::map<std::string, std::string> tags;
    for (size_t i = 0; i < n; ++i) tags["t" + std::to_string(i)] = "v";
    return tags;
  };
  CHECK(request_field([&](auto& r) { r.tags = tags_of(L::kMaxTags); }) == "");
  CHECK(request_field([&](auto& r) { r.tags = tags_of(L::kMaxTags + 1); }) == "tags");
  CHECK(request_field([](auto& r) { r.tags = {{std::string(L::kMaxTagKey, 'k'), "v"}}; }) == "");
  CHECK(request_field([](auto& r) {
          r.tags = {{std::string(L::kMaxTagKey + 1, 'k'), "v"}};
        }) == "tags");
  CHECK(request_field([](auto& r) { r.tags = {{"", "v"}}; }) == "tags");
  CHECK(request_field([](auto& r) { r.tags = {{"k", std::string(L::kMaxTagValue, 'v')}}; }) == "");
  CHECK(request_field([](auto& r) {
          r.tags = {{"k", std::string(L::kMaxTagValue + 1, 'v')}};
        }) == "tags.k");
}

TEST_CASE("limits: JobResult and JobError strings (job_id, worker_id, message, outputs)") {
  auto result_field = [](const std::function<void(sc::JobResult&)>& change) -> std::string {
    sc::JobResult r;
    r.job_id = "r";
    change(r);
    auto d = sc::decode_job_result(sc::encode(r));
    return d ? "" : d.error().field;
  };
  CHECK(result_field([](auto& r) { r.job_id = std::string(L::kMaxJobId, 'j'); }) == "");
  CHECK(result_field([](auto& r) { r.job_id = std::string(L::kMaxJobId + 1, 'j'); }) == "job_id");
  CHECK(result_field([](auto& r) { r.worker_id = std::string(L::kMaxWorkerId, 'w'); }) == "");
  CHECK(result_field([](auto& r) { r.worker_id = std::string(L::kMaxWorkerId + 1, 'w'); }) ==
        "worker_id");
  CHECK(result_field([](auto& r) { r.stdout_data.assign(L::kMaxOutputCap, 'o'); }) == "");
  CHECK(result_field([](auto& r) { r.stdout_data.assign(L::kMaxOutputCap + 1, 'o'); }) == "stdout");
  CHECK(result_field([](auto& r) { r.stderr_data.assign(L::kMaxOutputCap + 1, 'e'); }) == "stderr");
  CHECK(result_field([](auto& r) { r.files.assign(L::kMaxFiles, {"p", "", false}); }) == "");
  CHECK(result_field([](auto& r) {
          r.files.assign(L::kMaxFiles + 1, {"p", "", false});
        }) == "files");
  CHECK(result_field([](auto& r) {
          r.files = {{std::string(L::kMaxPath + 1, 'p'), "", false}};
        }) == "files[0].path");
  CHECK(result_field([](auto& r) { r.template_vm = std::string(L::kMaxTemplate, 't'); }) == "");
  CHECK(result_field([](auto& r) { r.template_vm = std::string(L::kMaxTemplate + 1, 't'); }) ==
        "template");
  CHECK(result_field([](auto& r) { r.signal = 128; }) == "");
  CHECK(result_field([](auto& r) { r.signal = 129; }) == "signal");
  CHECK(result_field([](auto& r) { r.signal = -1; }) == "signal");

  auto error_field = [](const std::function<void(sc::JobError&)>& change) -> std::string {
    sc::JobError e = make_error("e", 1, "VmAlreadyExists", "vm 'x' already exists");
    change(e);
    auto d = sc::decode_job_error(sc::encode(e));
    return d ? "" : d.error().field;
  };
  CHECK(error_field([](auto& e) { e.message = std::string(L::kMaxMessage, 'm'); }) == "");
  CHECK(error_field([](auto& e) { e.message = std::string(L::kMaxMessage + 1, 'm'); }) ==
        "message");
  CHECK(error_field([](auto& e) { e.job_id = std::string(L::kMaxJobId, 'j'); }) == "");
  CHECK(error_field([](auto& e) { e.job_id = std::string(L::kMaxJobId + 1, 'j'); }) == "job_id");
  CHECK(error_field([](auto& e) { e.worker_id = std::string(L::kMaxWorkerId, 'w'); }) == "");
  CHECK(error_field([](auto& e) { e.worker_id = std::string(L::kMaxWorkerId + 1, 'w'); }) ==
        "worker_id");
  CHECK(error_field([](auto& e) { e.code = 0; }) == "code");
}

TEST_CASE("limits: Ready (worker_id, slots, capabilities), Credit, Accepted, JobRef") {
  auto ready_field = [](const std::function<void(sc::Ready&)>& change) -> std::string {
    sc::Ready r{"w", 1, {}};
    change(r);
    auto d = sc::decode_ready(sc::encode(r));
    return d ? "" : d.error().field;
  };
  CHECK(ready_field([](auto& r) { r.worker_id = std::string(L::kMaxWorkerId, 'w'); }) == "");
  CHECK(ready_field([](auto& r) { r.worker_id = std::string(L::kMaxWorkerId + 1, 'w'); }) ==
        "worker_id");
  CHECK(ready_field([](auto& r) { r.worker_id = ""; }) == "worker_id");
  CHECK(ready_field([](auto& r) { r.slots = 0; }) == "");
  CHECK(ready_field([](auto& r) { r.slots = L::kMaxSlots; }) == "");
  CHECK(ready_field([](auto& r) { r.slots = L::kMaxSlots + 1; }) == "slots");
  CHECK(ready_field([](auto& r) { r.capabilities.assign(L::kMaxCapabilities, "c"); }) == "");
  CHECK(ready_field([](auto& r) { r.capabilities.assign(L::kMaxCapabilities + 1, "c"); }) ==
        "capabilities");

  CHECK(sc::decode_credit(sc::encode(sc::Credit{1})));
  CHECK(sc::decode_credit(sc::encode(sc::Credit{L::kMaxSlots})));
  CHECK(error_of(sc::decode_credit(sc::encode(sc::Credit{0}))).field == "credits");
  CHECK(error_of(sc::decode_credit(sc::encode(sc::Credit{L::kMaxSlots + 1}))).field == "credits");

  sc::Accepted many;
  many.job_ids.assign(L::kMaxBodiesPerMessage, "j");
  CHECK(sc::decode_accepted(sc::encode(many)));
  many.job_ids.push_back("j");
  CHECK(error_of(sc::decode_accepted(sc::encode(many))).field == "job_ids");
  CHECK(
      error_of(sc::decode_accepted(sc::encode(sc::Accepted{{std::string(L::kMaxJobId + 1, 'j')}})))
          .field == "job_ids[0]");

  CHECK(sc::decode_job_ref(sc::encode(sc::JobRef{std::string(L::kMaxJobId, 'j'), {}})));
  CHECK(error_of(sc::decode_job_ref(sc::encode(sc::JobRef{std::string(L::kMaxJobId + 1, 'j'), {}})))
            .field == "job_id");
  CHECK(error_of(sc::decode_job_ref(sc::encode(sc::JobRef{"", {}}))).field == "job_id");
}

TEST_CASE("codec: WorkerStatus round-trips and its limits name the field") {
  sc::WorkerStatus s{"node-7.example", {{"tpl-default-1x128", 2, 3}, {"tpl-py-2x256", 0, 1}}};
  auto d = sc::decode_worker_status(sc::encode(s));
  REQUIRE(d);
  CHECK(d.value() == s);
  CHECK(sc::decode_worker_status(sc::encode(sc::WorkerStatus{"h", {}}))->warm_pools.empty());

  auto status_field = [](const std::function<void(sc::WorkerStatus&)>& change) -> std::string {
    sc::WorkerStatus st{"h", {{"tpl", 1, 1}}};
    change(st);
    auto dd = sc::decode_worker_status(sc::encode(st));
    if (dd) CHECK(dd.value() == st);
    return dd ? "" : dd.error().field;
  };
  CHECK(status_field([](auto& st) { st.host = std::string(L::kMaxHostName, 'h'); }) == "");
  CHECK(status_field([](auto& st) { st.host = std::string(L::kMaxHostName + 1, 'h'); }) == "host");
  CHECK(status_field([](auto& st) { st.warm_pools.assign(L::kMaxWarmPools, {"t", 0, 0}); }) == "");
  CHECK(status_field([](auto& st) {
          st.warm_pools.assign(L::kMaxWarmPools + 1, {"t", 0, 0});
        }) == "warm_pools");
  CHECK(status_field([](auto& st) {
          st.warm_pools[0].template_name = std::string(L::kMaxTemplate + 1, 't');
        }) == "warm_pools[0].template");
  CHECK(status_field([](auto& st) { st.warm_pools[0].template_name = ""; }) ==
        "warm_pools[0].template");
  CHECK(status_field([](auto& st) { st.warm_pools[0].ready = UINT64_MAX; }) ==
        "warm_pools[0].ready");

  // Malformed bodies, refused by field.
  CHECK(error_of(sc::decode_worker_status(pack([](auto& pk) { pk.pack_map(0); }))).field == "host");
  CHECK(error_of(sc::decode_worker_status(pack([](auto& pk) {
          pk.pack_map(1);
          pack_str(pk, "host");
          pk.pack(7);
        }))).field == "host");
  CHECK(error_of(sc::decode_worker_status(pack([](auto& pk) {
          pk.pack_map(2);
          pack_str(pk, "host");
          pack_str(pk, "h");
          pack_str(pk, "warm_pools");
          pk.pack_array(1);
          pk.pack_map(2);
          pack_str(pk, "template");
          pack_str(pk, "t");
          pack_str(pk, "ready");
          pk.pack(1);
        }))).field == "warm_pools[0].target");
  CHECK(error_of(sc::decode_worker_status(pack([](auto& pk) {
          pk.pack_map(2);
          pack_str(pk, "host");
          pack_str(pk, "h");
          pack_str(pk, "warm_pools");
          pk.pack_array(1);
          pk.pack(3);
        }))).field == "warm_pools[0]");
  CHECK(error_of(sc::decode_worker_status(pack([](auto& pk) { pk.pack_array(0); }))).field ==
        "body");
  CHECK(error_of(sc::decode_worker_status("\xc1")).field == "body");
}

// ==== envelopes ===============================================================================

namespace {

sc::Decoded<sc::Envelope> parse(const std::vector<std::string>& parts, sc::Direction d) {
  std::vector<std::string_view> views(parts.begin(), parts.end());
  return sc::parse_envelope(views, d);
}

std::vector<std::string> message(uint8_t command, size_t bodies) {
  std::vector<std::string> parts{"PDK1", std::string(1, static_cast<char>(command))};
  for (size_t i = 0; i < bodies; ++i) parts.push_back(sc::encode(sc::JobRef{"j", {}}));
  return parts;
}

struct Legal {
  uint8_t command;
  size_t min;
  size_t max;
};

// PROTOCOL.md, "Commands": the legal commands of each direction and their body counts.
const std::map<sc::Direction, std::vector<Legal>> kTable = {
    {sc::Direction::kClientToBroker,
     {{0x01, 1, 1024}, {0x02, 1, 1}, {0x03, 1, 1024}, {0x04, 0, 1}}},
    {sc::Direction::kBrokerToClient,
     {{0x05, 1, 1}, {0x06, 1, 1}, {0x07, 1, 1}, {0x08, 1, 1}, {0x09, 0, 1}, {0x11, 1, 1}}},
    {sc::Direction::kWorkerToBroker,
     {{0x0A, 1, 1},
      {0x0B, 1, 1},
      {0x0C, 0, 1},
      {0x07, 1, 1},
      {0x08, 1, 1},
      {0x0D, 0, 0},
      {0x0F, 0, 0},
      {0x11, 1, 1}}},
    {sc::Direction::kBrokerToWorker,
     {{0x0E, 1, 1}, {0x02, 1, 1}, {0x0C, 0, 0}, {0x0D, 0, 0}, {0x10, 0, 0}}},
};

}  // namespace

TEST_CASE("envelope: a wrong or missing tag is refused with field 'tag'") {
  for (const char* tag : {"PDK2", "PDK", "pdk1", "PDK1 ", ""}) {
    auto parts = message(0x04, 0);
    parts[0] = tag;
    auto e = error_of(parse(parts, sc::Direction::kClientToBroker));
    CHECK(e.field == "tag");
    CHECK(e.message().find("PDK1") != std::string::npos);
  }
  CHECK(error_of(parse({}, sc::Direction::kClientToBroker)).field == "frame");
}

TEST_CASE("envelope: a missing or malformed command frame is refused with field 'command'") {
  CHECK(error_of(parse({"PDK1"}, sc::Direction::kClientToBroker)).field == "command");
  CHECK(error_of(parse({"PDK1", ""}, sc::Direction::kClientToBroker)).field == "command");
  CHECK(error_of(parse({"PDK1", "\x04\x04"}, sc::Direction::kClientToBroker)).field == "command");
  auto e = error_of(parse(message(0x00, 0), sc::Direction::kClientToBroker));
  CHECK(e.field == "command");
  CHECK(e.reason == "command 0x00 is not valid here");
  CHECK(error_of(parse(message(0xff, 1), sc::Direction::kWorkerToBroker)).reason ==
        "command 0xff is not valid here");
}

TEST_CASE("envelope: each direction accepts exactly its commands of PROTOCOL.md") {
  for (const auto& [direction, legal] : kTable) {
    for (int c = 0; c < 256; ++c) {
      const auto it =
          std::find_if(legal.begin(), legal.end(), [&](const Legal& l) { return l.command == c; });
      const size_t bodies = it == legal.end() ? 1 : it->min;
      auto d = parse(message(static_cast<uint8_t>(c), bodies), direction);
      CAPTURE(c);
      CAPTURE(static_cast<int>(direction));
      if (it == legal.end()) {
        CHECK(error_of(d).field == "command");
      } else {
        REQUIRE_MESSAGE(d, d.error().message());
        CHECK(static_cast<uint8_t>(d->command) == c);
        CHECK(d->bodies.size() == bodies);
      }
    }
  }
  // Some wrong-direction cases by name.
  CHECK(error_of(parse(message(0x07, 1), sc::Direction::kClientToBroker)).field == "command");
  CHECK(error_of(parse(message(0x01, 1), sc::Direction::kWorkerToBroker)).field == "command");
  CHECK(error_of(parse(message(0x0E, 1), sc::Direction::kWorkerToBroker)).field == "command");
  CHECK(error_of(parse(message(0x0A, 1), sc::Direction::kBrokerToWorker)).field == "command");
}

TEST_CASE("envelope: body counts at and past each command's bounds are checked ('frame')") {
  for (const auto& [direction, legal] : kTable) {
    for (const Legal& l : legal) {
      CAPTURE(static_cast<int>(l.command));
      CHECK(parse(message(l.command, l.min), direction));
      CHECK(parse(message(l.command, l.max), direction));
      if (l.min > 0) {
        CHECK(error_of(parse(message(l.command, l.min - 1), direction)).field == "frame");
      }
      CHECK(error_of(parse(message(l.command, l.max + 1), direction)).field == "frame");
    }
  }
  static_assert(L::kMaxBodiesPerMessage == 1024);
}

TEST_CASE("envelope: bodies are views of the parts, in order") {
  std::vector<std::string> parts = {"PDK1", "\x01", "first", "second"};
  auto d = parse(parts, sc::Direction::kClientToBroker);
  REQUIRE(d);
  CHECK(d->command == sc::Command::kSubmit);
  REQUIRE(d->bodies.size() == 2);
  CHECK(d->bodies[0] == "first");
  CHECK(d->bodies[1].data() == parts[3].data());
}

TEST_CASE(
    "make_message: tag, one command byte, then the bodies, and parse_envelope reads it back") {
  auto parts = sc::make_message(sc::Command::kSubmit, {"a", "b"});
  REQUIRE(parts.size() == 4);
  CHECK(parts[0] == "PDK1");
  CHECK(parts[1] == std::string(1, '\x01'));
  CHECK(parts[2] == "a");
  CHECK(parts[3] == "b");
  CHECK(sc::make_message(sc::Command::kHeartbeat) == std::vector<std::string>{"PDK1", "\x0c"});
  auto d = parse(sc::make_message(sc::Command::kDrained), sc::Direction::kBrokerToWorker);
  REQUIRE(d);
  CHECK(d->command == sc::Command::kDrained);
  CHECK(d->bodies.empty());
  CHECK(sc::command_name(sc::Command::kDrained) == "DRAINED");
  CHECK(sc::command_name(sc::Command::kSubmit) == "SUBMIT");
}

// ==== peek_job_id =============================================================================

TEST_CASE("peek_job_id: finds the id of a request too broken to decode, else empty") {
  CHECK(sc::peek_job_id(sc::encode(minimal_request("ok-1"))) == "ok-1");
  sc::JobRequest broken = minimal_request("broken-1");
  broken.argv = {};
  broken.vcpus = 1000;
  CHECK_FALSE(sc::decode_job_request(sc::encode(broken)));
  CHECK(sc::peek_job_id(sc::encode(broken)) == "broken-1");
  auto wrong_argv = pack([](auto& pk) {
    pk.pack_map(2);
    pack_str(pk, "argv");
    pk.pack(5);
    pack_str(pk, "job_id");
    pack_str(pk, "typed-1");
  });
  CHECK(sc::peek_job_id(wrong_argv) == "typed-1");
  CHECK(sc::peek_job_id(sc::encode(minimal_request("bad id"))) == "");
  CHECK(sc::peek_job_id(sc::encode(minimal_request(std::string(L::kMaxJobId + 1, 'j')))) == "");
  CHECK(sc::peek_job_id(pack([](auto& pk) { pk.pack(std::vector<int>{1}); })) == "");
  CHECK(sc::peek_job_id(pack([](auto& pk) {
          pk.pack_map(1);
          pack_str(pk, "job_id");
          pk.pack(42);
        })) == "");
  CHECK(sc::peek_job_id("") == "");
  CHECK(sc::peek_job_id("\xc1\xc1") == "");
  CHECK(sc::peek_job_id(sc::encode(minimal_request("t")) + "x") == "");
}

// ==== shared vectors ==========================================================================

TEST_CASE("vectors: every vector of schemas/vectors/manifest.json decodes as expected") {
  const json manifest = json::parse(read_file(kVectors + "/manifest.json"));
  REQUIRE(manifest.is_array());
  REQUIRE(manifest.size() >= 40);
  std::set<std::string> types;
  size_t valid = 0;
  size_t invalid = 0;
  for (const auto& entry : manifest) {
    const std::string file = entry.at("file");
    const std::string type = entry.at("type");
    types.insert(type);
    CAPTURE(file);
    const std::string bytes = read_file(kVectors + "/" + file);
    const auto decoded = decode_as(type, bytes);
    if (entry.at("valid").get<bool>()) {
      ++valid;
      if (const auto* err = std::get_if<sc::DecodeError>(&decoded)) {
        FAIL_CHECK(file << " must decode, got " << err->message());
        continue;
      }
      const json& got = std::get<json>(decoded);
      const json expect = normalize_bytes(entry.at("expect"));
      REQUIRE(expect.is_object());
      REQUIRE_FALSE(expect.empty());
      for (const auto& [field, value] : expect.items()) {
        CAPTURE(field);
        REQUIRE_MESSAGE(got.contains(field), "the decoded " << type << " has no " << field);
        CHECK_MESSAGE(got.at(field) == value,
                      "got " << got.at(field).dump() << ", expected " << value.dump());
      }
    } else {
      ++invalid;
      const std::string field = entry.at("error_field");
      if (std::holds_alternative<json>(decoded)) {
        FAIL_CHECK(file << " must not decode (expected an error on " << field << ")");
        continue;
      }
      CHECK_MESSAGE(std::get<sc::DecodeError>(decoded).field == field,
                    "error " << std::get<sc::DecodeError>(decoded).message());
    }
  }
  CHECK(valid >= 15);
  CHECK(invalid >= 20);
  CHECK(types == std::set<std::string>{"JobRequest", "JobResult", "JobError", "JobDispatch",
                                       "Ready", "Credit", "Accepted", "JobRef", "OutputChunk"});
}

TEST_CASE("vectors: valid vectors survive a C++ re-encode and decode unchanged") {
  const json manifest = json::parse(read_file(kVectors + "/manifest.json"));
  for (const auto& entry : manifest) {
    if (!entry.at("valid").get<bool>()) continue;
    const std::string file = entry.at("file");
    const std::string type = entry.at("type");
    CAPTURE(file);
    const std::string bytes = read_file(kVectors + "/" + file);
    const auto first = decode_as(type, bytes);
    REQUIRE(std::holds_alternative<json>(first));
    std::string again;
    if (type == "JobRequest") again = sc::encode(*sc::decode_job_request(bytes));
    if (type == "JobResult") again = sc::encode(*sc::decode_job_result(bytes));
    if (type == "JobError") again = sc::encode(*sc::decode_job_error(bytes));
    if (type == "JobDispatch") again = sc::encode(*sc::decode_job_dispatch(bytes));
    if (type == "Ready") again = sc::encode(*sc::decode_ready(bytes));
    if (type == "Credit") again = sc::encode(*sc::decode_credit(bytes));
    if (type == "Accepted") again = sc::encode(*sc::decode_accepted(bytes));
    if (type == "JobRef") again = sc::encode(*sc::decode_job_ref(bytes));
    if (type == "OutputChunk") again = sc::encode(*sc::decode_output(bytes));
    const auto second = decode_as(type, again);
    REQUIRE(std::holds_alternative<json>(second));
    CHECK(std::get<json>(first) == std::get<json>(second));
  }
}

TEST_CASE("images of READY capabilities: image:<name> entries, valid and distinct, in order") {
  CHECK(sc::images_of({"backend:qemu", "image:default", "image:python", "image:Bad!",
                       "image:", "image:default", "gpu:none", "image:" + std::string(65, 'a')}) ==
        std::vector<std::string>{"default", "python"});
  CHECK(sc::images_of({}).empty());
  CHECK(sc::valid_image_name("python3.11-slim_x"));
  CHECK_FALSE(sc::valid_image_name("Python"));
  CHECK_FALSE(sc::valid_image_name(""));
}

namespace {
sc::Step step_of(std::vector<std::string> argv, std::string stdin_data = "") {
  sc::Step st;
  st.argv = std::move(argv);
  st.stdin_data = std::move(stdin_data);
  return st;
}

sc::JobRequest steps_request() {
  sc::JobRequest r;
  r.job_id = "grader-1";
  r.env = {{"LANG", "C"}};
  r.files = {sc::FileIn{"prog.sh", 0755, "read x; echo $((x * 2))\n"}};
  r.timeout_ms = 60'000;
  r.output_cap = 4096;
  r.steps = {sc::Step{{"sh", "-n", "prog.sh"}, {}, "", 1000, 100, {}},
             sc::Step{{"sh", "prog.sh"}, {{"LANG", "C.UTF-8"}}, "21\n", 60'000, 4096, {"out.txt"}}};
  r.stop_on_failure = false;
  return r;
}
}  // namespace

TEST_CASE(
    "codec: steps round-trip, take the job's timeout and output cap by default, and a "
    "request without them encodes as before") {
  const auto r = steps_request();
  auto d = sc::decode_job_request(sc::encode(r));
  REQUIRE(d);
  CHECK(d.value() == r);
  // Absent step fields: the job's timeout_ms and output_cap.
  const auto body = pack([](auto& pk) {
    pk.pack_map(5);
    pack_str(pk, "job_id");
    pack_str(pk, "s");
    pack_str(pk, "timeout_ms");
    pk.pack(1234);
    pack_str(pk, "output_cap");
    pk.pack(99);
    pack_str(pk, "stop_on_failure");
    pk.pack_nil();
    pack_str(pk, "steps");
    pk.pack_array(1);
    pk.pack_map(1);
    pack_str(pk, "argv");
    pk.pack_array(1);
    pack_str(pk, "true");
  });
  auto plain = sc::decode_job_request(body);
  REQUIRE(plain);
  REQUIRE(plain.value().steps.size() == 1);
  CHECK(plain.value().steps[0].timeout_ms == 1234);
  CHECK(plain.value().steps[0].output_cap == 99);
  CHECK(plain.value().stop_on_failure);
  CHECK(plain.value().argv.empty());
  // Without steps the encoding has neither key.
  const std::string old = sc::encode(minimal_request());
  CHECK(old.find("steps") == std::string::npos);
  CHECK(old.find("stop_on_failure") == std::string::npos);
}

TEST_CASE(
    "limits: JobRequest steps (count, each step's fields, and what a job with steps may not "
    "have)") {
  auto with_steps = [](const std::function<void(sc::JobRequest&)>& change) {
    return request_field([&](sc::JobRequest& r) {
      r.argv.clear();
      r.steps = {step_of({"true"})};
      change(r);
    });
  };
  CHECK(with_steps([](auto&) {}) == "");
  CHECK(with_steps([](auto& r) { r.steps.assign(L::kMaxSteps, step_of({"true"})); }) == "");
  CHECK(with_steps([](auto& r) { r.steps.assign(L::kMaxSteps + 1, step_of({"true"})); }) ==
        "steps");
  CHECK(with_steps([](auto& r) { r.argv = {"true"}; }) == "argv");
  CHECK(with_steps([](auto& r) { r.stdin_data = "x"; }) == "stdin");
  CHECK(with_steps([](auto& r) { r.files_out = {"a"}; }) == "files_out");
  CHECK(with_steps([](auto& r) { r.steps[0].argv.clear(); }) == "steps[0].argv");
  CHECK(with_steps([](auto& r) { r.steps.push_back(step_of({""})); }) == "steps[1].argv[0]");
  CHECK(with_steps([](auto& r) { r.steps[0].env = {{"1BAD", "x"}}; }) == "steps[0].env.1BAD");
  CHECK(with_steps([](auto& r) { r.steps[0].files_out = {"../x"}; }) == "steps[0].files_out[0]");
  CHECK(with_steps([](auto& r) { r.steps[0].timeout_ms = 0; }) == "steps[0].timeout_ms");
  CHECK(with_steps([](auto& r) { r.steps[0].output_cap = L::kMaxOutputCap + 1; }) ==
        "steps[0].output_cap");
  CHECK(with_steps([](auto& r) {
          r.steps = {step_of({"a"}, std::string(L::kMaxStdin / 2 + 1, 'x')),
                     step_of({"b"}, std::string(L::kMaxStdin / 2, 'x'))};
        }) == "steps");
}

TEST_CASE(
    "codec: a JobResult's steps round-trip, and fit_result cuts them after the job's own "
    "output, each at its step's cap") {
  sc::JobResult r = full_result();
  sc::StepResult a;
  a.exit_code = 0;
  a.stdout_data = "built\n";
  a.exec_us = 1200;
  a.usage.cpu_us = 900;
  sc::StepResult b;
  b.exit_code = 137;
  b.signal = 9;
  b.timed_out = true;
  b.stderr_data = "killed";
  b.files = {sc::FileOut{"out.txt", "42", false}};
  r.steps = {a, b};
  auto d = sc::decode_job_result(sc::encode(r));
  REQUIRE(d);
  CHECK(d.value() == r);
  CHECK(sc::encode(full_result()).find("steps") == std::string::npos);

  sc::JobRequest req = steps_request();  // caps 100 and 4096
  sc::JobResult big;
  big.steps.resize(2);
  big.steps[0].stdout_data.assign(500, 'a');
  big.steps[1].stdout_data.assign(5000, 'b');
  sc::fit_result(big, req);
  CHECK(big.steps[0].stdout_data.size() == 100);
  CHECK(big.steps[0].stdout_truncated);
  CHECK(big.steps[1].stdout_data.size() == 4096);
  CHECK(big.steps[1].stdout_truncated);
}
