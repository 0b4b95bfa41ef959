// Several brokers on one PostgreSQL queue (issue 11): real brokers and workers (the in-memory test
// double as the backend) over loopback TCP, and a PostgreSQL server of the test's own
// (postgres_server.h). Each test checks the submitters' view (every job answered, once, with its
// own output) and the database's (nothing left queued or claimed).
#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>

#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "ledger.h"
#include "postgres_server.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<PostgresServer> start_postgres() {
  std::string why;
  auto pg = PostgresServer::start(why);
  // Not a skip: tools/install-deps.sh installs PostgreSQL, and CI runs this.
  REQUIRE_MESSAGE(pg != nullptr, "no PostgreSQL server for the shared-queue tests: " << why);
  return pg;
}

std::vector<std::string> shared_args(const PostgresServer& pg, const std::string& name,
                                     const std::string& lease_ms = "2000") {
  return {"--store", pg.url(),         "--broker-name", name,         "--lease-ms",
          lease_ms,  "--heartbeat-ms", "100",           "--liveness", "3"};
}

std::vector<std::string> ids_of(const std::vector<schemas::JobRequest>& jobs) {
  std::vector<std::string> ids;
  for (const auto& j : jobs) ids.push_back(j.job_id);
  return ids;
}

// Even jobs sleep `sleep_ms` (so that some are on workers when something fails), odd ones print
// their id (so that an answer is known to be this job's).
std::vector<schemas::JobRequest> mixed_jobs(const std::string& prefix, size_t n,
                                            const std::string& sleep_ms) {
  std::vector<schemas::JobRequest> jobs;
  for (size_t i = 0; i < n; ++i) {
    const std::string id = prefix + std::to_string(i);
    jobs.push_back(i % 2 == 0 ? job(id, {"sleep", sleep_ms}) : job(id, {"echo", id}));
  }
  return jobs;
}

// Every answer a RESULT with exit 0 and the job's own output; returns the first that is not.
std::string first_wrong_answer(const Ledger& book, const std::vector<std::string>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = book.first.find(ids[i]);
    if (it == book.first.end()) continue;
    const auto& ev = it->second;
    const bool ok = ev.kind == client::Event::Kind::kResult && ev.result.exit_code == 0 &&
                    ev.result.stdout_data == (i % 2 == 0 ? "" : ids[i] + "\n");
    if (!ok) return ids[i] + ": " + describe(ev);
  }
  return "";
}

// GET http://127.0.0.1:PORT/path: the status (0: no answer) and the body.
std::pair<int, std::string> http_get(const std::string& address, const std::string& path) {
  httplib::Client client("127.0.0.1", std::stoi(address.substr(address.rfind(':') + 1)));
  client.set_connection_timeout(2s);
  client.set_read_timeout(10s);
  auto res = client.Get(path);
  if (!res) return {0, ""};
  return {res->status, res->body};
}

void check_exactly_once(const Ledger& book, const std::vector<std::string>& ids) {
  const auto missing = book.missing(ids);
  CHECK_MESSAGE(missing.empty(), missing.size() << " job(s) never answered, first: "
                                                << (missing.empty() ? "" : missing.front()));
  CHECK_MESSAGE(book.conflicts.empty(),
                book.conflicts.size() << " job(s) got two different answers, first: "
                                      << (book.conflicts.empty() ? "" : book.conflicts.front()));
  const std::string wrong = first_wrong_answer(book, ids);
  CHECK_MESSAGE(wrong.empty(), "an answer is not the job's own RESULT: " << wrong);
  // PONGs answer the failover's PINGs; anything else (REJECTED, undecodable) is wrong here.
  std::string other;
  for (const auto& ev : book.others) {
    if (ev.kind != client::Event::Kind::kPong && other.empty()) other = describe(ev);
  }
  CHECK_MESSAGE(other.empty(), "an answer that is neither ACCEPTED nor final: " << other);
}

}  // namespace

