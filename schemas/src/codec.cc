#include "paddock/schemas/codec.h"

#include <msgpack.hpp>

#include <algorithm>

#include "paddock/schemas/job_fields.h"
#include "paddock/schemas/limits.h"
#include "reader.h"
#include "scanner.h"

namespace paddock::schemas {
namespace {

using detail::Failure;
using detail::Fields;
using detail::guarded;
using mp::MapWriter;
namespace L = limits;

// The optional "tenant" of a JOB, CANCEL or outcome body ("" when absent).
std::string tenant_of(const Fields& f) {
  std::string t = f.str("tenant", L::kMaxTenant, false);
  if (!t.empty() && !valid_tenant(t)) {
    throw Failure{"tenant", "must be 1-64 characters of [A-Za-z0-9._-], not starting with '.'"};
  }
  return t;
}

std::string encode_ports(const PortRange& r) {
  return MapWriter().num("first", r.first).num("last", r.last).finish();
}
std::string encode_rule(const EgressRule& r) {
  return MapWriter()
      .str("cidr", r.cidr)
      .str("protocol", r.protocol)
      .maps("ports", r.ports, encode_ports)
      .finish();
}
std::string encode_file_in(const FileIn& f) {
  return MapWriter().str("path", f.path).num("mode", f.mode).bin("data", f.data).finish();
}
std::string encode_file_out(const FileOut& f) {
  return MapWriter()
      .str("path", f.path)
      .bin("data", f.data)
      .boolean("truncated", f.truncated)
      .finish();
}

std::string encode_step(const Step& st) {
  return MapWriter()
      .str_array("argv", st.argv)
      .str_map("env", st.env)
      .bin("stdin", st.stdin_data)
      .num("timeout_ms", st.timeout_ms)
      .num("output_cap", st.output_cap)
      .str_array("files_out", st.files_out)
      .finish();
}

// ---- decoding -------------------------------------------------------------------------------

// True when `key` is present with a value other than nil (nil means "use the default").
bool given(const Fields& f, std::string_view key) {
  const msgpack::object* o = f.find(key);
  return o != nullptr && o->type != msgpack::type::NIL;
}

JobRequest read_request(const Fields& f) {
  JobRequest r;
  r.job_id = f.str("job_id", L::kMaxJobId, true);
  if (given(f, "image")) r.image = f.str("image", L::kMaxImage, false);
  r.argv = f.str_array("argv", L::kMaxArgv, L::kMaxArg);
  r.env = f.str_map("env", L::kMaxEnv, L::kMaxEnvKey, L::kMaxEnvValue);
  r.stdin_data = f.bytes("stdin", L::kMaxStdin);
  f.each_map("files", L::kMaxFiles, [&](const Fields& ff) {
    FileIn in;
    in.path = ff.str("path", L::kMaxPath, true);
    in.mode = static_cast<uint32_t>(ff.uint("mode", 0, 07777, 0644));
    in.data = ff.bytes("data", L::kMaxFilesTotal);
    r.files.push_back(std::move(in));
  });
  r.files_out = f.str_array("files_out", L::kMaxFiles, L::kMaxPath);
  r.vcpus = static_cast<uint32_t>(f.uint("vcpus", 1, L::kMaxVcpus, 1));
  r.mem_mib = static_cast<uint32_t>(f.uint("mem_mib", L::kMinMemMib, L::kMaxMemMib, 128));
  r.timeout_ms = static_cast<uint32_t>(f.uint("timeout_ms", 1, L::kMaxTimeoutMs, 30'000));
  r.output_cap = static_cast<uint32_t>(f.uint("output_cap", 0, L::kMaxOutputCap, 1u << 20));
  f.each_map("egress", L::kMaxEgressRules, [&](const Fields& ef) {
    EgressRule rule;
    rule.cidr = ef.str("cidr", 64, true);
    if (given(ef, "protocol")) rule.protocol = ef.str("protocol", 8, false);
    ef.each_map("ports", L::kMaxPortRanges, [&](const Fields& pf) {
      PortRange pr;
      pr.first = static_cast<uint16_t>(pf.uint("first", 1, 65535, 0, true));
      pr.last = static_cast<uint16_t>(pf.uint("last", 1, 65535, pr.first));
      rule.ports.push_back(pr);
    });
    r.egress.push_back(std::move(rule));
  });
  r.priority = static_cast<int32_t>(f.sint("priority", L::kMinPriority, L::kMaxPriority, 0));
  r.deadline_ms = f.uint("deadline_ms", 0, UINT64_MAX, 0);
  r.tags = f.str_map("tags", L::kMaxTags, L::kMaxTagKey, L::kMaxTagValue);
  // After timeout_ms and output_cap: a step's defaults are the job's.
  f.each_map("steps", L::kMaxSteps, [&](const Fields& sf) {
    Step step;
    step.argv = sf.str_array("argv", L::kMaxArgv, L::kMaxArg);
    step.env = sf.str_map("env", L::kMaxEnv, L::kMaxEnvKey, L::kMaxEnvValue);
    step.stdin_data = sf.bytes("stdin", L::kMaxStdin);
    step.timeout_ms =
        static_cast<uint32_t>(sf.uint("timeout_ms", 1, L::kMaxTimeoutMs, r.timeout_ms));
    step.output_cap =
        static_cast<uint32_t>(sf.uint("output_cap", 0, L::kMaxOutputCap, r.output_cap));
    step.files_out = sf.str_array("files_out", L::kMaxFiles, L::kMaxPath);
    r.steps.push_back(std::move(step));
  });
  r.stop_on_failure = f.boolean("stop_on_failure", true);
  r.stream = f.boolean("stream", false);
  if (auto err = validate(r)) {
    // validate() names fields from the request's root; prefix the path of a nested request.
    throw Failure{f.path().empty() ? err->field : f.path() + "." + err->field, err->reason};
  }
  return r;
}

JobRequest request_from(std::string_view bytes) {
  if (bytes.size() > L::kMaxRequestBytes) {
    // Its JOB (the request plus kMaxDispatchOverhead) would not fit one frame on the way to a
    // worker (limits.h, "Limits that compose").
    throw Failure{"body", "a request is at most " + std::to_string(L::kMaxRequestBytes) +
                              " bytes encoded, got " + std::to_string(bytes.size())};
  }
  const detail::Unpacked h(bytes);
  return read_request(Fields(h.get(), ""));
}

std::string encode_timings(const Timings& t) {
  return MapWriter()
      .num("queued_us", t.queued_us)
      .num("start_us", t.start_us)
      .num("exec_us", t.exec_us)
      .num("teardown_us", t.teardown_us)
      .num("total_us", t.total_us)
      .finish();
}

std::string encode_usage(const Usage& u) {
  MapWriter w;
  mp::write_guest_usage(w, u);  // what the guest measured (job_fields.h), then the host's counters
  return w.num("bytes_in", u.bytes_in)
      .num("bytes_out", u.bytes_out)
      .num("packets_in", u.packets_in)
      .num("packets_out", u.packets_out)
      .num("egress_blocked", u.egress_blocked)
      .finish();
}

std::string encode_step_result(const StepResult& st) {
  return MapWriter()
      .num("exit_code", st.exit_code)
      .num("signal", st.signal)
      .bin("stdout", st.stdout_data)
      .bin("stderr", st.stderr_data)
      .boolean("stdout_truncated", st.stdout_truncated)
      .boolean("stderr_truncated", st.stderr_truncated)
      .boolean("timed_out", st.timed_out)
      .boolean("oom_killed", st.oom_killed)
      .maps("files", st.files, encode_file_out)
      .num("exec_us", st.exec_us)
      .map("usage", encode_usage(st.usage))
      .finish();
}

// An outcome's fields (a result's, or a step's) as decoded.
void read_outcome(const Fields& f, ExecOutcome& r) {
  r.exit_code = static_cast<int32_t>(f.sint("exit_code", INT32_MIN, INT32_MAX, 0));
  r.signal = static_cast<int32_t>(f.sint("signal", 0, 128, 0));
  r.stdout_data = f.bytes("stdout", L::kMaxOutputCap);
  r.stderr_data = f.bytes("stderr", L::kMaxOutputCap);
  r.stdout_truncated = f.boolean("stdout_truncated", false);
  r.stderr_truncated = f.boolean("stderr_truncated", false);
  r.timed_out = f.boolean("timed_out", false);
  r.oom_killed = f.boolean("oom_killed", false);
  f.each_map("files", L::kMaxFiles, [&](const Fields& ff) {
    r.files.push_back(FileOut{ff.str("path", L::kMaxPath, true),
                              ff.bytes("data", L::kMaxFilesTotal), ff.boolean("truncated", false)});
  });
  if (const auto* u = f.find("usage"); u != nullptr && u->type != msgpack::type::NIL) {
    Fields uf(*u, f.path().empty() ? "usage" : f.path() + ".usage");
    mp::read_guest_usage(uf, r.usage);
    r.usage.bytes_in = uf.uint("bytes_in", 0, UINT64_MAX, 0);
    r.usage.bytes_out = uf.uint("bytes_out", 0, UINT64_MAX, 0);
    r.usage.packets_in = uf.uint("packets_in", 0, UINT64_MAX, 0);
    r.usage.packets_out = uf.uint("packets_out", 0, UINT64_MAX, 0);
    r.usage.egress_blocked = uf.uint("egress_blocked", 0, UINT64_MAX, 0);
  }
}

}  // namespace

std::string encode(const JobRequest& r) {
  MapWriter w;
  w.str("job_id", r.job_id)
      .str("image", r.image)
      .str_array("argv", r.argv)
      .str_map("env", r.env)
      .bin("stdin", r.stdin_data)
      .maps("files", r.files, encode_file_in)
      .str_array("files_out", r.files_out)
      .num("vcpus", r.vcpus)
      .num("mem_mib", r.mem_mib)
      .num("timeout_ms", r.timeout_ms)
      .num("output_cap", r.output_cap)
      .maps("egress", r.egress, encode_rule)
      .num("priority", r.priority)
      .num("deadline_ms", r.deadline_ms)
      .str_map("tags", r.tags);
  // Only when used: a request without steps encodes as before them.
  if (!r.steps.empty()) w.maps("steps", r.steps, encode_step);
  if (!r.stop_on_failure) w.boolean("stop_on_failure", false);
  if (r.stream) w.boolean("stream", true);
  return w.finish();
}

std::string encode(const JobResult& r) {
  MapWriter w;
  w.str("job_id", r.job_id);
  if (!r.tenant.empty()) w.str("tenant", r.tenant);
  w.num("exit_code", r.exit_code)
      .num("signal", r.signal)
      .bin("stdout", r.stdout_data)
      .bin("stderr", r.stderr_data)
      .boolean("stdout_truncated", r.stdout_truncated)
      .boolean("stderr_truncated", r.stderr_truncated)
      .boolean("timed_out", r.timed_out)
      .boolean("oom_killed", r.oom_killed)
      .maps("files", r.files, encode_file_out)
      .map("timings", encode_timings(r.timings))
      .map("usage", encode_usage(r.usage))
      .str("worker_id", r.worker_id)
      .num("attempt", r.attempt)
      .boolean("warm", r.warm)
      .str("backend", r.backend)
      .str("template", r.template_vm);
  if (!r.steps.empty()) w.maps("steps", r.steps, encode_step_result);
  return w.finish();
}

std::string encode(const JobError& e) {
  MapWriter w;
  w.str("job_id", e.job_id);
  if (!e.tenant.empty()) w.str("tenant", e.tenant);
  w.num("code", e.code).str("variant", e.variant).str("message", e.message);
  if (e.vm_id) w.str("vm_id", *e.vm_id);
  if (e.snapshot_id) w.str("snapshot_id", *e.snapshot_id);
  if (e.from) w.str("from", *e.from);
  if (e.to) w.str("to", *e.to);
  w.str("worker_id", e.worker_id).num("attempt", e.attempt).boolean("retryable", e.retryable);
  if (e.index) w.num("index", *e.index);
  return w.finish();
}

std::string encode(const JobDispatch& d) {
  return encode_job_dispatch(d.attempt, d.queued_us, encode(d.request), d.tenant);
}

std::string encode_job_dispatch(uint32_t attempt, uint64_t queued_us,
                                std::string_view encoded_request, std::string_view tenant) {
  // A few small keys and values, then the request: one allocation.
  MapWriter w(mp::Text::kUtf8, encoded_request.size() + 56 + tenant.size());
  if (!tenant.empty()) w.str("tenant", tenant);
  return w.num("attempt", attempt)
      .num("queued_us", queued_us)
      .map("request", encoded_request)
      .finish();
}

std::string encode(const Ready& r) {
  return MapWriter()
      .num("protocol", 1u)
      .str("worker_id", r.worker_id)
      .num("slots", r.slots)
      .str_array("capabilities", r.capabilities)
      .finish();
}

std::string encode(const Credit& c) { return MapWriter().num("credits", c.credits).finish(); }

std::string encode(const WorkerStatus& s) {
  return MapWriter()
      .str("host", s.host)
      .maps("warm_pools", s.warm_pools,
            [](const WarmPoolStatus& p) {
              return MapWriter()
                  .str("template", p.template_name)
                  .num("ready", p.ready)
                  .num("target", p.target)
                  .finish();
            })
      .finish();
}

std::string encode(const Accepted& a) {
  return MapWriter().str_array("job_ids", a.job_ids).finish();
}

std::string encode(const JobRef& r) {
  MapWriter w;
  w.str("job_id", r.job_id);
  if (!r.tenant.empty()) w.str("tenant", r.tenant);
  return w.finish();
}

std::string encode(const OutputChunk& o) {
  MapWriter w;
  w.str("job_id", o.job_id);
  if (!o.tenant.empty()) w.str("tenant", o.tenant);
  w.num("attempt", o.attempt);
  if (o.step) w.num("step", *o.step);
  w.str("stream", o.stream == OutputStream::kStderr ? "stderr" : "stdout")
      .num("offset", o.offset)
      .bin("data", o.data);
  return w.finish();
}

Decoded<JobRequest> decode_job_request(std::string_view bytes) {
  return guarded<JobRequest>([&] { return request_from(bytes); });
}

Decoded<JobResult> decode_job_result(std::string_view bytes) {
  return guarded<JobResult>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    JobResult r;
    r.job_id = f.str("job_id", L::kMaxJobId, true);
    r.tenant = tenant_of(f);
    read_outcome(f, r);
    if (const auto* t = f.find("timings"); t != nullptr && t->type != msgpack::type::NIL) {
      Fields tf(*t, "timings");
      r.timings =
          Timings{tf.uint("queued_us", 0, UINT64_MAX, 0), tf.uint("start_us", 0, UINT64_MAX, 0),
                  tf.uint("exec_us", 0, UINT64_MAX, 0), tf.uint("teardown_us", 0, UINT64_MAX, 0),
                  tf.uint("total_us", 0, UINT64_MAX, 0)};
    }
    r.worker_id = f.str("worker_id", L::kMaxWorkerId, false);
    r.attempt = static_cast<uint32_t>(f.uint("attempt", 0, UINT32_MAX, 1));
    r.warm = f.boolean("warm", false);
    r.backend = f.str("backend", 32, false);
    r.template_vm = f.str("template", L::kMaxTemplate, false);
    f.each_map("steps", L::kMaxSteps, [&](const Fields& sf) {
      StepResult step;
      read_outcome(sf, step);
      step.exec_us = sf.uint("exec_us", 0, UINT64_MAX, 0);
      r.steps.push_back(std::move(step));
    });
    return r;
  });
}

Decoded<JobError> decode_job_error(std::string_view bytes) {
  return guarded<JobError>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    JobError e;
    e.job_id = f.str("job_id", L::kMaxJobId, false);
    e.tenant = tenant_of(f);
    e.code = static_cast<uint32_t>(f.uint("code", 1, 65535, 0, true));
    e.variant = f.str("variant", 64, true);
    e.message = f.str("message", L::kMaxMessage, false);
    auto opt = [&](std::string_view key) -> std::optional<std::string> {
      const auto* o = f.find(key);
      if (o == nullptr || o->type == msgpack::type::NIL) return std::nullopt;
      return f.str(key, 256, false);
    };
    e.vm_id = opt("vm_id");
    e.snapshot_id = opt("snapshot_id");
    e.from = opt("from");
    e.to = opt("to");
    e.worker_id = f.str("worker_id", L::kMaxWorkerId, false);
    e.attempt = static_cast<uint32_t>(f.uint("attempt", 0, UINT32_MAX, 0));
    e.retryable = f.boolean("retryable", false);
    if (const auto* i = f.find("index"); i != nullptr && i->type != msgpack::type::NIL) {
      e.index = static_cast<uint32_t>(f.uint("index", 0, L::kMaxBodiesPerMessage - 1, 0));
    }
    return e;
  });
}

