// Unit tests of the paddock CLI's pieces that need no broker: JSON <-> jobs, batch file reading,
// text helpers and the exit statuses.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <sstream>

#include "batch_reader.h"
#include "exit_codes.h"
#include "job_json.h"
#include "outcome.h"
#include "text.h"

namespace cli = paddock::cli;
namespace sc = paddock::schemas;

TEST_CASE("a minimal line gives the protocol's defaults") {
  auto p = cli::job_from_json_text(R"({"argv": ["echo", "hi"]})");
  REQUIRE(p.ok());
  CHECK(p->argv == std::vector<std::string>{"echo", "hi"});
  CHECK(p->job_id.empty());
  sc::JobRequest defaults;
  defaults.argv = p->argv;
  CHECK(*p == defaults);
}

TEST_CASE("every field is read") {
  auto p = cli::job_from_json_text(R"({
    "job_id": "j-1", "image": "py", "argv": ["cat"], "env": {"A": "1"}, "stdin": "in",
    "files": [{"path": "a/b.txt", "mode": 420, "data": {"base64": "AAE="}}], "files_out": ["out"],
    "vcpus": 2, "mem_mib": 256, "timeout_ms": 500, "output_cap": 10, "priority": -5,
    "deadline_ms": 1700000000000, "tags": {"team": "x"},
    "egress": [{"cidr": "10.0.0.0/8", "protocol": "udp", "ports": [53, {"first": 1000, "last": 2000}, {"first": 7}]}]})");
  REQUIRE_MESSAGE(p.ok(), p.error().message());
  const auto& j = *p;
  CHECK(j.job_id == "j-1");
  CHECK(j.image == "py");
  CHECK(j.env.at("A") == "1");
  CHECK(j.stdin_data == "in");
  REQUIRE(j.files.size() == 1);
  CHECK(j.files[0].data == std::string("\0\1", 2));
  CHECK(j.files[0].mode == 420);
  CHECK(j.files_out == std::vector<std::string>{"out"});
  CHECK(j.vcpus == 2);
  CHECK(j.mem_mib == 256);
  CHECK(j.timeout_ms == 500);
  CHECK(j.output_cap == 10);
  CHECK(j.priority == -5);
  CHECK(j.deadline_ms == 1700000000000ull);
  CHECK(j.tags.at("team") == "x");
  REQUIRE(j.egress.size() == 1);
  CHECK(j.egress[0].protocol == "udp");
  CHECK(j.egress[0].ports == std::vector<sc::PortRange>{{53, 53}, {1000, 2000}, {7, 7}});
}

TEST_CASE("errors name the field") {
  struct Case {
    const char* line;
    const char* field;
  };
  const Case cases[] = {
      {R"({"image": "x"})", "argv"},
      {R"({"argv": "echo"})", "argv"},
      {R"({"argv": ["echo", 3]})", "argv[1]"},
      {R"({"argv": ["x"], "timeout": 5})", "timeout"},
      {R"({"argv": ["x"], "vcpus": -1})", "vcpus"},
      {R"({"argv": ["x"], "vcpus": 1.5})", "vcpus"},
      {R"({"argv": ["x"], "priority": 3000000000})", "priority"},
      {R"({"argv": ["x"], "env": {"A": 1}})", "env.A"},
      {R"({"argv": ["x"], "stdin": {"base64": "***"}})", "stdin.base64"},
      {R"({"argv": ["x"], "stdin": {"hex": "00"}})", "stdin"},
      {R"({"argv": ["x"], "egress": [{"cidr": "1.2.3.4", "ports": [{"last": 3}]}]})",
       "egress[0].ports[0].first"},
      {R"({"argv": ["x"], "egress": [{"protocol": "tcp"}]})", "egress[0].cidr"},
      {R"({"argv": ["x"], "files": [{"path": "a", "owner": "me"}]})", "files[0].owner"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.line);
    auto p = cli::job_from_json_text(c.line);
    CHECK_FALSE(p.ok());
    CHECK(p.error().field == c.field);
    CHECK_FALSE(p.error().reason.empty());
  }
}

