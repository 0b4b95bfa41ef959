#include "job_json.h"

#include <limits>
#include <type_traits>

#include "outcome.h"
#include "text.h"

namespace paddock::cli {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
namespace sc = paddock::schemas;

[[noreturn]] void fail(const std::string& field, const std::string& reason) {
  throw FieldError{field, reason};
}

std::string got(const json& j) { return std::string("got ") + j.type_name(); }

std::string as_string(const json& j, const std::string& field) {
  if (!j.is_string()) fail(field, "expected a string, " + got(j));
  return j.get<std::string>();
}

template <class T>
T as_int(const json& j, const std::string& field) {
  if (!j.is_number_integer()) fail(field, "expected an integer, " + got(j));
  constexpr auto lo = std::numeric_limits<T>::min();
  constexpr auto hi = std::numeric_limits<T>::max();
  const std::string range = "out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")";
  if (j.is_number_unsigned()) {
    const auto v = j.get<uint64_t>();
    if (v > static_cast<uint64_t>(hi)) fail(field, range);
    return static_cast<T>(v);
  }
  const auto v = j.get<int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (v < 0 || static_cast<uint64_t>(v) > static_cast<uint64_t>(hi)) fail(field, range);
  } else {
    if (v < static_cast<int64_t>(lo) || v > static_cast<int64_t>(hi)) fail(field, range);
  }
  return static_cast<T>(v);
}

std::string as_bytes(const json& j, const std::string& field) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.size() == 1 && j.contains("base64") && j["base64"].is_string()) {
    auto decoded = base64_decode(j["base64"].get<std::string>());
    if (!decoded) fail(field + ".base64", "not valid base64 (standard alphabet, padded)");
    return *decoded;
  }
  fail(field, "expected a UTF-8 string or {\"base64\": \"...\"}, " + got(j));
}

const json& as_object(const json& j, const std::string& field) {
  if (!j.is_object()) fail(field, "expected an object, " + got(j));
  return j;
}

const json& as_array(const json& j, const std::string& field) {
  if (!j.is_array()) fail(field, "expected an array, " + got(j));
  return j;
}

std::map<std::string, std::string> as_string_map(const json& j, const std::string& field) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : as_object(j, field).items()) out[k] = as_string(v, field + "." + k);
  return out;
}

std::string at(const std::string& field, size_t i) { return field + "[" + std::to_string(i) + "]"; }

// Calls on_field(key, value) for each non-null member; unknown keys fail with the known ones.
template <class F>
void each_field(const json& j, const std::string& where, std::initializer_list<const char*> known,
                F on_field) {
  for (const auto& [key, value] : as_object(j, where.empty() ? "line" : where).items()) {
    const std::string field = where.empty() ? key : where + "." + key;
    bool is_known = false;
    for (const char* k : known) is_known = is_known || key == k;
    if (!is_known) {
      std::string list;
      for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      fail(field, "unknown field (known: " + list + ")");
    }
    if (!value.is_null()) on_field(key, value, field);
  }
}

sc::PortRange port_range(const json& j, const std::string& field) {
  if (j.is_number_integer()) {
    const auto p = as_int<uint16_t>(j, field);
    return {p, p};
  }
  sc::PortRange r;
  bool has_last = false;
  each_field(j, field, {"first", "last"},
             [&](const std::string& k, const json& v, const std::string& f) {
               if (k == "first")
                 r.first = as_int<uint16_t>(v, f);
               else {
                 r.last = as_int<uint16_t>(v, f);
                 has_last = true;
               }
             });
  if (!j.contains("first")) fail(field + ".first", "required");
  if (!has_last) r.last = r.first;
  return r;
}

sc::EgressRule egress_rule(const json& j, const std::string& field) {
  sc::EgressRule r;
  each_field(j, field, {"cidr", "protocol", "ports"},
             [&](const std::string& k, const json& v, const std::string& f) {
               if (k == "cidr")
                 r.cidr = as_string(v, f);
               else if (k == "protocol")
                 r.protocol = as_string(v, f);
               else {
                 const auto& ports = as_array(v, f);
                 for (size_t i = 0; i < ports.size(); ++i)
                   r.ports.push_back(port_range(ports[i], at(f, i)));
               }
             });
  if (r.cidr.empty()) fail(field + ".cidr", "required");
  return r;
}

sc::FileIn file_in(const json& j, const std::string& field) {
  sc::FileIn f;
  each_field(j, field, {"path", "mode", "data"},
             [&](const std::string& k, const json& v, const std::string& name) {
               if (k == "path")
                 f.path = as_string(v, name);
               else if (k == "mode")
                 f.mode = as_int<uint32_t>(v, name);
               else
                 f.data = as_bytes(v, name);
             });
  return f;
}

std::vector<std::string> string_array(const json& v, const std::string& f) {
  std::vector<std::string> out;
  const auto& a = as_array(v, f);
  for (size_t i = 0; i < a.size(); ++i) out.push_back(as_string(a[i], at(f, i)));
  return out;
}

