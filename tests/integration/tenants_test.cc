// Tenants (PROTOCOL.md, "Tenants"; broker/README.md, "Tenants"): a submitter's tenant is the name
// of its CURVE key on the broker's client allowlist. job_ids are scoped per tenant: two tenants use
// one job_id without meeting, another tenant's job is indistinguishable from one that does not
// exist (FETCH and CANCEL answer 105), several keys of one name are one tenant, and a job_id
// submitted again with a different request is refused (ERROR 100), held or finished; and the
// operator's limits per tenant (--tenants, reloaded on SIGHUP) refuse what is past them.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "dashboard_probe.h"
#include "harness.h"
#include "ledger.h"
#include "paddock/client/curve.h"
#include "paddock/schemas/codes.h"
#include "postgres_server.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

// Keys: the broker; tenants alice (two keys: alice and alice-laptop, both named "alice" on the
// allowlist), bob and carol; worker w1. Allowlists clients.allow and workers.allow.
struct TenantKeys {
  explicit TenantKeys(const TempDir& dir) : path(dir.path()) {
    for (const char* name : {"broker", "alice", "alice-laptop", "bob", "carol", "w1"}) {
      curve::write_key_pair(path, name);
    }
    std::ofstream allow(path + "/clients.allow");
    for (const char* name : {"alice", "bob", "carol"}) {
      allow << curve::read_public_key(path + "/" + name + ".pub") << " " << name << "\n";
    }
    allow << curve::read_public_key(path + "/alice-laptop.pub") << " alice\n";
    std::filesystem::copy_file(path + "/w1.pub", path + "/workers.allow");
  }
  std::vector<std::string> broker_args() const {
    return {
        "--curve-secret-key", path + "/broker.key",    "--client-allow", path + "/clients.allow",
        "--worker-allow",     path + "/workers.allow", "--journal",      path + "/journal.db"};
  }
  std::vector<std::string> worker_args() const {
    return {"--broker-public-key", path + "/broker.pub", "--curve-key", path + "/w1.key"};
  }
  curve::ClientKeys client(const std::string& key) const {
    return *curve::load_client_keys(path + "/broker.pub", path + "/" + key + ".key");
  }
  std::string path;
};

// The next RESULT or ERROR (skipping ACCEPTED), within `timeout`.
std::optional<client::Event> next_final(client::Client& c, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto ev = c.next(100ms);
    if (ev &&
        (ev->kind == client::Event::Kind::kResult || ev->kind == client::Event::Kind::kError)) {
      return ev;
    }
  }
  return std::nullopt;
}

uint32_t code_of(schemas::JobCode c) { return schemas::code(c); }

std::unique_ptr<PostgresServer> start_postgres() {
  std::string why;
  auto pg = PostgresServer::start(why);
  // Not a skip: tools/install-deps.sh installs PostgreSQL, and CI runs this.
  REQUIRE_MESSAGE(pg != nullptr, "no PostgreSQL server: " << why);
  return pg;
}

// A broker on the shared queue with CURVE tenants and `extra` options.
Broker start_shared_broker(const TempDir& dir, const TenantKeys& keys, const PostgresServer& pg,
                           const std::string& name, std::vector<std::string> extra = {}) {
  auto args = keys.broker_args();
  args.resize(args.size() - 2);  // no --journal: the shared queue instead
  args.insert(args.end(), {"--store", pg.url(), "--broker-name", name, "--heartbeat-ms", "100"});
  args.insert(args.end(), extra.begin(), extra.end());
  return start_broker(dir, args);
}

}  // namespace