TEST_CASE(
    "shared queue: a job submitted to one broker runs on another broker's worker and its answer "
    "comes back through the first") {
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a"));
  auto b = start_broker(dir, shared_args(*pg, "b"));
  auto wb = start_worker(dir, b.worker_endpoint, "wb", 2, {"--heartbeat-ms", "100"});
  wait_for_log(b, "worker 'wb' ready", 10s);

  const auto jobs = mixed_jobs("x-", 20, "10");
  const auto ids = ids_of(jobs);
  Ledger book;
  {
    client::Client c(a.client_endpoint);  // the broker without workers
    c.submit(jobs);
    pump(c, book, Clock::now() + 30s, [&] { return book.answered() == ids.size(); });
    pump(c, book, Clock::now() + 300ms, [] { return false; });  // late duplicates
  }
  CHECK(book.accepted.size() == ids.size());
  check_exactly_once(book, ids);
  for (const auto& [id, ev] : book.first) {
    if (ev.kind == client::Event::Kind::kResult) CHECK(ev.result.worker_id == "wb");
  }
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs WHERE state = 2") == "20\n");
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs WHERE state <> 2") == "0\n");
  CHECK(pg->sql("SELECT count(*) FROM paddock_brokers") == "2\n");

  SUBCASE("the same jobs submitted again to the other broker are answered from the store") {
    Ledger again;
    client::Client c(b.client_endpoint);
    c.submit(jobs);
    pump(c, again, Clock::now() + 15s, [&] { return again.answered() == ids.size(); });
    REQUIRE(again.answered() == ids.size());
    for (const auto& id : ids) {
      // The whole answer, timings and all: the stored one, not a second run.
      CHECK_MESSAGE(
          same_answer(again.first.at(id), book.first.at(id)),
          id << ": " << describe(again.first.at(id)) << " vs " << describe(book.first.at(id)));
    }
    CHECK(pg->sql("SELECT count(*) FROM paddock_jobs") == "20\n");
    CHECK(pg->sql("SELECT max(attempt) FROM paddock_jobs") == "1\n");
  }
  SUBCASE("FETCH on either broker gets the stored answer, and an unknown job is UnknownJob") {
    for (const Broker* br : {&a, &b}) {
      client::Client c(br->client_endpoint);
      c.fetch(ids[3]);
      c.fetch("never-submitted");
      Ledger f;
      pump(c, f, Clock::now() + 10s, [&] { return f.answered() == 2; });
      REQUIRE(f.answered() == 2);
      CHECK(same_answer(f.first.at(ids[3]), book.first.at(ids[3])));
      const auto& unknown = f.first.at("never-submitted");
      REQUIRE(unknown.kind == client::Event::Kind::kError);
      CHECK(unknown.error.variant == "UnknownJob");
    }
  }
}

TEST_CASE("shared queue: a job queued on one broker can be cancelled through another") {
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a"));
  auto b = start_broker(dir, shared_args(*pg, "b"));
  // No worker anywhere: the job stays queued in the database.
  client::Client submitter(a.client_endpoint);
  submitter.submit(job("queued-1", {"echo", "never"}));
  Ledger sub;
  pump(submitter, sub, Clock::now() + 10s, [&] { return sub.accepted.count("queued-1") == 1; });
  REQUIRE(sub.accepted.count("queued-1") == 1);
  client::Client canceller(b.client_endpoint);
  canceller.cancel("queued-1");
  Ledger can;
  pump(canceller, can, Clock::now() + 10s, [&] { return can.answered() == 1; });
  pump(submitter, sub, Clock::now() + 10s, [&] { return sub.answered() == 1; });
  REQUIRE(can.answered() == 1);
  REQUIRE(sub.answered() == 1);
  for (const Ledger* l : {&can, &sub}) {
    const auto& ev = l->first.at("queued-1");
    REQUIRE(ev.kind == client::Event::Kind::kError);
    CHECK(ev.error.variant == "Cancelled");
  }
  // A worker that connects later never runs it.
  auto w = start_worker(dir, a.worker_endpoint, "late", 2, {"--heartbeat-ms", "100"});
  wait_for_log(a, "worker 'late' ready", 10s);
  std::this_thread::sleep_for(500ms);
  CHECK(
      pg->sql(
          "SELECT state, attempt, dispatched FROM paddock_jobs WHERE job_id = 'local/queued-1'") ==
      "2|1|f\n");
}