Decoded<JobDispatch> decode_job_dispatch(std::string_view bytes) {
  return guarded<JobDispatch>([&] {
    // One level more than a request alone: the JOB's own map (limits.h, kMaxDispatchDepth).
    const detail::Unpacked h(bytes, L::kMaxDispatchDepth);
    Fields f(h.get(), "");
    JobDispatch d;
    d.tenant = tenant_of(f);
    d.attempt = static_cast<uint32_t>(f.uint("attempt", 1, UINT32_MAX, 1, true));
    d.queued_us = f.uint("queued_us", 0, UINT64_MAX, 0);
    d.request = read_request(Fields(f.require("request"), "request"));
    return d;
  });
}

Decoded<Ready> decode_ready(std::string_view bytes) {
  return guarded<Ready>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    f.uint("protocol", 1, 1, 1, true);
    Ready r;
    r.worker_id = f.str("worker_id", L::kMaxWorkerId, true);
    if (r.worker_id.empty()) throw Failure{"worker_id", "must not be empty"};
    r.slots = static_cast<uint32_t>(f.uint("slots", 0, L::kMaxSlots, 0, true));
    r.capabilities = f.str_array("capabilities", L::kMaxCapabilities, 128);
    return r;
  });
}

Decoded<Credit> decode_credit(std::string_view bytes) {
  return guarded<Credit>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    return Credit{static_cast<uint32_t>(f.uint("credits", 1, L::kMaxSlots, 0, true))};
  });
}