// One of a job's steps; its timeout_ms and output_cap are the job's unless it gives its own (as
// the wire's decoder reads it: PROTOCOL.md, "Steps").
sc::Step step_from(const json& j, const std::string& field, const sc::JobRequest& job) {
  sc::Step st;
  st.timeout_ms = job.timeout_ms;
  st.output_cap = job.output_cap;
  each_field(j, field, {"argv", "env", "stdin", "timeout_ms", "output_cap", "files_out"},
             [&](const std::string& k, const json& v, const std::string& f) {
               if (k == "argv")
                 st.argv = string_array(v, f);
               else if (k == "env")
                 st.env = as_string_map(v, f);
               else if (k == "stdin")
                 st.stdin_data = as_bytes(v, f);
               else if (k == "timeout_ms")
                 st.timeout_ms = as_int<uint32_t>(v, f);
               else if (k == "output_cap")
                 st.output_cap = as_int<uint32_t>(v, f);
               else
                 st.files_out = string_array(v, f);
             });
  if (!j.contains("argv")) fail(field + ".argv", "required");
  return st;
}

void set_field(sc::JobRequest& r, const std::string& k, const json& v, const std::string& f) {
  if (k == "job_id")
    r.job_id = as_string(v, f);
  else if (k == "image")
    r.image = as_string(v, f);
  else if (k == "argv") {
    const auto& a = as_array(v, f);
    for (size_t i = 0; i < a.size(); ++i) r.argv.push_back(as_string(a[i], at(f, i)));
  } else if (k == "env")
    r.env = as_string_map(v, f);
  else if (k == "stdin")
    r.stdin_data = as_bytes(v, f);
  else if (k == "files") {
    const auto& a = as_array(v, f);
    for (size_t i = 0; i < a.size(); ++i) r.files.push_back(file_in(a[i], at(f, i)));
  } else if (k == "files_out") {
    const auto& a = as_array(v, f);
    for (size_t i = 0; i < a.size(); ++i) r.files_out.push_back(as_string(a[i], at(f, i)));
  } else if (k == "vcpus")
    r.vcpus = as_int<uint32_t>(v, f);
  else if (k == "mem_mib")
    r.mem_mib = as_int<uint32_t>(v, f);
  else if (k == "timeout_ms")
    r.timeout_ms = as_int<uint32_t>(v, f);
  else if (k == "output_cap")
    r.output_cap = as_int<uint32_t>(v, f);
  else if (k == "egress") {
    const auto& a = as_array(v, f);
    for (size_t i = 0; i < a.size(); ++i) r.egress.push_back(egress_rule(a[i], at(f, i)));
  } else if (k == "priority")
    r.priority = as_int<int32_t>(v, f);
  else if (k == "deadline_ms")
    r.deadline_ms = as_int<uint64_t>(v, f);
  else if (k == "tags")
    r.tags = as_string_map(v, f);
  else if (k == "stop_on_failure") {
    if (!v.is_boolean()) fail(f, "expected true or false, " + got(v));
    r.stop_on_failure = v.get<bool>();
  } else if (k == "stream") {
    if (!v.is_boolean()) fail(f, "expected true or false, " + got(v));
    r.stream = v.get<bool>();
  }
  // "steps": after the other fields (job_from_json), for the job's defaults.
}

}  // namespace

ParsedJob job_from_json(const json& j) {
  try {
    if (!j.is_object()) fail("", "expected a JSON object {\"argv\": [...], ...}, " + got(j));
    sc::JobRequest r;
    each_field(
        j, "",
        {"job_id", "image", "argv", "env", "stdin", "files", "files_out", "vcpus", "mem_mib",
         "timeout_ms", "output_cap", "egress", "priority", "deadline_ms", "tags", "steps",
         "stop_on_failure", "stream"},
        [&](const std::string& k, const json& v, const std::string& f) { set_field(r, k, v, f); });
    const bool has_steps = j.contains("steps") && !j["steps"].is_null();
    if (has_steps) {
      const auto& a = as_array(j["steps"], "steps");
      for (size_t i = 0; i < a.size(); ++i) r.steps.push_back(step_from(a[i], at("steps", i), r));
    } else if (!j.contains("argv") || j["argv"].is_null()) {
      fail("argv", "required (e.g. \"argv\": [\"echo\", \"hi\"]), unless the job has steps");
    }
    return r;
  } catch (const FieldError& e) {  // thrown by fail() from anywhere in the walk, caught only here
    return e;
  }
}

ParsedJob job_from_json_text(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double ("1e999").
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return FieldError{"", "not valid JSON: " + what};
  }
  return job_from_json(j);
}

ordered_json bytes_to_json(std::string_view bytes) {
  if (is_valid_utf8(bytes)) return std::string(bytes);
  return ordered_json{{"base64", base64_encode(bytes)}};
}