TEST_CASE(
    "shared queue: a broker SIGKILLed mid-run loses its lease and its jobs finish on another "
    "broker's worker once each") {
  constexpr size_t kJobs = 400;
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a", "1500"));
  auto b = start_broker(dir, shared_args(*pg, "b", "1500"));
  auto wa = start_worker(dir, a.worker_endpoint, "wa", 4, {"--heartbeat-ms", "100"});
  auto wb = start_worker(dir, b.worker_endpoint, "wb", 4, {"--heartbeat-ms", "100"});
  wait_for_log(a, "worker 'wa' ready", 10s);
  wait_for_log(b, "worker 'wb' ready", 10s);

  // Long enough that broker a always has jobs on its worker when it is killed.
  const auto jobs = mixed_jobs("k-", kJobs, "200");
  const auto ids = ids_of(jobs);
  Ledger book;
  client::Client c(b.client_endpoint);
  c.submit(jobs);
  pump(c, book, Clock::now() + 30s, [&] { return book.answered() >= kJobs / 4; });
  REQUIRE(book.answered() >= kJobs / 4);
  size_t on_a = 0;
  for (const auto& [id, ev] : book.first) on_a += ev.result.worker_id == "wa";
  REQUIRE_MESSAGE(on_a > 0,
                  "broker a's worker ran nothing before the kill: the test shows nothing");
  // Killed while it holds claims (its worker is running some of its jobs).
  std::string claimed_by_a;
  const auto hold_deadline = Clock::now() + 10s;
  while ((claimed_by_a = pg->sql(
              "SELECT count(*) FROM paddock_jobs WHERE state = 1 AND owner LIKE 'a-%'")) == "0\n") {
    REQUIRE_MESSAGE(Clock::now() < hold_deadline, "broker a never held a claim");
    std::this_thread::sleep_for(5ms);
  }
  kill_broker(a);
  pump(c, book, Clock::now() + 60s, [&] { return book.answered() == kJobs; });
  pump(c, book, Clock::now() + 300ms, [] { return false; });

  size_t second_attempts = 0;
  for (const auto& [id, ev] : book.first) second_attempts += ev.result.attempt > 1;
  MESSAGE("answered " << book.answered() << " of " << kJobs << "; run on wa before the kill: "
                      << on_a << "; claimed by a at the kill: " << claimed_by_a
                      << "; answers with attempt > 1: " << second_attempts
                      << "; answered more than once (same answer): " << book.answered_twice());
  check_exactly_once(book, ids);
  CHECK_MESSAGE(second_attempts > 0,  // a's claimed jobs ran again, one attempt further
                "broker a's log:\n"
                    << slurp(a.process->log() + ".err").substr(0, 5000) << "\nbroker b's log:\n"
                    << slurp(b.process->log() + ".err").substr(0, 5000));
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs WHERE state <> 2") == "0\n");
  CHECK(pg->sql("SELECT count(*) FROM paddock_brokers WHERE broker_id LIKE 'a-%'") == "0\n");
  CHECK(slurp(b.process->log() + ".err").find("whose lease lapsed went back to the queue") !=
        std::string::npos);
}