Decoded<WorkerStatus> decode_worker_status(std::string_view bytes) {
  return guarded<WorkerStatus>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    WorkerStatus s;
    s.host = f.str("host", L::kMaxHostName, true);
    f.each_map("warm_pools", L::kMaxWarmPools, [&](const Fields& pf) {
      WarmPoolStatus p;
      p.template_name = pf.str("template", L::kMaxTemplate, true);
      if (p.template_name.empty()) throw Failure{pf.path() + ".template", "must not be empty"};
      p.ready = pf.uint("ready", 0, UINT32_MAX, 0, true);
      p.target = pf.uint("target", 0, UINT32_MAX, 0, true);
      s.warm_pools.push_back(std::move(p));
    });
    return s;
  });
}

Decoded<Accepted> decode_accepted(std::string_view bytes) {
  return guarded<Accepted>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    return Accepted{f.str_array("job_ids", L::kMaxBodiesPerMessage, L::kMaxJobId)};
  });
}

Decoded<OutputChunk> decode_output(std::string_view bytes) {
  return guarded<OutputChunk>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    OutputChunk o;
    o.job_id = f.str("job_id", L::kMaxJobId, true);
    if (o.job_id.empty()) throw Failure{"job_id", "must not be empty"};
    o.tenant = tenant_of(f);
    o.attempt = static_cast<uint32_t>(f.uint("attempt", 1, UINT32_MAX, 0, true));
    if (given(f, "step")) o.step = static_cast<uint32_t>(f.uint("step", 0, L::kMaxSteps - 1, 0));
    const std::string stream = f.str("stream", 8, true);
    if (stream == "stdout") {
      o.stream = OutputStream::kStdout;
    } else if (stream == "stderr") {
      o.stream = OutputStream::kStderr;
    } else {
      throw Failure{"stream", "must be \"stdout\" or \"stderr\""};
    }
    o.offset = f.uint("offset", 0, L::kMaxOutputCap, 0, true);
    o.data = f.bytes("data", L::kMaxOutputChunk);
    if (o.data.empty()) throw Failure{"data", "must not be empty"};
    if (o.offset + o.data.size() > L::kMaxOutputCap) {
      throw Failure{"data", "ends past " + std::to_string(L::kMaxOutputCap) +
                                " bytes of the stream (offset + size), more than any output cap"};
    }
    return o;
  });
}