ordered_json files_out_json(const std::vector<sc::FileOut>& files) {
  ordered_json out = ordered_json::array();
  for (const auto& f : files) {
    out.push_back({{"path", f.path}, {"data", bytes_to_json(f.data)}, {"truncated", f.truncated}});
  }
  return out;
}

ordered_json job_to_json(const sc::JobRequest& r) {
  ordered_json files = ordered_json::array();
  for (const auto& f : r.files)
    files.push_back({{"path", f.path}, {"mode", f.mode}, {"data", bytes_to_json(f.data)}});
  ordered_json egress = ordered_json::array();
  for (const auto& e : r.egress) {
    ordered_json ports = ordered_json::array();
    for (const auto& p : e.ports) ports.push_back({{"first", p.first}, {"last", p.last}});
    egress.push_back({{"cidr", e.cidr}, {"protocol", e.protocol}, {"ports", ports}});
  }
  ordered_json j = {{"job_id", r.job_id},
                    {"image", r.image},
                    {"argv", r.argv},
                    {"env", r.env},
                    {"stdin", bytes_to_json(r.stdin_data)},
                    {"files", files},
                    {"files_out", r.files_out},
                    {"vcpus", r.vcpus},
                    {"mem_mib", r.mem_mib},
                    {"timeout_ms", r.timeout_ms},
                    {"output_cap", r.output_cap},
                    {"egress", egress},
                    {"priority", r.priority},
                    {"deadline_ms", r.deadline_ms},
                    {"tags", r.tags}};
  if (!r.steps.empty()) {
    ordered_json steps = ordered_json::array();
    for (const auto& st : r.steps) {
      steps.push_back({{"argv", st.argv},
                       {"env", st.env},
                       {"stdin", bytes_to_json(st.stdin_data)},
                       {"timeout_ms", st.timeout_ms},
                       {"output_cap", st.output_cap},
                       {"files_out", st.files_out}});
    }
    j["steps"] = steps;
    j["stop_on_failure"] = r.stop_on_failure;
  }
  if (r.stream) j["stream"] = true;
  return j;
}

ordered_json result_to_json(const sc::JobResult& r) {
  const auto& t = r.timings;
  const auto& u = r.usage;
  ordered_json j = {{"job_id", r.job_id},
                    {"status", "ok"},
                    {"exit_code", r.exit_code},
                    {"signal", r.signal},
                    {"timed_out", r.timed_out},
                    {"oom_killed", r.oom_killed},
                    {"stdout", bytes_to_json(r.stdout_data)},
                    {"stderr", bytes_to_json(r.stderr_data)},
                    {"stdout_truncated", r.stdout_truncated},
                    {"stderr_truncated", r.stderr_truncated},
                    {"worker_id", r.worker_id},
                    {"attempt", r.attempt},
                    {"backend", r.backend},
                    {"warm", r.warm},
                    {"template", r.template_vm},
                    {"timings",
                     {{"queued_us", t.queued_us},
                      {"start_us", t.start_us},
                      {"exec_us", t.exec_us},
                      {"teardown_us", t.teardown_us},
                      {"total_us", t.total_us}}},
                    {"usage",
                     {{"cpu_us", u.cpu_us},
                      {"peak_memory_kib", u.peak_memory_kib},
                      {"bytes_in", u.bytes_in},
                      {"bytes_out", u.bytes_out},
                      {"packets_in", u.packets_in},
                      {"packets_out", u.packets_out},
                      {"egress_blocked", u.egress_blocked}}}};
  if (!r.files.empty()) j["files"] = files_out_json(r.files);
  if (!r.steps.empty()) {
    ordered_json steps = ordered_json::array();
    for (const auto& st : r.steps) {
      ordered_json one = {{"exit_code", st.exit_code},
                          {"signal", st.signal},
                          {"timed_out", st.timed_out},
                          {"oom_killed", st.oom_killed},
                          {"stdout", bytes_to_json(st.stdout_data)},
                          {"stderr", bytes_to_json(st.stderr_data)},
                          {"stdout_truncated", st.stdout_truncated},
                          {"stderr_truncated", st.stderr_truncated},
                          {"exec_us", st.exec_us}};
      if (!st.files.empty()) one["files"] = files_out_json(st.files);
      steps.push_back(std::move(one));
    }
    j["steps"] = steps;
  }
  return j;
}

ordered_json error_to_json(const sc::JobError& e) {
  ordered_json j = {{"job_id", e.job_id},       {"status", "error"},    {"variant", variant_of(e)},
                    {"code", e.code},           {"message", e.message}, {"retryable", e.retryable},
                    {"worker_id", e.worker_id}, {"attempt", e.attempt}};
  if (e.vm_id) j["vm_id"] = *e.vm_id;
  if (e.snapshot_id) j["snapshot_id"] = *e.snapshot_id;
  if (e.from) j["from"] = *e.from;
  if (e.to) j["to"] = *e.to;
  return j;
}

std::string dump_line(const ordered_json& j) {
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace paddock::cli