TEST_CASE(
    "shared queue: PostgreSQL restarted mid-run: the brokers re-join and every job is answered "
    "once") {
  constexpr size_t kJobs = 300;
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a"));
  auto b = start_broker(dir, shared_args(*pg, "b"));
  auto wa = start_worker(dir, a.worker_endpoint, "wa", 4, {"--heartbeat-ms", "100"});
  auto wb = start_worker(dir, b.worker_endpoint, "wb", 4, {"--heartbeat-ms", "100"});
  wait_for_log(a, "worker 'wa' ready", 10s);
  wait_for_log(b, "worker 'wb' ready", 10s);

  const auto jobs = mixed_jobs("pg-", kJobs, "20");
  const auto ids = ids_of(jobs);
  Ledger book;
  client::Client c(a.client_endpoint);
  c.submit(jobs);
  pump(c, book, Clock::now() + 30s,
       [&] { return book.accepted.size() == kJobs && book.answered() >= kJobs / 5; });
  REQUIRE(book.accepted.size() == kJobs);
  const size_t before = book.answered();
  pg->restart();
  // FETCH every second what is still unanswered: an answer sent in a turn that failed is sent
  // again only to a submitter that asks.
  const int rounds = pump(
      c, book, Clock::now() + 90s, [&] { return book.answered() == kJobs; }, &ids);
  pump(c, book, Clock::now() + 300ms, [] { return false; });
  MESSAGE("answered " << before << " before the restart, " << book.answered() << " of " << kJobs
                      << " in all; FETCH rounds " << rounds << "; answered more than once (same "
                      << "answer): " << book.answered_twice());
  check_exactly_once(book, ids);
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs WHERE state <> 2") == "0\n");
  for (const Broker* br : {&a, &b}) {
    const std::string log = slurp(br->process->log() + ".err");
    CHECK_MESSAGE(log.find("re-joined as") != std::string::npos,
                  "no re-join in " << log.substr(0, 3000));
    CHECK(br->process->running());
  }
}

TEST_CASE(
    "shared queue: a submitter given two brokers fails over when its broker is SIGKILLed and every "
    "job is answered once") {
  constexpr size_t kJobs = 2000;
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a", "1500"));
  auto b = start_broker(dir, shared_args(*pg, "b", "1500"));
  // Each worker has a session with both brokers (its slots split between them).
  auto w1 = start_worker(dir, a.worker_endpoint, "w1", 4,
                         {"--broker", b.worker_endpoint, "--heartbeat-ms", "100"});
  auto w2 = start_worker(dir, a.worker_endpoint, "w2", 4,
                         {"--broker", b.worker_endpoint, "--heartbeat-ms", "100"});
  for (const Broker* br : {&a, &b}) {
    wait_for_log(*br, "worker 'w1' ready", 10s);
    wait_for_log(*br, "worker 'w2' ready", 10s);
  }
  const auto jobs = mixed_jobs("f-", kJobs, "5");
  const auto ids = ids_of(jobs);
  client::Client c({a.client_endpoint, b.client_endpoint}, std::nullopt, client::Failover{3000ms});
  Ledger book;
  c.submit(jobs);
  pump(c, book, Clock::now() + 30s, [&] { return book.answered() >= kJobs / 4; });
  REQUIRE(book.answered() >= kJobs / 4);
  REQUIRE(book.answered() < kJobs);  // the kill comes mid-run
  CHECK(c.endpoint() == a.client_endpoint);
  const size_t before = book.answered();
  kill_broker(a);
  pump(c, book, Clock::now() + 60s, [&] { return book.answered() == kJobs; });
  pump(c, book, Clock::now() + 300ms, [] { return false; });
  MESSAGE("answered " << before << " before the kill, " << book.answered() << " of " << kJobs
                      << " in all; failovers " << c.failovers()
                      << "; answered more than once (same answer): " << book.answered_twice());
  check_exactly_once(book, ids);
  // Once when the machine is idle; a loaded machine may leave b unheard for the silence too, and
  // the submitter tries a again before it settles on b: that costs nothing above.
  CHECK(c.failovers() >= 1);
  CHECK(c.endpoint() == b.client_endpoint);
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs WHERE state <> 2") == "0\n");
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs") == std::to_string(kJobs) + "\n");
}