TEST_CASE(
    "tenants: two tenants use one job_id without meeting, another tenant cannot fetch or cancel "
    "it, and a second key of a tenant can") {
  TempDir dir;
  TenantKeys keys(dir);
  auto broker = start_broker(dir, keys.broker_args());
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4, keys.worker_args());
  INFO(slurp(broker.process->log() + ".err"));

  client::Client alice(broker.client_endpoint, keys.client("alice"));
  client::Client bob(broker.client_endpoint, keys.client("bob"));
  alice.submit(job("shared-id", {"echo", "from alice"}));
  bob.submit(job("shared-id", {"echo", "from bob"}));
  auto a = collect(alice, {"shared-id"}, 30s);
  auto b = collect(bob, {"shared-id"}, 30s);
  REQUIRE(a.all_exactly_once({"shared-id"}));
  REQUIRE(b.all_exactly_once({"shared-id"}));
  const auto& ra = a.finals.at("shared-id").front();
  const auto& rb = b.finals.at("shared-id").front();
  REQUIRE(ra.kind == client::Event::Kind::kResult);
  REQUIRE(rb.kind == client::Event::Kind::kResult);
  CHECK(ra.result.stdout_data == "from alice\n");
  CHECK(rb.result.stdout_data == "from bob\n");

  // carol: no such job, whoever else has one of that id (FETCH and CANCEL answer 105 alike).
  client::Client carol(broker.client_endpoint, keys.client("carol"));
  carol.fetch("shared-id");
  auto fetched = next_final(carol, 10s);
  REQUIRE(fetched);
  REQUIRE(fetched->kind == client::Event::Kind::kError);
  CHECK(fetched->error.code == code_of(schemas::JobCode::kUnknownJob));
  CHECK(fetched->error.job_id == "shared-id");
  carol.cancel("shared-id");
  auto cancelled = next_final(carol, 10s);
  REQUIRE(cancelled);
  CHECK(cancelled->error.code == code_of(schemas::JobCode::kUnknownJob));
  // The same answer as for an id nobody used: nothing tells the two apart.
  carol.fetch("never-used");
  auto unknown = next_final(carol, 10s);
  REQUIRE(unknown);
  CHECK(unknown->error.code == fetched->error.code);
  CHECK(unknown->error.message.find("never-used") != std::string::npos);

  // alice's other key is alice: it fetches her answer (from the journal), not bob's.
  client::Client laptop(broker.client_endpoint, keys.client("alice-laptop"));
  laptop.fetch("shared-id");
  auto mine = next_final(laptop, 10s);
  REQUIRE(mine);
  REQUIRE(mine->kind == client::Event::Kind::kResult);
  CHECK(mine->result.stdout_data == "from alice\n");
}

TEST_CASE(
    "tenants: a job_id submitted again with another request is refused, queued or finished, and "
    "the same request again is answered as before") {
  TempDir dir;
  TenantKeys keys(dir);
  auto broker = start_broker(dir, keys.broker_args());
  INFO(slurp(broker.process->log() + ".err"));
  client::Client alice(broker.client_endpoint, keys.client("alice"));

  // No worker yet: the job stays queued while it is submitted again.
  alice.submit(job("q-1", {"echo", "one"}));
  const std::vector<schemas::JobRequest> again_and_other = {job("q-1", {"echo", "one"}),
                                                            job("q-1", {"echo", "two"})};
  alice.submit(again_and_other);
  std::vector<client::Event> heard;
  for (int i = 0; i < 3; ++i) {
    auto ev = alice.next(10s);
    REQUIRE(ev);
    heard.push_back(*ev);
  }
  CHECK(heard[0].kind == client::Event::Kind::kAccepted);
  CHECK(heard[1].kind == client::Event::Kind::kAccepted);  // the same request: idempotent
  CHECK(heard[1].accepted_ids == std::vector<std::string>{"q-1"});
  REQUIRE(heard[2].kind == client::Event::Kind::kError);
  CHECK(heard[2].error.code == code_of(schemas::JobCode::kInvalidRequest));
  CHECK(heard[2].error.job_id == "q-1");
  REQUIRE(heard[2].error.index.has_value());
  CHECK(*heard[2].error.index == 1);
  CHECK(heard[2].error.message.find("already names a different request") != std::string::npos);

  // bob's q-1 is another job: no conflict with alice's.
  client::Client bob(broker.client_endpoint, keys.client("bob"));
  bob.submit(job("q-1", {"echo", "two"}));
  auto bob_accepted = bob.next(10s);
  REQUIRE(bob_accepted);
  CHECK(bob_accepted->kind == client::Event::Kind::kAccepted);

  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2, keys.worker_args());
  auto done = next_final(alice, 30s);
  REQUIRE(done);
  REQUIRE(done->kind == client::Event::Kind::kResult);
  CHECK(done->result.stdout_data == "one\n");
  auto bob_done = next_final(bob, 30s);
  REQUIRE(bob_done);
  CHECK(bob_done->result.stdout_data == "two\n");

  // Finished (and journaled): another request under q-1 is refused, the same one answered again.
  alice.submit(job("q-1", {"echo", "three"}));
  auto refused = next_final(alice, 10s);
  REQUIRE(refused);
  REQUIRE(refused->kind == client::Event::Kind::kError);
  CHECK(refused->error.code == code_of(schemas::JobCode::kInvalidRequest));
  CHECK(refused->error.message.find("already names a different request") != std::string::npos);
  alice.submit(job("q-1", {"echo", "one"}));
  auto again = next_final(alice, 10s);
  REQUIRE(again);
  REQUIRE(again->kind == client::Event::Kind::kResult);
  CHECK(again->result.stdout_data == "one\n");
}

