// Capacity-aware dispatch (PROTOCOL.md, "Worker session", "Capacity"): a worker says what it can
// commit to guests at once (--capacity-vcpus, --capacity-mem-mib; READY "vcpus:<n>",
// "mem_mib:<n>"), the broker never sends it jobs beyond that, a job that does not fit waits
// until one ends, and a job no connected worker could ever fit is answered TooLarge at once.
#include <doctest/doctest.h>

#include "dashboard_probe.h"
#include "harness.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

schemas::JobRequest sized(std::string id, uint32_t vcpus, uint32_t mem_mib,
                          std::vector<std::string> argv) {
  auto j = job(std::move(id), std::move(argv));
  j.vcpus = vcpus;
  j.mem_mib = mem_mib;
  j.timeout_ms = 600'000;
  return j;
}

// The broker's word (its dashboard's overview, published as the loop turns) that the local
// tenant has `running` jobs on workers and `queued` waiting.
bool wait_local(const std::string& address, size_t running, size_t queued) {
  auto o = http_get_until(address, "/api/v1/overview", [&](const nlohmann::json& j) {
    for (const auto& t : j["queue"]["by_tenant"]) {
      if (t["tenant"] == "local") return t["running"] == running && t["queued"] == queued;
    }
    return running == 0 && queued == 0;
  });
  INFO(o.dump());
  for (const auto& t : o["queue"]["by_tenant"]) {
    if (t["tenant"] == "local") return t["running"] == running && t["queued"] == queued;
  }
  return false;
}

}  // namespace

TEST_CASE(
    "capacity: a worker gets jobs only within the vCPUs it said, the rest wait until one ends, and "
    "a job no worker could ever fit is answered TooLarge at once") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  // 8 slots but 5 vCPUs: two 2-vCPU jobs at once, not three.
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 8,
                             {"--capacity-vcpus", "5", "--capacity-mem-mib", "4096"});
  INFO(slurp(broker.process->log() + ".err"));
  client::Client c(broker.client_endpoint);
  c.submit(job("first", {"true"}));  // answered: the worker is registered
  REQUIRE(collect(c, {"first"}, 20s).all_exactly_once({"first"}));

  c.submit(sized("huge", 8, 256, {"true"}));
  auto huge = collect(c, {"huge"}, 10s);
  REQUIRE(huge.all_exactly_once({"huge"}));
  const auto& ev = huge.finals.at("huge").front();
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.code == 109);
  CHECK(ev.error.variant == "TooLarge");
  CHECK_FALSE(ev.error.retryable);
  CHECK(ev.error.message ==
        "no connected worker with image 'default' can ever fit this job: it asks 8 vCPU(s) and 256 "
        "MiB; the most a worker offers is 5 vCPU(s) and 4096 MiB");

  // One SUBMIT: the broker's one turn places a and b and leaves c, which does not fit beside them.
  c.submit(std::vector<schemas::JobRequest>{sized("a", 2, 256, {"sleep", "600000"}),
                                            sized("b", 2, 256, {"sleep", "600000"}),
                                            sized("c", 2, 256, {"echo", "c ran"})});
  CHECK(wait_local(broker.metrics_address, 2, 1));
  auto workers = http_get_until(broker.metrics_address, "/api/v1/workers",
                                [](const nlohmann::json& j) { return j["workers"].size() == 1; });
  REQUIRE(workers["workers"].size() == 1);
  CHECK(workers["workers"][0]["capacity"]["vcpus"] == 5);
  CHECK(workers["workers"][0]["capacity"]["used_vcpus"] == 4);
  CHECK(workers["workers"][0]["capacity"]["used_mem_mib"] == 512);
  CHECK(workers["workers"][0]["slots"]["free"] == 6);  // credits to spare: capacity held c back

  // a ends: c fits and runs.
  c.cancel("a");
  auto answers = collect(c, {"a", "c"}, 20s);
  REQUIRE(answers.all_exactly_once({"a", "c"}));
  CHECK(answers.finals.at("a").front().error.variant == "Cancelled");
  REQUIRE(answers.finals.at("c").front().kind == client::Event::Kind::kResult);
  CHECK(answers.finals.at("c").front().result.stdout_data == "c ran\n");
  c.cancel("b");
  REQUIRE(collect(c, {"b"}, 20s).all_exactly_once({"b"}));
  CHECK(wait_local(broker.metrics_address, 0, 0));
}

TEST_CASE("capacity: jobs within what a worker said fill all its slots") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  // 3 slots and 64 vCPUs: three 16-vCPU jobs at once, the slots are the bound.
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 3, {"--capacity-vcpus", "64"});
  client::Client c(broker.client_endpoint);
  c.submit(std::vector<schemas::JobRequest>{sized("x", 16, 128, {"sleep", "600000"}),
                                            sized("y", 16, 128, {"sleep", "600000"}),
                                            sized("z", 16, 128, {"sleep", "600000"})});
  CHECK(wait_local(broker.metrics_address, 3, 0));
  for (const char* id : {"x", "y", "z"}) c.cancel(id);
  REQUIRE(collect(c, {"x", "y", "z"}, 20s).all_exactly_once({"x", "y", "z"}));
}