TEST_CASE(
    "shared queue: a job running on one broker's worker is cancelled through another broker") {
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a"));
  auto b = start_broker(dir, shared_args(*pg, "b"));
  auto wb = start_worker(dir, b.worker_endpoint, "wb", 1, {"--heartbeat-ms", "100"});
  wait_for_log(b, "worker 'wb' ready", 10s);
  client::Client submitter(b.client_endpoint);
  submitter.submit(job("long-1", {"sleep", "60000"}));
  // Running: claimed by b and on its worker.
  const auto deadline = Clock::now() + 10s;
  while (pg->sql("SELECT state FROM paddock_jobs WHERE job_id = 'local/long-1'") != "1\n") {
    REQUIRE_MESSAGE(Clock::now() < deadline, "the job was never claimed");
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(200ms);
  const auto cancelled_at = Clock::now();
  client::Client canceller(a.client_endpoint);
  canceller.cancel("long-1");
  Ledger can, sub;
  pump(canceller, can, Clock::now() + 10s, [&] { return can.answered() == 1; });
  pump(submitter, sub, Clock::now() + 10s, [&] { return sub.answered() == 1; });
  REQUIRE(can.answered() == 1);
  REQUIRE(sub.answered() == 1);
  CHECK(Clock::now() - cancelled_at < 10s);  // not the job's own 60 s
  for (const Ledger* l : {&can, &sub}) {
    const auto& ev = l->first.at("long-1");
    CAPTURE(describe(ev));
    REQUIRE(ev.kind == client::Event::Kind::kError);
    CHECK(ev.error.variant == "Cancelled");
  }
  CHECK(pg->sql("SELECT state, cancelled FROM paddock_jobs WHERE job_id = 'local/long-1'") ==
        "2|t\n");
}

TEST_CASE(
    "shared queue: a job whose image no broker's workers have is answered UnknownImage after the "
    "grace") {
  auto pg = start_postgres();
  TempDir dir;
  auto args = shared_args(*pg, "a");
  args.insert(args.end(), {"--image-grace-ms", "500"});
  auto a = start_broker(dir, args);
  auto b_args = shared_args(*pg, "b");
  b_args.insert(b_args.end(), {"--image-grace-ms", "500"});
  auto b = start_broker(dir, b_args);
  auto wb = start_worker(dir, b.worker_endpoint, "wb", 2, {"--heartbeat-ms", "100"});
  wait_for_log(b, "worker 'wb' ready", 10s);
  client::Client c(a.client_endpoint);
  auto odd = job("odd-image", {"echo", "x"});
  odd.image = "no-such-image";
  c.submit(std::vector<schemas::JobRequest>{odd, job("plain", {"echo", "plain"})});
  Ledger book;
  pump(c, book, Clock::now() + 15s, [&] { return book.answered() == 2; });
  REQUIRE(book.answered() == 2);
  const auto& ev = book.first.at("odd-image");
  CAPTURE(describe(ev));
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.variant == "UnknownImage");
  CHECK(ev.error.message.find("no-such-image") != std::string::npos);
  CHECK(book.first.at("plain").kind == client::Event::Kind::kResult);
}