TEST_CASE(
    "tenants: on a shared PostgreSQL queue two brokers keep tenants apart and refuse a conflicting "
    "request, and a queue of schema 1 is upgraded to the local tenant's jobs") {
  auto pg = start_postgres();
  TempDir dir;
  TenantKeys keys(dir);
  auto a = start_shared_broker(dir, keys, *pg, "a");
  auto b = start_shared_broker(dir, keys, *pg, "b");
  auto wa = start_worker(dir, a.worker_endpoint, "w1", 2, keys.worker_args());
  INFO(slurp(a.process->log() + ".err") << slurp(b.process->log() + ".err"));

  client::Client alice(a.client_endpoint, keys.client("alice"));
  client::Client bob(b.client_endpoint, keys.client("bob"));
  alice.submit(job("pg-1", {"echo", "alice"}));
  bob.submit(job("pg-1", {"echo", "bob"}));
  auto ra = next_final(alice, 30s);
  auto rb = next_final(bob, 30s);
  REQUIRE(ra);
  REQUIRE(rb);
  REQUIRE(ra->kind == client::Event::Kind::kResult);
  REQUIRE(rb->kind == client::Event::Kind::kResult);
  CHECK(ra->result.stdout_data == "alice\n");
  CHECK(rb->result.stdout_data == "bob\n");
  CHECK(pg->sql("SELECT job_id FROM paddock_jobs ORDER BY 1") == "alice/pg-1\nbob/pg-1\n");

  // Through the other broker: carol sees nothing, alice's other request under pg-1 is refused.
  client::Client carol(b.client_endpoint, keys.client("carol"));
  carol.fetch("pg-1");
  auto unknown = next_final(carol, 10s);
  REQUIRE(unknown);
  CHECK(unknown->error.code == code_of(schemas::JobCode::kUnknownJob));
  client::Client alice_b(b.client_endpoint, keys.client("alice-laptop"));
  alice_b.submit(job("pg-1", {"echo", "other"}));
  auto refused = next_final(alice_b, 10s);
  REQUIRE(refused);
  REQUIRE(refused->kind == client::Event::Kind::kError);
  CHECK(refused->error.code == code_of(schemas::JobCode::kInvalidRequest));
  CHECK(refused->error.message.find("already names a different request") != std::string::npos);

  // A queue as a broker before tenants left it: schema 1, rows keyed by the job_id alone.
  wa.reset();
  a.process.reset();
  b.process.reset();
  pg->sql(
      "DELETE FROM paddock_jobs WHERE job_id LIKE 'bob/%'; "
      "UPDATE paddock_jobs SET job_id = substr(job_id, length('alice/') + 1); "
      "ALTER TABLE paddock_jobs DROP COLUMN tenant; "
      "DELETE FROM paddock_schema; INSERT INTO paddock_schema VALUES (1)");
  auto plain = start_broker(dir, {"--store", pg->url(), "--broker-name", "plain"});
  CHECK(pg->sql("SELECT max(version) FROM paddock_schema") == "3\n");
  CHECK(pg->sql("SELECT job_id, tenant FROM paddock_jobs") == "local/pg-1|local\n");
  client::Client local(plain.client_endpoint);  // no CURVE: the local tenant
  local.fetch("pg-1");
  auto old = next_final(local, 10s);
  REQUIRE(old);
  REQUIRE(old->kind == client::Event::Kind::kResult);
  CHECK(old->result.stdout_data == "alice\n");
}