TEST_CASE("null means absent, and bad JSON is reported as such") {
  auto p = cli::job_from_json_text(R"({"argv": ["x"], "env": null, "job_id": null})");
  REQUIRE(p.ok());
  CHECK(p->job_id.empty());
  auto bad = cli::job_from_json_text("{argv: 1}");
  CHECK_FALSE(bad.ok());
  CHECK(bad.error().field.empty());
  CHECK(bad.error().reason.find("not valid JSON") == 0);
  CHECK(cli::job_from_json_text("[1, 2]").error().reason.find("expected a JSON object") == 0);
  // A number too large for a double is an error too, not an exception (found by fuzz_batch_jobs).
  auto huge = cli::job_from_json_text(R"({"argv": ["x"], "priority": 1e999})");
  CHECK_FALSE(huge.ok());
  CHECK(huge.error().reason.find("not valid JSON") == 0);
}

TEST_CASE("job_to_json and job_from_json are inverses, binary stdin included") {
  sc::JobRequest r;
  r.job_id = "round-trip";
  r.argv = {"cat", "\xc3\xa9t\xc3\xa9"};
  r.stdin_data = std::string("\xff\x00\x01 binary", 10);
  r.env = {{"K", "V"}};
  r.files = {{"dir/f", 0755, "data"}};
  r.egress = {{"192.168.0.0/16", "tcp", {{80, 80}, {8000, 8100}}}};
  r.priority = 7;
  r.tags = {{"t", "v"}};
  const auto j = cli::job_to_json(r);
  CHECK(j["stdin"].is_object());  // not UTF-8: base64
  auto back = cli::job_from_json_text(cli::dump_line(j));
  REQUIRE_MESSAGE(back.ok(), back.error().message());
  CHECK(*back == r);
}

TEST_CASE("results and errors as JSON lines") {
  sc::JobResult r;
  r.job_id = "a";
  r.exit_code = 3;
  r.stdout_data = "out\n";
  r.stderr_data = std::string("\x80", 1);
  r.backend = "memory";
  r.timings.total_us = 42;
  const auto j = cli::result_to_json(r);
  CHECK(j["status"] == "ok");
  CHECK(j["exit_code"] == 3);
  CHECK(j["stdout"] == "out\n");
  CHECK(j["stderr"]["base64"] == "gA==");
  CHECK(j["timings"]["total_us"] == 42);
  CHECK(j["backend"] == "memory");
  CHECK(j["warm"] == false);
  CHECK(j["template"] == "");
  CHECK(j.begin().key() == "job_id");
  r.warm = true;
  r.template_vm = "tpl-default-1x128-1700000000000";
  CHECK(cli::result_to_json(r)["warm"] == true);
  CHECK(cli::result_to_json(r)["template"] == "tpl-default-1x128-1700000000000");
  CHECK(j["oom_killed"] == false);
  r.oom_killed = true;
  CHECK(cli::result_to_json(r)["oom_killed"] == true);

  sc::JobError e;
  e.job_id = "b";
  e.code = 3;
  e.message = "invalid vm transition";
  e.from = "running";
  e.to = "created";
  const auto k = cli::error_to_json(e);
  CHECK(k["status"] == "error");
  CHECK(k["variant"] == "InvalidTransition");  // filled in from the code when absent
  CHECK(k["code"] == 3);
  CHECK(k["from"] == "running");
  CHECK_FALSE(k.contains("vm_id"));
}

TEST_CASE("base64 and UTF-8") {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    CHECK(cli::base64_decode(cli::base64_encode(s)) == s);
  }
  CHECK(cli::base64_encode("foobar") == "Zm9vYmFy");
  CHECK(cli::base64_encode("fo") == "Zm8=");
  CHECK_FALSE(cli::base64_decode("Zm8"));
  CHECK_FALSE(cli::base64_decode("Z=m8"));
  CHECK_FALSE(cli::base64_decode("Zm 8"));
  CHECK(cli::is_valid_utf8("h\xc3\xa9llo"));
  CHECK_FALSE(cli::is_valid_utf8("\xc3"));
  CHECK_FALSE(cli::is_valid_utf8("\xed\xa0\x80"));  // a surrogate
  CHECK_FALSE(cli::is_valid_utf8("\xc0\xaf"));      // overlong
}