TEST_CASE("shared queue: paddock dead-letters --store lists the jobs that ended in an ERROR") {
  auto pg = start_postgres();
  TempDir dir;
  auto args = shared_args(*pg, "a");
  args.insert(args.end(), {"--max-attempts", "1"});
  auto a = start_broker(dir, args);
  auto w = start_worker(dir, a.worker_endpoint, "wa", 2, {"--heartbeat-ms", "100"});
  wait_for_log(a, "worker 'wa' ready", 10s);
  client::Client c(a.client_endpoint);
  c.submit(std::vector<schemas::JobRequest>{job("dead-1", {"fail", "Jailer", "boom"}),
                                            job("fine-1", {"echo", "ok"})});
  Ledger book;
  pump(c, book, Clock::now() + 15s, [&] { return book.answered() == 2; });
  REQUIRE(book.answered() == 2);
  REQUIRE(book.first.at("dead-1").kind == client::Event::Kind::kError);
  const std::string out = dir.path() + "/dead.json";
  const int rc = std::system((std::string(PADDOCK_CLI_BIN) + " dead-letters --store '" + pg->url() +
                              "' --json > " + out + " 2>&1")
                                 .c_str());
  const std::string text = slurp(out);
  CAPTURE(text);
  CHECK(rc == 0);
  CHECK(text.find("\"job_id\":\"dead-1\"") != std::string::npos);
  CHECK(text.find("\"variant\":\"Jailer\"") != std::string::npos);
  CHECK(text.find("fine-1") == std::string::npos);
  // A database without the queue is refused, naming what is missing.
  pg->sql("CREATE DATABASE other");
  const std::string other = pg->url().substr(0, pg->url().rfind('/')) + "/other";
  const int bad = std::system(
      (std::string(PADDOCK_CLI_BIN) + " dead-letters --store '" + other + "' > " + out + " 2>&1")
          .c_str());
  CHECK(bad != 0);
  CHECK(slurp(out).find("no shared queue here") != std::string::npos);
}

TEST_CASE(
    "shared queue: a broker's dashboard finds a job another broker took and answered, and a queued "
    "one, in the shared queue") {
  using nlohmann::json;
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a"));
  auto b_args = shared_args(*pg, "b");
  b_args.insert(b_args.end(), {"--metrics-address", "127.0.0.1:0", "--image-grace-ms", "60000"});
  auto b = start_broker(dir, b_args);
  auto wa = start_worker(dir, a.worker_endpoint, "wa", 1, {"--heartbeat-ms", "100"});
  wait_for_log(a, "worker 'wa' ready", 10s);
  client::Client c(a.client_endpoint);
  auto waiting = job("waits", {"echo", "never"});
  waiting.image = "image-nobody-has";
  c.submit(std::vector<schemas::JobRequest>{job("done-1", {"echo", "done"}), waiting});
  Ledger book;
  pump(c, book, Clock::now() + 15s, [&] { return book.answered() == 1; });
  REQUIRE(book.first.count("done-1") == 1);

  // Broker b never saw either job: its ring is empty, the lookup reads the queue.
  auto [status, body] = http_get(b.metrics_address, "/api/v1/jobs/done-1");
  CAPTURE(body);
  REQUIRE(status == 200);
  auto done = json::parse(body);
  CHECK(done["source"] == "shared-queue");
  CHECK(done["status"] == "ok");
  CHECK(done["result"]["stdout_head"] == "done\n");
  CHECK(done["result"]["worker_id"] == "wa");
  auto [qstatus, qbody] = http_get(b.metrics_address, "/api/v1/jobs/waits");
  CAPTURE(qbody);
  REQUIRE(qstatus == 200);
  CHECK(json::parse(qbody)["status"] == "held");
  CHECK(json::parse(qbody)["request"]["image"] == "image-nobody-has");
  auto [nstatus, nbody] = http_get(b.metrics_address, "/api/v1/jobs/never-submitted");
  CHECK(nstatus == 404);
  CHECK(nbody.find("nor in the shared-queue") != std::string::npos);

  // The reader's connection dies with the server; the lookup says so (503) and reconnects after.
  pg->restart();
  int after = 0;
  std::string after_body;
  const auto deadline = Clock::now() + 15s;
  while (Clock::now() < deadline) {
    std::tie(after, after_body) = http_get(b.metrics_address, "/api/v1/jobs/done-1");
    if (after == 200) break;
    CHECK_MESSAGE((after == 503 || after == 0),
                  "during the restart: " << after << " " << after_body);
    std::this_thread::sleep_for(100ms);
  }
  CAPTURE(after_body);
  CHECK(after == 200);
}