Decoded<JobRef> decode_job_ref(std::string_view bytes) {
  return guarded<JobRef>([&] {
    const detail::Unpacked h(bytes);
    Fields f(h.get(), "");
    JobRef r{f.str("job_id", L::kMaxJobId, true), tenant_of(f)};
    if (r.job_id.empty()) throw Failure{"job_id", "must not be empty"};
    // The rule of a JobRequest's job_id: an id no request can have is refused, not looked up.
    JobRequest probe;
    probe.job_id = r.job_id;
    probe.argv = {"x"};
    if (auto err = validate(probe); err && err->field == "job_id") {
      throw Failure{"job_id", err->reason};
    }
    return r;
  });
}

std::string peek_job_id(std::string_view bytes) {
  try {
    const detail::Unpacked h(bytes);
    if (h.get().type != msgpack::type::MAP) return {};
    Fields f(h.get(), "");
    std::string id = f.str("job_id", L::kMaxJobId, false);
    JobRequest probe;
    probe.job_id = id;
    probe.argv = {"x"};
    if (auto err = validate(probe); err && err->field == "job_id") return {};
    return id;
  } catch (...) {
    return {};
  }
}

}  // namespace paddock::schemas

namespace paddock::schemas {

std::optional<DispatchRef> peek_dispatch(std::string_view bytes) {
  using detail::Head;
  using Kind = Head::Kind;
  try {
    // Only a prefix is read: a body over the frame limit (which ZMQ_MAXMSGSIZE lets through by
    // 64 KiB) still names its job.
    detail::Scanner s(bytes.substr(0, std::min(bytes.size(), L::kMaxFrameBytes)));
    const Head top = s.next(1);
    if (top.kind != Kind::kMap) return std::nullopt;
    std::optional<uint32_t> attempt;
    std::optional<std::string> job_id;
    std::string tenant;  // written first by encode_job_dispatch, when there is one
    for (uint32_t e = 0; e < top.count && !(attempt && job_id); ++e) {
      const Head key = s.next(2);
      if (key.kind != Kind::kStr) return std::nullopt;
      const Head value = s.next(2);
      if (key.bytes == "tenant") {
        if (value.kind != Kind::kStr) {
          s.skip_rest(value, 2);
        } else if (valid_tenant(value.bytes)) {
          tenant = value.bytes;
        }
        continue;
      }
      if (key.bytes == "attempt") {
        if (value.kind != Kind::kUint || value.uint < 1 || value.uint > UINT32_MAX) {
          return std::nullopt;
        }
        attempt = static_cast<uint32_t>(value.uint);
        continue;
      }
      if (key.bytes != "request" || value.kind != Kind::kMap) {
        s.skip_rest(value, 2);
        continue;
      }
      for (uint32_t r = 0; r < value.count; ++r) {
        const Head k = s.next(3);
        if (k.kind != Kind::kStr) return std::nullopt;
        const Head v = s.next(3);
        if (k.bytes == "job_id" && v.kind == Kind::kStr && !job_id) {
          job_id = std::string(v.bytes);
          if (attempt) break;  // all it needs: what follows may be as broken as it likes
          continue;
        }
        s.skip_rest(v, 3);
      }
    }
    if (!attempt || !job_id) return std::nullopt;
    JobRequest probe;
    probe.job_id = *job_id;
    probe.argv = {"x"};
    if (auto err = validate(probe); err && err->field == "job_id") return std::nullopt;
    return DispatchRef{std::move(*job_id), *attempt, std::move(tenant)};
  } catch (...) {
    return std::nullopt;
  }
}

namespace {

// Every str in `o` valid UTF-8, every map's keys strings. Depth is bounded by Unpacked's limit.
void check_text(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::STR:
      if (!valid_utf8(std::string_view(o.via.str.ptr, o.via.str.size))) {
        throw Failure{"body", "a string is not valid UTF-8"};
      }
      return;
    case msgpack::type::ARRAY:
      for (uint32_t i = 0; i < o.via.array.size; ++i) check_text(o.via.array.ptr[i]);
      return;
    case msgpack::type::MAP:
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) throw Failure{"body", "map key is not a string"};
        check_text(kv.key);
        check_text(kv.val);
      }
      return;
    default:
      return;
  }
}