namespace {

// Events until `n` of them came (or 10 s passed).
std::vector<client::Event> next_events(client::Client& c, size_t n) {
  std::vector<client::Event> out;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    if (auto ev = c.next(100ms)) out.push_back(*ev);
  }
  return out;
}

std::vector<schemas::JobRequest> jobs_named(const std::string& prefix, int n) {
  std::vector<schemas::JobRequest> out;
  for (int i = 0; i < n; ++i) out.push_back(job(prefix + std::to_string(i), {"true"}));
  return out;
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE(
    "tenants: the operator's limits refuse past them per tenant (queued jobs, submit rate, per-job "
    "caps, images), are counted by limit, and a SIGHUP reloads them") {
  TempDir dir;
  TenantKeys keys(dir);
  const std::string policy = dir.path() + "/tenants.toml";
  write_file(policy,
             "[defaults]\nmax_queued = 100\n\n"
             "[tenants.alice]\nmax_queued = 3\n\n"
             "[tenants.bob]\nmax_vcpus = 2\nimages = [\"default\"]\n\n"
             "[tenants.carol]\nsubmit_rate = 0.01\nsubmit_burst = 2\n");
  auto args = keys.broker_args();
  args.insert(args.end(), {"--tenants", policy, "--metrics-address", "127.0.0.1:0"});
  auto broker = start_broker(dir, args);  // no worker: accepted jobs stay queued
  INFO(slurp(broker.process->log() + ".err"));

  // alice: 3 queued at most; the 4th and 5th are REJECTED 108, retryable, naming the limit.
  client::Client alice(broker.client_endpoint, keys.client("alice"));
  alice.submit(jobs_named("a-", 5));
  auto heard = next_events(alice, 3);
  REQUIRE(heard.size() == 3);
  CHECK(heard[0].kind == client::Event::Kind::kAccepted);
  CHECK(heard[0].accepted_ids.size() == 3);
  for (int i = 1; i < 3; ++i) {
    REQUIRE(heard[i].kind == client::Event::Kind::kRejected);
    CHECK(heard[i].error.code == code_of(schemas::JobCode::kQuotaExceeded));
    CHECK(heard[i].error.variant == "QuotaExceeded");
    CHECK(heard[i].error.retryable);
    CHECK(heard[i].error.job_id == "a-" + std::to_string(i + 2));
    CHECK(heard[i].error.message.find("max_queued") != std::string::npos);
    CHECK(heard[i].error.message.find("3 jobs queued") != std::string::npos);
  }

  // bob: a job over a per-job cap, or for an image not his, is ERROR 100 naming the field.
  client::Client bob(broker.client_endpoint, keys.client("bob"));
  auto big = job("b-big", {"true"});
  big.vcpus = 4;
  auto py = job("b-py", {"true"});
  py.image = "python";
  bob.submit(std::vector<schemas::JobRequest>{big, py, job("b-ok", {"true"})});
  auto bobs = next_events(bob, 3);
  REQUIRE(bobs.size() == 3);
  REQUIRE(bobs[0].kind == client::Event::Kind::kError);
  CHECK(bobs[0].error.code == code_of(schemas::JobCode::kInvalidRequest));
  CHECK(bobs[0].error.message == "vcpus: 4 is over tenant 'bob''s max_vcpus (2)");
  REQUIRE(bobs[1].kind == client::Event::Kind::kError);
  CHECK(bobs[1].error.message == "image: 'python' is not among tenant 'bob''s images (default)");
  CHECK(bobs[2].kind == client::Event::Kind::kAccepted);

  // carol: a burst of 2, then a rate far below the test's pace.
  client::Client carol(broker.client_endpoint, keys.client("carol"));
  carol.submit(jobs_named("c-", 4));
  auto carols = next_events(carol, 3);
  REQUIRE(carols.size() == 3);
  CHECK(carols[0].accepted_ids.size() == 2);
  for (int i = 1; i < 3; ++i) {
    REQUIRE(carols[i].kind == client::Event::Kind::kRejected);
    CHECK(carols[i].error.message.find("submit_rate (0.01 jobs/s, burst 2)") != std::string::npos);
  }

  // Counted by tenant and limit.
  const auto metrics = http_get(broker.metrics_address, "/metrics").body;
  CHECK(metrics.find(
            "paddock_broker_tenant_refusals_total{tenant=\"alice\",limit=\"max_queued\"} 2") !=
        std::string::npos);
  CHECK(
      metrics.find("paddock_broker_tenant_refusals_total{tenant=\"bob\",limit=\"max_vcpus\"} 1") !=
      std::string::npos);
  CHECK(metrics.find("paddock_broker_tenant_refusals_total{tenant=\"bob\",limit=\"images\"} 1") !=
        std::string::npos);
  CHECK(metrics.find(
            "paddock_broker_tenant_refusals_total{tenant=\"carol\",limit=\"submit_rate\"} 2") !=
        std::string::npos);

  // A file that does not read keeps the limits in force; a good one replaces them.
  write_file(policy, "[tenants.alice]\nmax_queud = 10\n");
  broker.process->signal(SIGHUP);
  wait_for_log(broker, "the limits in force are kept", 10s);
  CHECK(slurp(broker.process->log() + ".err").find("tenants.alice.max_queud: unknown key") !=
        std::string::npos);
  alice.submit(job("a-5", {"true"}));
  auto still = next_events(alice, 1);
  REQUIRE(still.size() == 1);
  CHECK(still[0].kind == client::Event::Kind::kRejected);
  write_file(policy, "[tenants.alice]\nmax_queued = 10\n");
  broker.process->signal(SIGHUP);
  wait_for_log(broker, "reloaded tenants file", 10s);
  alice.submit(job("a-6", {"true"}));
  auto now_ok = next_events(alice, 1);
  REQUIRE(now_ok.size() == 1);
  CHECK(now_ok[0].kind == client::Event::Kind::kAccepted);
  CHECK(broker.process->running());
}

TEST_CASE(
    "tenants: fair share: a tenant submitting behind another's flood is answered before most of "
    "it, and each tenant's jobs show on /metrics") {
  TempDir dir;
  TenantKeys keys(dir);
  auto args = keys.broker_args();
  args.insert(args.end(), {"--metrics-address", "127.0.0.1:0"});
  auto broker = start_broker(dir, args);
  // One slot: every dispatch is the broker's choice of which tenant goes next.
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 1, keys.worker_args());
  INFO(slurp(broker.process->log() + ".err"));

  client::Client alice(broker.client_endpoint, keys.client("alice"));
  client::Client bob(broker.client_endpoint, keys.client("bob"));
  std::vector<schemas::JobRequest> flood;
  for (int i = 0; i < 100; ++i) flood.push_back(job("f-" + std::to_string(i), {"sleep", "100"}));
  alice.submit(flood);
  auto accepted = next_events(alice, 1);
  REQUIRE(accepted.size() == 1);
  REQUIRE(accepted[0].accepted_ids.size() == 100);

  // bob's jobs go next and then alternate with alice's: without fair share they would wait for
  // all 100 of hers (10 s of work on the one slot).
  bob.submit(jobs_named("b-", 3));
  size_t bobs_answers = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (bobs_answers < 3 && std::chrono::steady_clock::now() < deadline) {
    auto ev = next_final(bob, 1s);
    if (ev) {
      CHECK(ev->kind == client::Event::Kind::kResult);
      ++bobs_answers;
    }
  }
  REQUIRE(bobs_answers == 3);
  std::string metrics;
  auto value_of = [&](const std::string& series) -> double {
    const auto at = metrics.find(series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(metrics.substr(at + series.size() + 1));
  };
  // The gauges are published as the loop turns (every 20 ms at most): read until they show bob's
  // last job gone from the queue.
  const std::string bob_queued = "paddock_broker_tenant_jobs{tenant=\"bob\",state=\"queued\"}";
  const auto scrape_deadline = std::chrono::steady_clock::now() + 10s;
  do {
    metrics = http_get(broker.metrics_address, "/metrics").body;
    if (value_of(bob_queued) == 0) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < scrape_deadline);
  INFO(metrics);
  CHECK(value_of(bob_queued) == 0);
  CHECK(value_of("paddock_broker_tenant_jobs_answered_total{tenant=\"bob\",outcome=\"result\"}") ==
        3);
  // About 3 of alice's ran meanwhile; the bound leaves room for a slow machine's scrape.
  const double alices =
      value_of("paddock_broker_tenant_jobs_answered_total{tenant=\"alice\",outcome=\"result\"}");
  CHECK(alices >= 0);
  CHECK(alices <= 50);
  CHECK(value_of("paddock_broker_tenant_jobs{tenant=\"alice\",state=\"queued\"}") >= 40);
}

TEST_CASE(
    "tenants: max_running keeps a tenant's jobs on workers at its cap while other tenants' run, "
    "and the next of its jobs goes when one ends") {
  TempDir dir;
  TenantKeys keys(dir);
  const std::string policy = dir.path() + "/tenants.toml";
  write_file(policy, "[tenants.alice]\nmax_running = 1\n");
  auto args = keys.broker_args();
  args.insert(args.end(), {"--tenants", policy, "--metrics-address", "127.0.0.1:0"});
  auto broker = start_broker(dir, args);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4, keys.worker_args());
  INFO(slurp(broker.process->log() + ".err"));
  // alice's jobs held now, as the broker's overview says once its loop has turned.
  auto alice_at = [&](size_t running, size_t queued) {
    auto o =
        http_get_until(broker.metrics_address, "/api/v1/overview", [&](const nlohmann::json& j) {
          for (const auto& t : j["queue"]["by_tenant"]) {
            if (t["tenant"] == "alice") {
              return t["running"] == running && t["queued"] == queued;
            }
          }
          return false;
        });
    INFO(o.dump());
    for (const auto& t : o["queue"]["by_tenant"]) {
      if (t["tenant"] == "alice") return t["running"] == running && t["queued"] == queued;
    }
    return false;
  };

  client::Client alice(broker.client_endpoint, keys.client("alice"));
  client::Client bob(broker.client_endpoint, keys.client("bob"));
  // One SUBMIT: the broker's one turn places what it may, so 1 running and 2 queued is its choice
  // with 4 slots free, not a moment before the rest went out.
  auto long_job = [](const std::string& id) {
    auto j = job(id, {"sleep", "600000"});
    j.timeout_ms = 600'000;
    return j;
  };
  alice.submit(std::vector<schemas::JobRequest>{long_job("a1"), long_job("a2"), long_job("a3")});
  CHECK(alice_at(1, 2));
  // bob is not held back by alice's cap: the slots are free.
  bob.submit(job("b1", {"echo", "bob ran"}));
  auto b1 = next_final(bob, 20s);
  REQUIRE(b1.has_value());
  REQUIRE(b1->kind == client::Event::Kind::kResult);
  CHECK(b1->result.stdout_data == "bob ran\n");
  CHECK(alice_at(1, 2));
  // Her running job (the first: FIFO within a tenant) ends, cancelled: the next of hers goes.
  alice.cancel("a1");
  auto a1 = next_final(alice, 20s);
  REQUIRE(a1.has_value());
  CHECK(a1->error.job_id == "a1");
  CHECK(a1->error.variant == "Cancelled");
  CHECK(alice_at(1, 1));
  for (const char* id : {"a2", "a3"}) alice.cancel(id);
  size_t cancelled = 0;
  for (int i = 0; i < 2; ++i) {
    auto ev = next_final(alice, 20s);
    if (ev && ev->kind == client::Event::Kind::kError && ev->error.variant == "Cancelled") {
      ++cancelled;
    }
  }
  CHECK(cancelled == 2);
  const auto metrics = http_get(broker.metrics_address, "/metrics").body;
  CHECK(metrics.find(
            "paddock_broker_tenant_jobs_answered_total{tenant=\"alice\",outcome=\"error\"} 3") !=
        std::string::npos);
}

