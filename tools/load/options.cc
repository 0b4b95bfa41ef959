#include "load/options.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "exit_codes.h"
#include "job_id.h"
#include "job_json.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/limits.h"

namespace paddock::load {
namespace {

namespace sc = paddock::schemas;
namespace exit_code = paddock::cli::exit_code;

constexpr uint32_t kDefaultConcurrency = 100;
constexpr uint64_t kDefaultJobs = 1000;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError{"cannot read --template '" + path + "'", exit_code::kNoInput};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

sc::JobRequest from_file(const std::string& path) {
  auto parsed = cli::job_from_json_text(read_file(path));
  if (!parsed) throw UsageError{path + ": " + parsed.error().message(), exit_code::kUsage};
  if (!parsed->job_id.empty()) {
    throw UsageError{
        path + ": job_id: paddock-load names every job itself (<prefix>-<n>); leave it out",
        exit_code::kUsage};
  }
  return std::move(parsed).value();
}

sc::JobRequest from_flags(const LoadOptions& o) {
  sc::JobRequest r;
  r.argv = o.argv;
  r.image = o.image;
  r.vcpus = o.vcpus;
  r.mem_mib = o.mem_mib;
  r.timeout_ms = o.timeout_ms;
  r.output_cap = o.output_cap;
  r.priority = o.priority;
  r.stdin_data = o.stdin_data;
  r.stream = o.stream;
  return r;
}

}  // namespace

void add_load_options(CLI::App& app, LoadOptions& o) {
  app.add_option("--broker,-b", o.broker, "the broker's client endpoint")
      ->envname("PADDOCK_BROKER")
      ->capture_default_str();
  cli::add_curve_options(app, o.curve);

  app.add_option("--jobs,-n", o.jobs, "jobs to run in all (default 1000)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000'000}));
  app.add_option("--duration", o.duration_s,
                 "stop sending new jobs after this many seconds (and wait for the answers); with "
                 "--rate and no --jobs, runs rate x duration jobs")
      ->check(CLI::PositiveNumber);

  auto* conc = app.add_option("--concurrency,-c", o.concurrency,
                              "closed loop: keep this many jobs outstanding, sending one as "
                              "another is answered (default 100)")
                   ->check(CLI::Range(uint32_t{1}, uint32_t{10'000'000}));
  auto* rate = app.add_option("--rate,-r", o.rate,
                              "open loop: send this many jobs per second, each at its scheduled "
                              "time (start + n / rate) whatever the answers; latencies are then "
                              "measured from that scheduled time, not from when the job actually "
                              "went out, so a submitter or broker that falls behind shows as "
                              "latency (no coordinated omission)")
                   ->check(CLI::PositiveNumber);
  conc->excludes(rate);

  auto* tmpl = app.add_option("--template,-t", o.template_file,
                              "the job as one JSON object with PROTOCOL.md's JobRequest fields "
                              "(as in `paddock batch` files; env, tags, files, egress...), without "
                              "job_id")
                   ->check(CLI::ExistingFile);
  std::vector<CLI::Option*> job_flags = {
      app.add_option("--image", o.image, "the job's image")->capture_default_str(),
      app.add_option("--vcpus", o.vcpus, "vCPUs per job")->capture_default_str(),
      app.add_option("--mem-mib", o.mem_mib, "guest memory per job, MiB")->capture_default_str(),
      app.add_option("--timeout-ms", o.timeout_ms, "each job's own timeout")->capture_default_str(),
      app.add_option("--output-cap", o.output_cap, "bytes kept per output stream")
          ->capture_default_str(),
      app.add_option("--priority", o.priority, "job priority, -100..100")->capture_default_str(),
      app.add_option("--stdin", o.stdin_data, "bytes given to each job on stdin"),
      app.add_flag("--stream", o.stream,
                   "ask for each job's output live (OUTPUT chunks, counted in the summary)"),
      app.add_option("command", o.argv,
                     "the job's argv, after `--` (e.g. -- echo hi); default: true"),
  };
  for (auto* f : job_flags) tmpl->excludes(f);

  app.add_option("--id-prefix", o.id_prefix,
                 "job ids are <prefix>-<n>, n from 0 (default load-<8 random hex digits>, new "
                 "each run, so that a broker's journal never takes a job for an earlier one)");
  app.add_option("--timeout-s", o.timeout_s,
                 "give up (exit 69) when jobs are outstanding and none has been answered for this "
                 "long, or the broker answers nothing at all, not even PING, for this long (at "
                 "least 3 s)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", o.json, "print the summary as one JSON object on stdout instead of text");
  app.add_option("--json-out", o.json_out, "also write the summary's JSON object to this file");
}

void resolve(LoadOptions& o) {
  if (!o.concurrency && !o.rate) o.concurrency = kDefaultConcurrency;
  if (!o.jobs) {
    if (o.rate && o.duration_s) {
      o.jobs = static_cast<uint64_t>(std::ceil(*o.rate * *o.duration_s));
    } else if (!o.duration_s) {
      o.jobs = kDefaultJobs;
    }
  }
  if (o.jobs && *o.jobs == 0)
    throw UsageError{"--rate x --duration is less than one job", exit_code::kUsage};
  if (o.id_prefix.empty()) o.id_prefix = "load-" + cli::random_hex(8);
  // "<prefix>-<n>" must stay within the protocol's job_id length for every n we may use.
  if (o.id_prefix.size() + 1 + 20 > sc::limits::kMaxJobId) {
    throw UsageError{
        "--id-prefix: at most " + std::to_string(sc::limits::kMaxJobId - 21) + " characters",
        exit_code::kUsage};
  }
}

sc::JobRequest make_template(const LoadOptions& o) {
  sc::JobRequest r = o.template_file.empty() ? from_flags(o) : from_file(o.template_file);
  if (r.argv.empty() && o.template_file.empty()) r.argv = {"true"};
  sc::JobRequest probe = r;
  probe.job_id = o.id_prefix + "-0";
  if (auto err = sc::validate(probe)) {
    const std::string where = o.template_file.empty() ? "job template" : o.template_file;
    throw UsageError{where + ": " + err->message(), exit_code::kUsage};
  }
  return r;
}

}  // namespace paddock::load