// Cuts `data` to `max` bytes, then to what is left of `budget`, and takes that from the budget.
// True if anything was cut.
bool cut(std::string& data, size_t max, size_t& budget) {
  const size_t keep = std::min({data.size(), max, budget});
  budget -= keep;
  if (keep == data.size()) return false;
  data.resize(keep);
  data.shrink_to_fit();
  return true;
}

}  // namespace

std::optional<DecodeError> check_any_map(std::string_view bytes) {
  auto checked = guarded<bool>([&] {
    const detail::Unpacked h(bytes);
    const Fields top(h.get(), "");  // a map, string keys, each once, valid UTF-8
    check_text(h.get());
    return true;
  });
  if (checked) return std::nullopt;
  return checked.error();
}

std::string utf8_prefix(std::string_view s, size_t max_bytes) {
  std::string out = valid_utf8(s) ? std::string(s.substr(0, std::min(s.size(), max_bytes + 3)))
                                  : repaired_utf8(s.substr(0, std::min(s.size(), max_bytes + 3)));
  if (!valid_utf8(out)) out = repaired_utf8(out);  // the first cut may have split a character
  if (out.size() <= max_bytes) return out;
  size_t end = max_bytes;
  // Back to the start of the character that crosses the limit (continuation bytes are 10xxxxxx).
  while (end > 0 && (static_cast<unsigned char>(out[end]) & 0xc0) == 0x80) --end;
  out.resize(end);
  return out;
}

namespace {
void fit_outcome(ExecOutcome& o, size_t cap, size_t& budget) {
  if (cut(o.stdout_data, cap, budget)) o.stdout_truncated = true;
  if (cut(o.stderr_data, cap, budget)) o.stderr_truncated = true;
  for (auto& f : o.files) {
    if (cut(f.data, cap, budget)) f.truncated = true;
  }
}
}  // namespace

void fit_result(JobResult& r, uint32_t output_cap) {
  size_t budget = L::kMaxResultData;
  fit_outcome(r, std::min<size_t>(output_cap, L::kMaxOutputCap), budget);
  for (auto& step : r.steps)
    fit_outcome(step, std::min<size_t>(output_cap, L::kMaxOutputCap), budget);
}

void fit_result(JobResult& r, const JobRequest& request) {
  size_t budget = L::kMaxResultData;
  fit_outcome(r, std::min<size_t>(request.output_cap, L::kMaxOutputCap), budget);
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const uint32_t cap =
        i < request.steps.size() ? request.steps[i].output_cap : request.output_cap;
    fit_outcome(r.steps[i], std::min<size_t>(cap, L::kMaxOutputCap), budget);
  }
}

}  // namespace paddock::schemas