namespace {

// A worker's options beside such a broker: heartbeats as often as the broker's.
std::vector<std::string> shared_worker_args(const TenantKeys& keys) {
  auto args = keys.worker_args();
  args.insert(args.end(), {"--heartbeat-ms", "100"});
  return args;
}

std::vector<std::string> ids_named(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// Polls `query` until it prints `want` (or 20 s passed); what it printed last.
std::string sql_until(const PostgresServer& pg, const std::string& query, const std::string& want) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  do {
    got = pg.sql(query);
    if (got == want) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return got;
}

}  // namespace

TEST_CASE(
    "tenants: on a shared PostgreSQL queue a tenant's max_queued and max_running hold over every "
    "broker, other tenants go on, and the next of its jobs goes when one ends") {
  auto pg = start_postgres();
  TempDir dir;
  TenantKeys keys(dir);
  const std::string policy = dir.path() + "/tenants.toml";
  write_file(policy, "[tenants.alice]\nmax_queued = 3\nmax_running = 1\n");
  auto a = start_shared_broker(dir, keys, *pg, "a", {"--tenants", policy});
  auto b = start_shared_broker(dir, keys, *pg, "b", {"--tenants", policy});
  INFO(slurp(a.process->log() + ".err") << slurp(b.process->log() + ".err"));
  auto long_job = [](const std::string& id) {
    auto j = job(id, {"sleep", "600000"});
    j.timeout_ms = 600'000;
    return j;
  };

  // No workers yet. max_queued: 2 of alice's through a, then 2 through b, of which one fits.
  client::Client alice_a(a.client_endpoint, keys.client("alice"));
  client::Client alice_b(b.client_endpoint, keys.client("alice-laptop"));
  alice_a.submit(std::vector<schemas::JobRequest>{long_job("a1"), long_job("a2")});
  auto first = next_events(alice_a, 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].accepted_ids.size() == 2);
  alice_b.submit(std::vector<schemas::JobRequest>{long_job("a3"), long_job("a4")});
  auto second = next_events(alice_b, 2);
  REQUIRE(second.size() == 2);
  CHECK(second[0].accepted_ids == std::vector<std::string>{"a3"});
  REQUIRE(second[1].kind == client::Event::Kind::kRejected);
  CHECK(second[1].error.code == code_of(schemas::JobCode::kQuotaExceeded));
  CHECK(second[1].error.job_id == "a4");
  CHECK(second[1].error.message.find("3 jobs queued, its max_queued") != std::string::npos);
  // carol has no such limit, on either broker.
  client::Client carol(b.client_endpoint, keys.client("carol"));
  carol.submit(jobs_named("c-", 5));
  auto carols = next_events(carol, 1);
  REQUIRE(carols.size() == 1);
  CHECK(carols[0].accepted_ids.size() == 5);

