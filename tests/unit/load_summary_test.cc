// paddock-load's testable pieces (tools/load): job names, options and the job template, the
// tally and its JSON summary.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "load/job_names.h"
#include "load/options.h"
#include "load/tally.h"

namespace load = paddock::load;
namespace sc = paddock::schemas;

namespace {

// A JSON template file in /tmp, removed at the end of the test.
struct TemplateFile {
  explicit TemplateFile(const std::string& text) {
    char name[] = "/tmp/paddock-load-test-XXXXXX";
    const int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    close(fd);
    path = name;
    std::ofstream(path) << text;
  }
  ~TemplateFile() { std::remove(path.c_str()); }
  std::string path;
};

load::LoadOptions resolved(load::LoadOptions o) {
  load::resolve(o);
  return o;
}

}  // namespace

TEST_CASE("load job names: ids round-trip to their numbers, other ids are not ours") {
  load::JobNames names("load-ab12");
  CHECK(names.id(0) == "load-ab12-0");
  CHECK(names.number("load-ab12-0") == 0u);
  CHECK(names.number(names.id(18'446'744'073'709'551'615ULL)) == 18'446'744'073'709'551'615ULL);
  CHECK(names.number("load-ab12-") == std::nullopt);
  CHECK(names.number("load-ab12-007") == std::nullopt);
  CHECK(names.number("load-ab12-1x") == std::nullopt);
  CHECK(names.number("load-ab13-1") == std::nullopt);
  CHECK(names.number("load-ab12-99999999999999999999999") == std::nullopt);
  CHECK(names.number("") == std::nullopt);
}

TEST_CASE("load options: defaults are a closed loop of 100 and 1000 jobs, a fresh id prefix") {
  auto a = resolved({});
  auto b = resolved({});
  CHECK(a.concurrency == 100u);
  CHECK(!a.rate);
  CHECK(a.jobs == 1000u);
  CHECK(a.id_prefix.rfind("load-", 0) == 0);
  CHECK(a.id_prefix != b.id_prefix);

  load::LoadOptions open;
  open.rate = 250;
  open.duration_s = 2;
  CHECK(resolved(open).jobs == 500u);
  CHECK(!resolved(open).concurrency);

  load::LoadOptions timed;
  timed.duration_s = 5;
  CHECK(!resolved(timed).jobs);  // as many as fit in 5 s

  load::LoadOptions long_prefix;
  long_prefix.id_prefix = std::string(120, 'x');
  CHECK_THROWS_AS(load::resolve(long_prefix), load::UsageError);
}

TEST_CASE("load template from flags: argv defaults to true, fields are copied, limits checked") {
  auto o = resolved({});
  auto t = load::make_template(o);
  CHECK(t.argv == std::vector<std::string>{"true"});
  CHECK(t.job_id.empty());

  o.argv = {"echo", "hi"};
  o.priority = 7;
  o.timeout_ms = 1234;
  o.mem_mib = 256;
  t = load::make_template(o);
  CHECK(t.argv == std::vector<std::string>{"echo", "hi"});
  CHECK(t.priority == 7);
  CHECK(t.timeout_ms == 1234);
  CHECK(t.mem_mib == 256);

  o.mem_mib = 1;  // below the protocol's 64
  try {
    load::make_template(o);
    FAIL("expected a UsageError");
  } catch (const load::UsageError& e) {
    CHECK(e.message.find("mem_mib") != std::string::npos);
  }
}

TEST_CASE("load template from a JSON file: fields as in batch files, job_id refused") {
  TemplateFile good(
      R"({"argv": ["echo", "x"], "env": {"A": "1"}, "tags": {"t": "v"}, "priority": 3})");
  auto o = resolved({});
  o.template_file = good.path;
  auto t = load::make_template(o);
  CHECK(t.argv == std::vector<std::string>{"echo", "x"});
  CHECK(t.env.at("A") == "1");
  CHECK(t.tags.at("t") == "v");
  CHECK(t.priority == 3);

  TemplateFile with_id(R"({"job_id": "mine", "argv": ["true"]})");
  o.template_file = with_id.path;
  CHECK_THROWS_AS(load::make_template(o), load::UsageError);

  TemplateFile typo(R"({"argv": ["true"], "timeout": 5})");
  o.template_file = typo.path;
  try {
    load::make_template(o);
    FAIL("expected a UsageError");
  } catch (const load::UsageError& e) {
    CHECK(e.message.find("timeout") != std::string::npos);
    CHECK(e.message.find(typo.path) != std::string::npos);
  }

  o.template_file = "/nonexistent/paddock-load-template.json";
  try {
    load::make_template(o);
    FAIL("expected a UsageError");
  } catch (const load::UsageError& e) {
    CHECK(e.status == 66);
  }
}

TEST_CASE("load tally: answers by kind and the JSON summary's fields") {
  load::Tally t;
  sc::JobResult ok;
  ok.backend = "memory";
  ok.warm = true;
  t.add_result(ok, 1000);
  sc::JobResult failed = ok;
  failed.exit_code = 1;
  failed.warm = false;
  t.add_result(failed, 3000);
  sc::JobError e;
  e.code = 7;
  e.variant = "Unsupported";
  t.add_error(e, 2000);
  t.add_error(e, 2500);
  sc::JobError unnamed;
  unnamed.code = 9999;
  t.add_error(unnamed, 100);
  t.to_accepted.record(50);
  t.rejected = 4;

  load::RunInfo run;
  run.broker = "tcp://127.0.0.1:1";
  run.concurrency = 8;
  run.jobs = 6;
  run.elapsed_s = 2;
  run.complete = false;
  const auto j = load::summary_json(run, t);
  CHECK(j["mode"] == "closed");
  CHECK(j["concurrency"] == 8);
  CHECK(!j.contains("rate"));
  CHECK(j["jobs"] == 6);
  CHECK(j["answered"] == 5);
  CHECK(j["unanswered"] == 1);
  CHECK(j["complete"] == false);
  CHECK(j["ok"] == 2);
  CHECK(j["nonzero_exit"] == 1);
  CHECK(j["errors"] == 3);
  CHECK(j["errors_by_variant"]["Unsupported"] == 2);
  CHECK(j["errors_by_variant"]["code 9999"] == 1);
  CHECK(j["rejected"] == 4);
  CHECK(j["warm"] == 1);
  CHECK(j["cold"] == 1);
  CHECK(j["backends"]["memory"] == 2);
  CHECK(j["throughput_jobs_per_s"] == doctest::Approx(2.5));
  const auto& result = j["latency_us"]["submit_to_result"];
  CHECK(result["count"] == 5);
  CHECK(result["max"] == 3000);
  CHECK(result["p50"] == 2000);
  for (const char* key : {"p50", "p90", "p99", "p999", "max", "mean", "count"}) {
    CHECK(result.contains(key));
    CHECK(j["latency_us"]["submit_to_accepted"].contains(key));
  }
  CHECK(j["latency_us"]["submit_to_accepted"]["count"] == 1);

  run.concurrency.reset();
  run.rate = 500;
  const auto open = load::summary_json(run, t);
  CHECK(open["mode"] == "open");
  CHECK(open["rate"] == 500.0);
  CHECK(open["latency_from"] == "scheduled_send");

  const std::string text = load::summary_text(run, t);
  CHECK(text.find("Unsupported: 2") != std::string::npos);
  CHECK(text.find("test double") != std::string::npos);
  CHECK(text.find("INCOMPLETE") != std::string::npos);
}
