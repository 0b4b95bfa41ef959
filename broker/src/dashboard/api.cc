#include "dashboard/api.h"

#include <algorithm>
#include <charconv>
#include <mutex>

#include "dashboard/assets.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "tenancy.h"

namespace paddock::broker::dashboard {

namespace sc = paddock::schemas;
namespace m = paddock::metrics;

namespace {

// Microseconds as milliseconds with three decimals.
double ms(uint64_t us) { return static_cast<double>(us) / 1000.0; }

Json timings_json(const sc::Timings& t) {
  return {{"queued_ms", ms(t.queued_us)},
          {"start_ms", ms(t.start_us)},
          {"exec_ms", ms(t.exec_us)},
          {"teardown_ms", ms(t.teardown_us)},
          {"total_ms", ms(t.total_us)}};
}

// What the jobs list shows of a job; job_json() adds the rest.
Json summary_json(const JobRecord& r) {
  // r.job_id is the job's key (tenancy.h): shown as the submitter's job_id and its tenant.
  Json j = {{"job_id", std::string(key_job_id(r.job_id))},
            {"tenant", std::string(key_tenant(r.job_id))},
            {"key", r.job_id},
            {"status", status_name(r.status)},
            {"image", r.request.image},
            {"argv", r.request.argv},
            {"priority", r.request.priority},
            {"attempts", r.attempts.size()},
            {"worker_id", r.attempts.empty() ? "" : r.attempts.back().worker_id},
            {"accepted_unix_ms", r.accepted_unix_ms},
            {"finished_unix_ms", r.finished_unix_ms},
            {"latency_ms", r.finished_unix_ms ? Json(ms(r.latency_us)) : Json(nullptr)},
            {"exit_code", nullptr},
            {"variant", nullptr},
            {"code", nullptr},
            {"warm", nullptr},
            {"backend", nullptr},
            {"timings", nullptr}};
  if (r.result) {
    j["exit_code"] = r.result->exit_code;
    j["warm"] = r.result->warm;
    j["backend"] = r.result->backend;
    j["timings"] = timings_json(r.result->timings);
    if (!r.result->worker_id.empty()) j["worker_id"] = r.result->worker_id;
  }
  if (r.error) {
    j["variant"] = r.error->variant;
    j["code"] = r.error->code;
    if (!r.error->worker_id.empty()) j["worker_id"] = r.error->worker_id;
  }
  return j;
}

Json request_json(const RequestSummary& q) {
  return {{"image", q.image},
          {"argv", q.argv},
          {"argv_truncated", q.argv_truncated},
          {"env_names", q.env_names},
          {"steps", q.steps},
          {"stdin_bytes", q.stdin_bytes},
          {"files_in", q.files_in},
          {"files_out", q.files_out},
          {"egress_rules", q.egress_rules},
          {"tags", q.tags},
          {"vcpus", q.vcpus},
          {"mem_mib", q.mem_mib},
          {"timeout_ms", q.timeout_ms},
          {"priority", q.priority},
          {"deadline_unix_ms", q.deadline_unix_ms}};
}

Json result_json(const JobRecord& r) {
  const sc::JobResult& x = *r.result;
  Json files = Json::array();
  for (const auto& f : x.files) files.push_back({{"path", f.path}, {"truncated", f.truncated}});
  Json steps = Json::array();
  for (const auto& st : x.steps) {
    steps.push_back({{"exit_code", st.exit_code},
                     {"signal", st.signal},
                     {"timed_out", st.timed_out},
                     {"oom_killed", st.oom_killed},
                     {"stdout_head", st.stdout_data},
                     {"stdout_more", st.stdout_truncated},
                     {"stderr_head", st.stderr_data},
                     {"stderr_more", st.stderr_truncated},
                     {"exec_ms", ms(st.exec_us)}});
  }
  return {{"exit_code", x.exit_code},
          {"signal", x.signal},
          {"timed_out", x.timed_out},
          {"oom_killed", x.oom_killed},
          {"stdout_head", x.stdout_data},
          {"stdout_bytes", r.stdout_bytes},
          {"stdout_truncated", x.stdout_truncated},
          {"stderr_head", x.stderr_data},
          {"stderr_bytes", r.stderr_bytes},
          {"stderr_truncated", x.stderr_truncated},
          {"files", files},
          {"timings", timings_json(x.timings)},
          {"usage",
           {{"cpu_ms", ms(x.usage.cpu_us)},
            {"peak_memory_kib", x.usage.peak_memory_kib},
            {"bytes_in", x.usage.bytes_in},
            {"bytes_out", x.usage.bytes_out},
            {"egress_blocked", x.usage.egress_blocked}}},
          {"worker_id", x.worker_id},
          {"attempt", x.attempt},
          {"warm", x.warm},
          {"backend", x.backend},
          {"template", x.template_vm},
          {"steps", steps}};
}

Json error_json(const sc::JobError& e) {
  Json j = {{"variant", e.variant},     {"code", e.code},           {"message", e.message},
            {"retryable", e.retryable}, {"worker_id", e.worker_id}, {"attempt", e.attempt}};
  if (e.vm_id) j["vm_id"] = *e.vm_id;
  if (e.snapshot_id) j["snapshot_id"] = *e.snapshot_id;
  if (e.from) j["from"] = *e.from;
  if (e.to) j["to"] = *e.to;
  return j;
}

m::HttpResponse json_response(int status, const Json& body) {
  m::HttpResponse r{
      status, "application/json", body.dump(-1, ' ', false, Json::error_handler_t::replace), {}};
  r.body += '\n';
  r.headers = {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}};
  return r;
}

m::HttpResponse json_error(int status, const std::string& message) {
  return json_response(status, {{"error", message}});
}

m::HttpResponse redirect(const std::string& to) {
  m::HttpResponse r{302, "text/plain; charset=utf-8", "see " + to + "\n", {{"Location", to}}};
  return r;
}

// The HTML pages and the API answer a refusal each in their own way.
m::HttpResponse refusal(Access::Verdict v, bool api) {
  if (v == Access::Verdict::kNotServed) {
    const std::string why =
        "the dashboard is not served on this address: it is not loopback and the broker has no "
        "operator token (--dashboard-token-file)";
    return api ? json_error(403, why)
               : m::HttpResponse{403, "text/plain; charset=utf-8", why + "\n", {}};
  }
  const std::string why =
      "this dashboard needs the operator token: send 'Authorization: Bearer TOKEN', or open "
      "/login?token=TOKEN once in a browser";
  auto r = api ? json_error(401, why)
               : m::HttpResponse{401, "text/plain; charset=utf-8", why + "\n", {}};
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"paddock\"");
  return r;
}