  // Workers on both brokers, 3 slots each: alice's jobs run one at a time over both, carol's all
  // run, and bob's (through either broker) run beside them.
  auto wa = start_worker(dir, a.worker_endpoint, "wa", 3, shared_worker_args(keys));
  auto wb = start_worker(dir, b.worker_endpoint, "wb", 3, shared_worker_args(keys));
  INFO(slurp(wa->log() + ".err") << slurp(wb->log() + ".err"));
  auto carol_done = collect(carol, ids_named("c-", 5), 30s);
  CHECK(carol_done.all_exactly_once(ids_named("c-", 5)));
  // bob's jobs until each broker's worker ran one: both brokers claimed since alice's jobs were
  // queued, so either could have taken more of hers.
  client::Client bob_a(a.client_endpoint, keys.client("bob"));
  client::Client bob_b(b.client_endpoint, keys.client("bob"));
  std::set<std::string> ran_on;
  for (int i = 0; i < 40 && ran_on.size() < 2; ++i) {
    client::Client& bob = i % 2 == 0 ? bob_a : bob_b;
    bob.submit(job("b-" + std::to_string(i), {"true"}));
    auto done = next_final(bob, 20s);
    REQUIRE(done);
    REQUIRE(done->kind == client::Event::Kind::kResult);
    ran_on.insert(done->result.worker_id);
  }
  CHECK(ran_on == std::set<std::string>{"wa", "wb"});
  const std::string alice_states =
      "SELECT state, count(*) FROM paddock_jobs WHERE tenant = 'alice' GROUP BY 1 ORDER BY 1";
  CHECK(pg->sql(alice_states) == "0|2\n1|1\n");

