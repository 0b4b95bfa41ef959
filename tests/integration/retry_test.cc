// Retries (issue 7): a retryable ERROR (a host-side fault on one worker) goes out again after a
// backoff, up to --max-attempts; a non-retryable one is final at once.
#include <doctest/doctest.h>

#include <chrono>

#include "harness.h"

using namespace paddock;
using namespace paddock::testing;
using namespace std::chrono_literals;

TEST_CASE(
    "retries: a retryable ERROR is tried again with backoff up to max attempts, others are final "
    "at once") {
  TempDir dir;
  auto broker = start_broker(dir, {"--max-attempts", "3", "--retry-base-ms", "100"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4);
  client::Client c(broker.client_endpoint);
  // On the test double, `fail VARIANT` returns that runtime error: NetworkSetup is a host-side
  // fault (retryable), InvalidTransition is not.
  const auto retryable = job("retryable", {"fail", "NetworkSetup", "no", "veth"});
  const auto final_at_once = job("final", {"fail", "InvalidTransition", "nope"});
  const auto t0 = std::chrono::steady_clock::now();
  c.submit(std::vector<schemas::JobRequest>{retryable, final_at_once});
  auto answers = collect(c, {"retryable", "final"}, 20s);
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(answers.all_exactly_once({"retryable", "final"}));
  const auto& r = answers.finals.at("retryable").front();
  REQUIRE(r.kind == client::Event::Kind::kError);
  CHECK(r.error.variant == "NetworkSetup");
  CHECK(r.error.attempt == 3);  // tried three times
  CHECK(r.error.retryable);
  const auto& f = answers.finals.at("final").front();
  REQUIRE(f.kind == client::Event::Kind::kError);
  CHECK(f.error.variant == "InvalidTransition");
  CHECK(f.error.attempt == 1);
  // Two backoffs of 100 ms and 200 ms, each jittered to at least half: at least 150 ms in all.
  CHECK(took >= 150ms);
  MESSAGE("three attempts with backoff took "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
}

TEST_CASE(
    "dead letters: the CLI lists, from the journal, the jobs that ended in an ERROR after their "
    "retries, not the cancelled ones") {
  TempDir dir;
  const std::string journal = dir.path() + "/journal.db";
  auto broker =
      start_broker(dir, {"--journal", journal, "--max-attempts", "2", "--retry-base-ms", "50"});
  client::Client c(broker.client_endpoint);
  // No worker yet: this one is cancelled while queued, and must not be listed.
  c.submit(std::vector<schemas::JobRequest>{job("cancelled", {"echo", "never"})});
  c.cancel("cancelled");
  auto cancelled = collect(c, {"cancelled"}, 10s);
  REQUIRE(cancelled.all_exactly_once({"cancelled"}));
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  c.submit(std::vector<schemas::JobRequest>{job("dead", {"fail", "Firewall", "no", "rules"}),
                                            job("fine", {"echo", "ok"})});
  auto answers = collect(c, {"dead", "fine"}, 20s);
  REQUIRE(answers.all_exactly_once({"dead", "fine"}));
  boost::process::ipstream out;
  boost::process::child cli(PADDOCK_CLI_BIN, "dead-letters", "--journal", journal, "--json",
                            boost::process::std_out > out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(out, line);) lines.push_back(line);
  cli.wait();
  CHECK(cli.exit_code() == 0);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("\"job_id\":\"dead\"") != std::string::npos);
  CHECK(lines[0].find("\"variant\":\"Firewall\"") != std::string::npos);
  CHECK(lines[0].find("\"attempt\":2") != std::string::npos);
}