TEST_CASE("previews and durations") {
  CHECK(cli::first_line_preview("hello\nworld\n", 40) == "hello ...");
  CHECK(cli::first_line_preview("hello\n", 40) == "hello");
  CHECK(cli::first_line_preview("a\tb", 40) == "a\\x09b");
  CHECK(cli::first_line_preview("abcdefgh", 4) == "abcd...");
  CHECK(cli::first_line_preview("\xc3\xa9\xc3\xa9\xc3\xa9", 5) == "\xc3\xa9\xc3\xa9...");
  CHECK(cli::format_duration_us(850) == "850us");
  CHECK(cli::format_duration_us(12'300) == "12.3ms");
  CHECK(cli::format_duration_us(4'560'000) == "4.56s");
  CHECK(cli::format_duration_us(125'000'000) == "2m05s");
}

TEST_CASE("exit statuses of results") {
  sc::JobResult r;
  r.exit_code = 7;
  CHECK(cli::exit_status_of(r) == 7);
  r.signal = 9;
  CHECK(cli::exit_status_of(r) == 137);
  r.timed_out = true;
  CHECK(cli::exit_status_of(r) == cli::exit_code::kTimedOut);
  sc::JobResult big;
  big.exit_code = 300;
  CHECK(cli::exit_status_of(big) == 255);
  sc::JobError e;
  e.code = 11;
  e.variant = "Jailer";
  e.message = "jailer error: x";
  CHECK(cli::describe_error(e) == "Jailer (code 11): jailer error: x");
  // An ERROR without its variant's name is named from its code (schemas/codes.h's tables).
  e.variant.clear();
  CHECK(cli::variant_of(e) == "Jailer");
  for (const auto& [code, name] :
       std::vector<std::pair<uint32_t, std::string>>{{1, "VmAlreadyExists"},
                                                     {13, "NetworkSetup"},
                                                     {14, "GuestAgent"},
                                                     {50, "Unknown"},
                                                     {105, "UnknownJob"},
                                                     {999, "Unknown"}}) {
    e.code = code;
    CHECK(cli::variant_of(e) == name);
  }
}

TEST_CASE("outcomes of results in words: exit, timeout, guest OOM, signal") {
  sc::JobResult r;
  r.exit_code = 3;
  CHECK(cli::describe_result(r) == "exit 3");
  r.signal = 9;
  r.exit_code = 137;
  CHECK(cli::describe_result(r) == "signal 9");
  r.oom_killed = true;
  CHECK(cli::describe_result(r) == "killed for memory (guest OOM)");
  CHECK(cli::exit_status_of(r) == 137);
  r.timed_out = true;
  CHECK(cli::describe_result(r) == "timed out");
}

TEST_CASE("the batch reader numbers lines, names jobs and refuses duplicates") {
  std::istringstream in(
      "{\"argv\": [\"echo\", \"1\"]}\n"
      "\n"
      "   \r\n"
      "{\"job_id\": \"x\", \"argv\": [\"echo\"]}\r\n"
      "{\"job_id\": \"x\", \"argv\": [\"echo\"]}\n"
      "{\"argv\": [\"echo\"], \"vcpus\": 99}\n"
      "{\"argv\": []}");
  cli::BatchReader reader(in, "b");
  auto l1 = reader.next();
  REQUIRE(l1);
  CHECK(l1->line_no == 1);
  REQUIRE(l1->job);
  CHECK(l1->job->job_id == "b-1");
  auto l4 = reader.next();
  REQUIRE(l4);
  CHECK(l4->line_no == 4);
  REQUIRE(l4->job);
  CHECK(l4->job->job_id == "x");
  auto l5 = reader.next();
  REQUIRE(l5);
  CHECK_FALSE(l5->job);
  CHECK(l5->error.find("already used by line 4") != std::string::npos);
  auto l6 = reader.next();
  REQUIRE(l6);
  CHECK(l6->error.rfind("vcpus:", 0) == 0);
  auto l7 = reader.next();
  REQUIRE(l7);
  CHECK(l7->line_no == 7);
  CHECK(l7->error.rfind("argv", 0) == 0);
  CHECK_FALSE(reader.next());
}