  // Her running job ends (cancelled, through the broker that does not hold it, maybe): the next
  // of hers is claimed, still one at a time.
  const std::string running = pg->sql(
      "SELECT split_part(job_id, '/', 2) FROM paddock_jobs WHERE tenant = 'alice' AND "
      "state = 1");
  REQUIRE(!running.empty());
  alice_b.cancel(running.substr(0, running.size() - 1));
  auto cancelled = next_final(alice_b, 20s);
  REQUIRE(cancelled);
  CHECK(cancelled->error.variant == "Cancelled");
  CHECK(sql_until(*pg, alice_states, "0|1\n1|1\n2|1\n") == "0|1\n1|1\n2|1\n");
}

TEST_CASE(
    "tenants: on a shared PostgreSQL queue the brokers' claims share it fairly: a tenant's jobs "
    "behind another's flood are answered before most of it") {
  auto pg = start_postgres();
  TempDir dir;
  TenantKeys keys(dir);
  auto a = start_shared_broker(dir, keys, *pg, "a");
  auto b = start_shared_broker(dir, keys, *pg, "b");
  INFO(slurp(a.process->log() + ".err") << slurp(b.process->log() + ".err"));
  // One slot per broker: every claim is a broker's choice of which tenant goes next.
  auto wa = start_worker(dir, a.worker_endpoint, "wa", 1, shared_worker_args(keys));
  auto wb = start_worker(dir, b.worker_endpoint, "wb", 1, shared_worker_args(keys));

  client::Client alice(a.client_endpoint, keys.client("alice"));
  std::vector<schemas::JobRequest> flood;
  for (int i = 0; i < 100; ++i) flood.push_back(job("f-" + std::to_string(i), {"sleep", "100"}));
  alice.submit(flood);
  auto accepted = next_events(alice, 1);
  REQUIRE(accepted.size() == 1);
  REQUIRE(accepted[0].accepted_ids.size() == 100);

  // Without fair claims bob's would wait behind all 100 (5 s of work on the two slots).
  client::Client bob(b.client_endpoint, keys.client("bob"));
  bob.submit(jobs_named("b-", 3));
  auto bobs = collect(bob, ids_named("b-", 3), 60s);
  REQUIRE(bobs.all_exactly_once(ids_named("b-", 3)));
  const int alices =
      std::stoi(pg->sql("SELECT count(*) FROM paddock_jobs WHERE tenant = 'alice' AND state = 2"));
  INFO("alice's answered when bob's were: " << alices);
  CHECK(alices <= 50);
  CHECK(std::stoi(pg->sql(
            "SELECT count(*) FROM paddock_jobs WHERE tenant = 'alice' AND state = 0")) >= 40);
}