// An embedded asset of the dashboard's pages.
m::HttpResponse page(const std::string& name) {
  const Asset* a = find_asset(name);
  if (a == nullptr) return m::HttpResponse{404, "text/plain; charset=utf-8", "no such page\n", {}};
  return m::HttpResponse{200,
                         std::string(a->content_type),
                         std::string(a->body),
                         {{"X-Content-Type-Options", "nosniff"},
                          {"X-Frame-Options", "DENY"},
                          {"Cache-Control", "no-cache"},
                          {"Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}}};
}

// Wraps a handler in the access check.
m::HttpHandler guarded(const Access& access, bool api, m::HttpHandler handler) {
  return [&access, api, handler = std::move(handler)](const m::HttpRequest& req) {
    const auto verdict = access.check(req);
    if (verdict != Access::Verdict::kAllowed) return refusal(verdict, api);
    return handler(req);
  };
}

base::Expected<size_t> limit_param(const m::HttpRequest& req) {
  auto it = req.params.find("limit");
  if (it == req.params.end()) return kDefaultJobsLimit;
  size_t n = 0;
  const auto& v = it->second;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size()) {
    return base::fail("limit must be a whole number");
  }
  return n;
}

// The broker's store, read-only on a connection of its own, opened at the first lookup (the
// broker has created it by then) and again after it broke (the shared queue's server restarted).
// SQLite's WAL lets the journal be read while the loop writes; PostgreSQL reads committed rows.
class StoreReader {
 public:
  explicit StoreReader(StoreLookup lookup) : lookup_(std::move(lookup)) {}
  bool enabled() const { return static_cast<bool>(lookup_.open); }
  const std::string& source() const { return lookup_.source; }
  // The job's stored row (nullopt: none), or why the store could not be read.
  base::Expected<std::optional<Store::Stored>> lookup(const std::string& job_id) {
    std::lock_guard lock(mu_);
    if (store_ && !store_->healthy()) store_.reset();
    if (!store_) {
      auto opened = lookup_.open();
      if (!opened) return std::move(opened).error();
      store_ = std::move(opened).value();
    }
    auto stored = store_->stored(job_id);
    if (!stored && !store_->healthy()) {
      store_.reset();
      return base::fail("the " + lookup_.source + " could not be read");
    }
    return stored;
  }

 private:
  StoreLookup lookup_;
  std::mutex mu_;
  std::unique_ptr<Store> store_;
};

}  // namespace

Json overview_json(const Snapshot& s) {
  const Stats& t = s.totals;
  Json by_priority = Json::array();
  // Higher priorities first, as they are dispatched.
  for (auto it = s.queued_by_priority.rbegin(); it != s.queued_by_priority.rend(); ++it) {
    by_priority.push_back({{"priority", it->first}, {"queued", it->second}});
  }
  Json tenants = Json::array();
  for (const auto& t : s.tenants) {
    tenants.push_back({{"tenant", t.tenant},
                       {"queued", t.queued},
                       {"running", t.running},
                       {"completed", t.completed},
                       {"failed", t.failed}});
  }
  Json errors = Json::array();
  for (const auto& e : s.errors) {
    errors.push_back({{"variant", e.variant},
                      {"code", e.code == ErrorCount::kOther ? Json("other") : Json(e.code)},
                      {"count", e.count}});
  }
  // Rates over the last complete seconds (the current one is still filling).
  constexpr size_t kRateSeconds = 10;
  uint64_t acc = 0, done = 0, failed = 0;
  for (size_t i = 1; i <= kRateSeconds && i < s.series.size(); ++i) {
    const auto& p = s.series[s.series.size() - 1 - i];
    acc += p.accepted;
    done += p.completed;
    failed += p.failed;
  }
  Json points = Json::array();
  for (const auto& p : s.series) {
    points.push_back({{"t", p.unix_s},
                      {"accepted", p.accepted},
                      {"completed", p.completed},
                      {"failed", p.failed},
                      {"p50_ms", ms(p.p50_us)},
                      {"p99_ms", ms(p.p99_us)}});
  }
  size_t busy = 0, free = 0;
  for (const auto& w : s.workers) {
    busy += w.busy;
    free += w.free;
  }
  const double secs = static_cast<double>(kRateSeconds);
  return {
      {"api_version", kApiVersion},
      {"generated_unix_ms", s.generated_unix_ms},
      {"started_unix_ms", s.started_unix_ms},
      {"journal", s.journal},
      {"totals",
       {{"accepted", t.accepted},
        {"completed", t.results},
        {"failed", t.errors},
        {"rejected", t.rejected},
        {"invalid", t.invalid},
        {"retried", t.retried},
        {"requeued", t.requeued},
        {"recovered", t.recovered},
        {"undeliverable", t.undeliverable}}},
      {"rates",
       {{"window_s", kRateSeconds},
        {"accepted_per_s", static_cast<double>(acc) / secs},
        {"completed_per_s", static_cast<double>(done) / secs},
        {"failed_per_s", static_cast<double>(failed) / secs}}},
      {"queue",
       {{"held", s.held},
        {"queued", s.queued},
        {"running", s.running},
        {"waiting_retry", s.waiting_retry},
        {"by_priority", by_priority},
        {"by_tenant", tenants}}},
      {"latency",
       {{"window_s", TimeSeries::kSeconds},
        {"jobs", s.window_count},
        {"p50_ms", ms(s.window_p50_us)},
        {"p99_ms", ms(s.window_p99_us)}}},
      {"errors", errors},
      {"workers", {{"connected", s.workers.size()}, {"slots_busy", busy}, {"slots_free", free}}},
      {"series", {{"interval_s", 1}, {"points", points}}}};
}

Json workers_json(const Snapshot& s) {
  Json workers = Json::array();
  for (const auto& w : s.workers) {
    Json pools = nullptr;  // the worker has not reported its pools
    if (w.warm_pools) {
      pools = Json::array();
      for (const auto& p : *w.warm_pools) {
        pools.push_back({{"template", p.template_name}, {"ready", p.ready}, {"target", p.target}});
      }
    }
    workers.push_back({{"worker_id", w.worker_id},
                       {"host", w.host},
                       {"hostname", w.hostname},
                       {"backend", w.backend},
                       {"images", w.images},
                       {"slots",
                        {{"busy", w.busy},
                         {"free", w.free},
                         {"total", w.busy + w.free},
                         {"ready", w.ready_slots}}},
                       {"capacity",
                        {{"vcpus", w.capacity_vcpus == 0 ? Json() : Json(w.capacity_vcpus)},
                         {"mem_mib", w.capacity_mem_mib == 0 ? Json() : Json(w.capacity_mem_mib)},
                         {"used_vcpus", w.used_vcpus},
                         {"used_mem_mib", w.used_mem_mib}}},
                       {"draining", w.draining},
                       {"connected_unix_ms", w.connected_unix_ms},
                       {"last_heard_unix_ms", w.last_heard_unix_ms},
                       {"last_heard_ms_ago", s.generated_unix_ms > w.last_heard_unix_ms
                                                 ? s.generated_unix_ms - w.last_heard_unix_ms
                                                 : 0},
                       {"jobs_answered", w.jobs_answered},
                       {"warm_pools", std::move(pools)}});
  }
  return {{"api_version", kApiVersion},
          {"generated_unix_ms", s.generated_unix_ms},
          {"workers", workers}};
}

Json jobs_json(const Snapshot& s, size_t limit, const std::string& status) {
  Json jobs = Json::array();
  for (const auto& r : s.recent) {
    if (jobs.size() >= limit) break;
    if (!status.empty() && status != status_name(r->status)) continue;
    jobs.push_back(summary_json(*r));
  }
  Json running = Json::array();
  for (const auto& r : s.running_jobs) {
    if (running.size() >= limit) break;
    running.push_back(summary_json(*r));
  }
  return {{"api_version", kApiVersion},
          {"generated_unix_ms", s.generated_unix_ms},
          {"capacity", s.recent_capacity},
          {"held", s.recent.size()},
          {"jobs", jobs},
          {"running_total", s.running},
          {"running", running}};
}

Json job_json(const JobRecord& r, const char* source) {
  Json j = summary_json(r);
  j["source"] = source;
  j["recovered"] = r.recovered;
  j["request"] = request_json(r.request);
  j["result"] = r.result ? result_json(r) : Json(nullptr);
  j["error"] = r.error ? error_json(*r.error) : Json(nullptr);
  Json attempts = Json::array();
  for (const auto& a : r.attempts) {
    attempts.push_back({{"attempt", a.attempt},
                        {"worker_id", a.worker_id},
                        {"dispatched_unix_ms", a.dispatched_unix_ms},
                        {"outcome", a.outcome},
                        {"detail", a.detail}});
  }
  j["attempts"] = attempts;
  return j;
}

std::optional<JobRecord> record_from_store(const std::string& job_id, const Store::Stored& stored) {
  auto request = sc::decode_job_request(stored.request);
  if (!request) return std::nullopt;
  JobRecord r;
  r.job_id = job_id;
  r.status = JobRecord::Status::kHeld;
  r.request = RequestSummary::of(*request);
  r.accepted_unix_ms = stored.accepted_unix_ms;
  if (stored.answer) {
    r.finished_unix_ms = stored.finished_unix_ms;
    const auto command = static_cast<sc::Command>(stored.answer->command);
    if (command == sc::Command::kResult) {
      if (auto res = sc::decode_job_result(stored.answer->body)) r.set_result(*res);
    } else if (command == sc::Command::kError) {
      if (auto err = sc::decode_job_error(stored.answer->body)) r.set_error(*err);
    }
  }
  return r;
}

void serve_dashboard(m::HttpServer& server, const SnapshotBox& box, const Access& access,
                     StoreLookup lookup, std::string local_tenant) {
  auto store = std::make_shared<StoreReader>(std::move(lookup));
  server.get("/",
             guarded(access, false, [](const m::HttpRequest&) { return redirect("/dashboard/"); }));
  server.get("/dashboard",
             guarded(access, false, [](const m::HttpRequest&) { return redirect("/dashboard/"); }));
  server.get_prefix("/dashboard/", guarded(access, false, [](const m::HttpRequest& req) {
                      return page(req.path.substr(std::string("/dashboard/").size()));
                    }));
  server.get("/dashboard/",
             guarded(access, false, [](const m::HttpRequest&) { return page("index.html"); }));
  // Not guarded by a token (it is how a browser gets one), but never where the dashboard is not
  // served.
  server.get("/login", [&access](const m::HttpRequest& req) {
    if (!access.served()) return refusal(Access::Verdict::kNotServed, false);
    if (!access.token_required()) return redirect("/dashboard/");
    auto it = req.params.find("token");
    if (it == req.params.end() || !access.token_matches(it->second)) {
      return refusal(Access::Verdict::kNeedsToken, false);
    }
    auto r = redirect("/dashboard/");
    r.headers.emplace_back("Set-Cookie", std::string(Access::kCookie) + "=" + it->second +
                                             "; Path=/; HttpOnly; SameSite=Strict");
    return r;
  });
  server.get("/api/v1/overview", guarded(access, true, [&box](const m::HttpRequest&) {
               return json_response(200, overview_json(*box.get()));
             }));
  server.get("/api/v1/workers", guarded(access, true, [&box](const m::HttpRequest&) {
               return json_response(200, workers_json(*box.get()));
             }));
  server.get("/api/v1/jobs", guarded(access, true, [&box](const m::HttpRequest& req) {
               const auto limit = limit_param(req);
               if (!limit) return json_error(400, limit.error().message);
               auto it = req.params.find("status");
               const std::string status = it == req.params.end() ? "" : it->second;
               return json_response(200, jobs_json(*box.get(), *limit, status));
             }));
  server.get_prefix(
      "/api/v1/jobs/",
      guarded(access, true, [&box, store, local_tenant](const m::HttpRequest& req) {
        std::string id = req.path.substr(std::string("/api/v1/jobs/").size());
        if (id.find('/') == std::string::npos) id = job_key(local_tenant, id);
        const auto snapshot = box.get();
        if (auto r = snapshot->find(id)) {
          return json_response(
              200, job_json(*r, r->status == JobRecord::Status::kRunning ? "running" : "recent"));
        }
        if (store->enabled()) {
          const auto stored = store->lookup(id);
          if (!stored) return json_error(503, "job lookup: " + stored.error().message);
          if (*stored) {
            if (auto r = record_from_store(id, **stored)) {
              return json_response(200, job_json(*r, store->source().c_str()));
            }
          }
        }
        return json_error(404, "job '" + id + "' is not among the " +
                                   std::to_string(snapshot->recent.size()) +
                                   " recent or the running jobs" +
                                   (store->enabled() ? " nor in the " + store->source()
                                                     : std::string(" (no journal)")));
      }));
}

}  // namespace paddock::broker::dashboard