TEST_CASE(
    "shared queue: a SUBMIT whose turn cannot be stored is REJECTED (retryable) and the same jobs "
    "submitted again run once") {
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a"));
  auto wa = start_worker(dir, a.worker_endpoint, "wa", 2, {"--heartbeat-ms", "100"});
  wait_for_log(a, "worker 'wa' ready", 10s);
  // The database refuses these rows (a failed INSERT, on a connection that stays up): the
  // broker's turn fails at its commit, so nothing says the jobs were stored.
  pg->sql(
      "ALTER TABLE paddock_jobs ADD CONSTRAINT refuse_doomed "
      "CHECK (job_id NOT LIKE 'local/doomed-%') NOT VALID");
  std::vector<schemas::JobRequest> jobs;
  for (int i = 0; i < 10; ++i) {
    const std::string id = "doomed-" + std::to_string(i);
    jobs.push_back(job(id, {"echo", id}));
  }
  const auto ids = ids_of(jobs);
  client::Client c(a.client_endpoint);
  c.submit(jobs);
  std::set<std::string> rejected;
  Ledger book;
  const auto deadline = Clock::now() + 10s;
  while (rejected.size() < ids.size() && Clock::now() < deadline) {
    auto ev = c.next(100ms);
    if (!ev) continue;
    if (ev->kind == client::Event::Kind::kRejected) {
      CHECK(ev->error.retryable);
      CHECK(ev->error.message.find("submit it again") != std::string::npos);
      rejected.insert(ev->error.job_id);
    } else {
      book.take(*ev);
    }
  }
  CHECK_MESSAGE(rejected.size() == ids.size(), "REJECTED " << rejected.size() << " of "
                                                           << ids.size()
                                                           << " submits of a failed turn");
  CHECK(book.accepted.empty());
  CHECK(book.answered() == 0);
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs") == "0\n");
  wait_for_log(a, "re-joined as", 10s);

  pg->sql("ALTER TABLE paddock_jobs DROP CONSTRAINT refuse_doomed");
  c.submit(jobs);
  pump(c, book, Clock::now() + 15s, [&] { return book.answered() == ids.size(); });
  pump(c, book, Clock::now() + 300ms, [] { return false; });  // late duplicates or strays
  CHECK(book.accepted.size() == ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    REQUIRE(book.first.count(ids[i]) == 1);
    const auto& ev = book.first.at(ids[i]);
    CAPTURE(describe(ev));
    CHECK(ev.kind == client::Event::Kind::kResult);
    CHECK(ev.result.stdout_data == ids[i] + "\n");
    CHECK(book.count.at(ids[i]) == 1);
  }
  CHECK(pg->sql("SELECT count(*) FROM paddock_jobs WHERE state = 2") == "10\n");
}

TEST_CASE(
    "shared queue: a FETCH asked while PostgreSQL is down is answered once it is back, UnknownJob "
    "for a job the queue never held") {
  auto pg = start_postgres();
  TempDir dir;
  auto a = start_broker(dir, shared_args(*pg, "a"));
  auto wa = start_worker(dir, a.worker_endpoint, "wa", 1, {"--heartbeat-ms", "100"});
  wait_for_log(a, "worker 'wa' ready", 10s);
  client::Client c(a.client_endpoint);
  c.submit(std::vector<schemas::JobRequest>{job("known-1", {"echo", "known"})});
  Ledger first;
  pump(c, first, Clock::now() + 15s, [&] { return first.answered() == 1; });
  REQUIRE(first.answered() == 1);

  pg->stop();
  c.fetch("known-1");
  c.fetch("never-1");
  std::this_thread::sleep_for(500ms);  // the broker finds the database gone meanwhile
  pg->start_again();
  Ledger book;
  pump(c, book, Clock::now() + 20s, [&] { return book.answered() == 2; });
  REQUIRE_MESSAGE(book.answered() == 2, "answered " << book.answered() << " of 2 FETCHes");
  CHECK(same_answer(book.first.at("known-1"), first.first.at("known-1")));
  const auto& unknown = book.first.at("never-1");
  CAPTURE(describe(unknown));
  REQUIRE(unknown.kind == client::Event::Kind::kError);
  CHECK(unknown.error.variant == "UnknownJob");
  CHECK(book.count.at("never-1") == 1);
}
