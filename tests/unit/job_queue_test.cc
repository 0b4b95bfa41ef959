// The broker's job queue and worker registry.
#include <doctest/doctest.h>

#include <algorithm>
#include <limits>

#include "claim_share.h"
#include "job_queue.h"
#include "paddock/schemas/codec.h"
#include "tenancy.h"
#include "worker_registry.h"

using namespace paddock::broker;

namespace {
QueuedRequest req(std::string id, int32_t priority = 0, uint64_t deadline = 0,
                  std::string image = "default") {
  paddock::schemas::JobRequest r;
  r.job_id = std::move(id);
  r.image = std::move(image);
  r.argv = {"true"};
  r.priority = priority;
  r.deadline_ms = deadline;
  return QueuedRequest::of(r, paddock::schemas::encode(r));
}
// The job of `image` that goes next (the jobs of other images passed over), now running on
// worker "w"; nullptr if none.
Job* pop_next(JobQueue& q, const std::string& image) {
  JobQueue::Skip skip;
  while (const Job* j = q.peek(skip)) {
    if (j->request.image == image) return &q.start(*j, "w");
    skip.images.push_back(j->request.image);
  }
  return nullptr;
}

// The image of the job that goes next among images not in `skip`; "" if none.
std::string next_image(const JobQueue& q, std::vector<std::string> skip) {
  JobQueue::Skip s;
  s.images = std::move(skip);
  const Job* j = q.peek(s);
  return j == nullptr ? "" : j->request.image;
}
}  // namespace

TEST_CASE("job queue: higher priority first, FIFO within a priority") {
  JobQueue q;
  const auto now = Clock::now();
  q.push(req("a"), "c", now);
  q.push(req("b", 5), "c", now);
  q.push(req("c"), "c", now);
  q.push(req("d", 5), "c", now);
  q.push(req("e", -1), "c", now);
  std::vector<std::string> order;
  while (Job* j = pop_next(q, "default")) order.push_back(j->request.job_id);
  CHECK(order == std::vector<std::string>{"b", "d", "a", "c", "e"});
  CHECK(q.queued() == 0);
  CHECK(q.size() == 5);  // popped jobs are held as running until removed
}

TEST_CASE("job queue: a requeued job goes ahead of younger jobs of its priority") {
  JobQueue q;
  const auto now = Clock::now();
  q.push(req("old"), "c", now);
  q.push(req("young"), "c", now);
  Job* j = pop_next(q, "default");
  REQUIRE(j->request.job_id == "old");
  CHECK(j->state == Job::State::kRunning);
  CHECK(j->worker == "w");
  q.requeue(*j);
  CHECK(pop_next(q, "default")->request.job_id == "old");
}

TEST_CASE("job queue: remove forgets queued and running jobs") {
  JobQueue q;
  const auto now = Clock::now();
  q.push(req("a"), "c", now);
  q.push(req("b"), "c", now);
  CHECK(q.remove("a").has_value());
  CHECK(q.find("a") == nullptr);
  CHECK(q.queued() == 1);
  pop_next(q, "default");
  CHECK(q.remove("b").has_value());
  CHECK(q.size() == 0);
  CHECK_FALSE(q.remove("b").has_value());
}

TEST_CASE("job queue: queued jobs past their deadline are taken out") {
  JobQueue q;
  const auto now = Clock::now();
  q.push(req("late", 0, 1000), "c", now);
  q.push(req("fine", 0, 5000), "c", now);
  q.push(req("none"), "c", now);
  auto expired = q.take_expired(2000);
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].request.job_id == "late");
  CHECK(q.queued() == 2);
}

TEST_CASE(
    "job routes: a second SUBMIT replaces the submitter: watchers are kept, capped, each once") {
  Routes r;
  r.submitted("first");
  CHECK(r.all() == std::vector<std::string>{"first"});
  // Issue 20, item 4: only the connection that submitted most recently hears the answer.
  r.submitted("second");
  CHECK(r.all() == std::vector<std::string>{"second"});
  // FETCH and CANCEL add watchers; a watcher that is also the submitter hears it once.
  r.watch("fetcher");
  r.watch("second");
  r.watch("fetcher");
  CHECK(r.all() == std::vector<std::string>{"second", "fetcher"});
  // Submitters that FETCHed it hear the answer as watchers, even after a third SUBMIT.
  r.watch("first");
  r.submitted("third");
  CHECK(r.all() == std::vector<std::string>{"third", "fetcher", "second", "first"});
  // "" is no route (a recovered job has no submitter until one submits it again).
  Routes none;
  none.submitted("");
  CHECK(none.empty());
  CHECK(none.all().empty());
  for (int i = 0; i < 20; ++i) r.watch("w" + std::to_string(i));
  CHECK(r.all().size() == Routes::kMaxWatchers + 1);
  CHECK(r.all().front() == "third");
  CHECK(r.all().back() == "w19");
}

TEST_CASE("job routes: merge takes the later submitter and adds watchers: forget drops a route") {
  Routes held;
  held.submitted("a");
  held.watch("f");
  Routes later;
  later.submitted("b");
  later.watch("g");
  held.merge(later);
  CHECK(held.all() == std::vector<std::string>{"b", "f", "g"});
  Routes no_submitter;
  no_submitter.watch("h");
  held.merge(no_submitter);
  CHECK(held.submitter() == "b");
  held.forget("b");
  held.forget("g");
  CHECK(held.all() == std::vector<std::string>{"f", "h"});
  CHECK_FALSE(held.empty());
}

TEST_CASE("job queue: a pushed job's submitter is its route: a job pushed without one has none") {
  JobQueue q;
  const auto now = Clock::now();
  CHECK(q.push(req("a"), "client", now).routes.all() == std::vector<std::string>{"client"});
  CHECK(q.push(req("b"), "", now).routes.empty());
}

TEST_CASE("worker registry: round-robin over workers with credits") {
  WorkerRegistry r;
  const auto now = Clock::now();
  r.add("A", "a", 2, now);
  r.add("B", "b", 1, now);
  std::vector<std::string> picks;
  while (WorkerState* w = r.next_with_credit("default")) {
    picks.push_back(w->routing_id);
    --w->credits;
  }
  CHECK(picks == std::vector<std::string>{"A", "B", "A"});
  r.grant(*r.find("B"), 1);
  CHECK(r.next_with_credit("default")->routing_id == "B");
}

TEST_CASE("worker registry: a draining worker gets nothing, and removal returns its jobs") {
  WorkerRegistry r;
  const auto now = Clock::now();
  WorkerState& w = r.add("A", "a", 4, now);
  w.jobs = {{"j1", {}}, {"j2", {}}};
  r.drain(w);
  CHECK(r.next_with_credit("default") == nullptr);
  r.grant(w, 3);
  CHECK(r.next_with_credit("default") == nullptr);
  CHECK(r.remove("A", now) == std::set<std::string>{"j1", "j2"});
  CHECK(r.find("A") == nullptr);
}

TEST_CASE("worker registry: silent workers are found by their last sign of life") {
  WorkerRegistry r;
  const auto now = Clock::now();
  r.add("old", "o", 1, now - std::chrono::seconds(10));
  r.add("new", "n", 1, now);
  CHECK(r.silent_since(now - std::chrono::seconds(5)) == std::vector<std::string>{"old"});
}

TEST_CASE("job queue: one queue per image, the best head among the images not skipped") {
  JobQueue q;
  const auto now = Clock::now();
  q.push(req("py-1", 5, 0, "python"), "c", now);
  q.push(req("d-1"), "c", now);
  q.push(req("py-2", 0, 0, "python"), "c", now);
  q.push(req("d-2", 7), "c", now);
  CHECK(q.queued() == 4);
  REQUIRE(next_image(q, {}) != "");
  CHECK(next_image(q, {}) == "default");  // d-2 has the highest priority
  CHECK(next_image(q, {"default"}) == "python");
  CHECK(next_image(q, {"default", "python"}).empty());
  CHECK(pop_next(q, "python")->request.job_id == "py-1");
  CHECK(pop_next(q, "default")->request.job_id == "d-2");
  CHECK(pop_next(q, "nope") == nullptr);
  auto python = q.take_image("python");
  REQUIRE(python.size() == 1);
  CHECK(python[0].request.job_id == "py-2");
  CHECK(q.find("py-2") == nullptr);
  CHECK(q.find("py-1") != nullptr);  // running: not taken
  CHECK(q.queued() == 1);
  CHECK(next_image(q, {}) == "default");
  CHECK(q.remove("d-1").has_value());
  CHECK(q.queued() == 0);
  CHECK(next_image(q, {}).empty());
}

TEST_CASE("worker registry: a worker is in the round-robin of each image it has, and only those") {
  WorkerRegistry r;
  const auto now = Clock::now();
  r.add("A", "a", 2, now, {"default", "python"});
  r.add("B", "b", 1, now);  // no image capability: "default"
  CHECK(r.find("B")->images == std::vector<std::string>{"default"});
  CHECK(r.images() == std::vector<std::string>{"default", "python"});
  CHECK(r.next_with_credit("nope") == nullptr);
  WorkerState* w = r.next_with_credit("python");
  REQUIRE(w != nullptr);
  CHECK(w->routing_id == "A");
  --w->credits;
  w = r.next_with_credit("default");  // A is in the default ring too, ahead of B
  REQUIRE(w != nullptr);
  CHECK(w->routing_id == "A");
  --w->credits;
  CHECK(r.next_with_credit("python") == nullptr);  // A has no credit left
  w = r.next_with_credit("default");
  REQUIRE(w != nullptr);
  CHECK(w->routing_id == "B");
  --w->credits;
  CHECK(r.next_with_credit("default") == nullptr);
  r.grant(*r.find("A"), 1);
  CHECK(r.next_with_credit("python")->routing_id == "A");
}

TEST_CASE("worker registry: an image is unknown once no worker has had it for the grace") {
  WorkerRegistry r;
  const auto t0 = Clock::now();
  const auto grace = std::chrono::milliseconds(1000);
  const auto later = [&](int ms) { return t0 + std::chrono::milliseconds(ms); };
  CHECK_FALSE(r.image_unknown("python", later(10'000), grace));  // no worker: a fleet may come
  r.add("A", "a", 1, t0, {"default"});
  CHECK_FALSE(r.image_unknown("python", later(500), grace));  // others may still be connecting
  CHECK(r.image_unknown("python", later(1000), grace));
  CHECK_FALSE(r.image_unknown("default", later(5000), grace));
  r.add("P", "p", 1, later(2000), {"python"});
  CHECK_FALSE(r.image_unknown("python", later(3000), grace));
  r.remove("P", later(4000));
  CHECK_FALSE(r.image_unknown("python", later(4500), grace));  // it may be reconnecting
  CHECK(r.image_unknown("python", later(5000), grace));
  CHECK(r.images() == std::vector<std::string>{"default"});
  r.remove("A", later(6000));
  r.add("B", "b", 1, later(9000), {"default"});  // the first after a time with none
  CHECK_FALSE(r.image_unknown("python", later(9500), grace));
  CHECK(r.image_unknown("python", later(10'000), grace));
}

namespace {
// The tenant of each job popped for `image` until none is left or `n` were popped.
std::vector<std::string> pop_tenants(JobQueue& q, size_t n, const std::string& image = "default") {
  std::vector<std::string> out;
  while (out.size() < n) {
    Job* j = pop_next(q, image);
    if (j == nullptr) break;
    out.emplace_back(key_tenant(j->request.job_id));
  }
  return out;
}
void push_n(JobQueue& q, const std::string& tenant, int n, int32_t priority = 0) {
  static int seq = 0;
  for (int i = 0; i < n; ++i) {
    q.push(req(job_key(tenant, "j" + std::to_string(seq++)), priority), "c", Clock::now());
  }
}
}  // namespace

TEST_CASE("fair share: a tenant arriving behind a flood goes next, then the tenants alternate") {
  JobQueue q;
  push_n(q, "alice", 100);
  CHECK(pop_tenants(q, 10) == std::vector<std::string>(10, "alice"));
  push_n(q, "bob", 3);
  CHECK(q.queued_of_tenant("bob") == 3);
  CHECK(q.queued_of_tenant("alice") == 90);
  CHECK(q.running_of_tenant("alice") == 10);
  CHECK(pop_tenants(q, 8) ==
        std::vector<std::string>{"bob", "alice", "bob", "alice", "bob", "alice", "alice", "alice"});
}

TEST_CASE("fair share: dispatches follow the weights while both tenants wait") {
  JobQueue q;
  q.set_shares([](std::string_view tenant) {
    return TenantShare{tenant == "heavy" ? 3.0 : 1.0, std::numeric_limits<uint64_t>::max()};
  });
  push_n(q, "heavy", 100);
  push_n(q, "light", 100);
  auto order = pop_tenants(q, 40);
  REQUIRE(order.size() == 40);
  CHECK(std::count(order.begin(), order.end(), "heavy") == 30);
  // Spread out, not in runs: never more than 3 of heavy's in a row once both wait.
  size_t run = 0, longest = 0;
  for (const auto& t : order) {
    run = t == "heavy" ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  CHECK(longest <= 3);
}

TEST_CASE("fair share: a tenant at its running cap waits while others go, until a job ends") {
  JobQueue q;
  q.set_shares([](std::string_view tenant) {
    return TenantShare{1.0, tenant == "capped" ? 2u : std::numeric_limits<uint64_t>::max()};
  });
  push_n(q, "capped", 5);
  CHECK(pop_tenants(q, 3) == std::vector<std::string>{"capped", "capped"});  // then none
  CHECK(next_image(q, {}).empty());
  push_n(q, "other", 2);
  CHECK(pop_tenants(q, 5) == std::vector<std::string>{"other", "other"});
  // One of capped's running jobs ends: one more of its may go.
  std::string running;
  q.for_each([&](const Job& j) {
    if (j.state == Job::State::kRunning && key_tenant(j.request.job_id) == "capped") {
      running = j.request.job_id;
    }
  });
  REQUIRE(q.remove(running).has_value());
  CHECK(q.running_of_tenant("capped") == 1);
  CHECK(pop_tenants(q, 5) == std::vector<std::string>{"capped"});
  // A job waiting for its retry does not count against the cap.
  Job* j = nullptr;
  q.for_each([&](const Job& job) {
    if (job.state == Job::State::kRunning && key_tenant(job.request.job_id) == "capped") {
      j = q.find(job.request.job_id);
    }
  });
  REQUIRE(j != nullptr);
  q.wait(*j);
  CHECK(j->state == Job::State::kWaiting);
  CHECK(pop_tenants(q, 5) == std::vector<std::string>{"capped"});
  // The operator raises the cap: refresh_shares() lets the rest go.
  q.set_shares([](std::string_view) { return TenantShare{}; });
  CHECK(pop_tenants(q, 5) == std::vector<std::string>{"capped"});
  CHECK(q.queued() == 0);
}

TEST_CASE("fair share: priorities order a tenant's own jobs, not other tenants'") {
  JobQueue q;
  const auto now = Clock::now();
  q.push(req(job_key("a", "low")), "c", now);
  q.push(req(job_key("a", "high"), 9), "c", now);
  q.push(req(job_key("b", "first")), "c", now);
  q.push(req(job_key("b", "urgent"), 50), "c", now);
  std::vector<std::string> order;
  while (Job* j = pop_next(q, "default")) order.push_back(j->request.job_id);
  CHECK(order == std::vector<std::string>{"a/high", "b/urgent", "a/low", "b/first"});
}

TEST_CASE("fair share: a tenant with nothing queued or running is forgotten") {
  JobQueue q;
  push_n(q, "gone", 2);
  push_n(q, "stays", 1);
  std::vector<std::string> ids;
  q.for_each([&](const Job& j) {
    if (key_tenant(j.request.job_id) == "gone") ids.push_back(j.request.job_id);
  });
  pop_next(q, "default");  // one of gone's: running
  for (const auto& id : ids) q.remove(id);
  std::vector<std::string> tenants;
  q.for_each_tenant([&](std::string_view t, size_t queued, size_t running) {
    tenants.emplace_back(t);
    CHECK(queued == 1);
    CHECK(running == 0);
  });
  CHECK(tenants == std::vector<std::string>{"stays"});
}

TEST_CASE("job queue: peek and start follow fair share, and pass over what the skip names") {
  JobQueue q;
  const auto now = Clock::now();
  q.push(req(job_key("a", "big")), "c", now);
  q.push(req(job_key("a", "small")), "c", now);
  q.push(req(job_key("b", "one")), "c", now);
  q.push(req(job_key("b", "py"), 0, 0, "python"), "c", now);
  JobQueue::Skip skip;
  const Job* next = q.peek(skip);
  REQUIRE(next != nullptr);
  CHECK(next->request.job_id == "a/big");
  // a's next fits no worker now: a's default jobs wait (in order); b's go.
  skip.tenant_images.emplace_back("a", "default");
  next = q.peek(skip);
  REQUIRE(next != nullptr);
  CHECK(next->request.job_id == "b/one");
  Job& started = q.start(*next, "w");
  CHECK(started.state == Job::State::kRunning);
  CHECK(started.worker == "w");
  CHECK(q.running_of_tenant("b") == 1);
  // No worker with a credit has python: b's python job is passed over too.
  skip.images.push_back("python");
  CHECK(q.peek(skip) == nullptr);
  skip.clear();
  CHECK(q.peek(skip)->request.job_id == "a/big");
}

TEST_CASE("worker registry: jobs hold capacity, and a worker gets only what fits beside them") {
  WorkerRegistry r;
  const auto now = Clock::now();
  auto& small = r.add("S", "small", 8, now);
  small.capacity_vcpus = 4;
  small.capacity_mem_mib = 1024;
  auto& open = r.add("O", "says-nothing", 8, now);  // no capacity said: credits alone
  bool credit = false;
  // Both have room for 2 vCPUs; round-robin.
  WorkerState* first = r.next_with_credit("default", {2, 512}, &credit);
  REQUIRE(first != nullptr);
  CHECK(credit);
  r.hold(small, "j1", {2, 512});
  r.hold(small, "j2", {2, 256});
  CHECK(small.used_vcpus == 4);
  CHECK(small.used_mem_mib == 768);
  CHECK_FALSE(small.fits({1, 128}));
  CHECK(open.fits({64, 65536}));
  // small is full: only the worker that said nothing gets the next jobs.
  for (int i = 0; i < 4; ++i) CHECK(r.next_with_credit("default", {1, 128}) == &open);
  r.release(small, "j1");
  CHECK(small.used_vcpus == 2);
  CHECK(small.used_mem_mib == 256);
  CHECK(small.fits({2, 768}));
  CHECK_FALSE(small.fits({2, 769}));
  r.release(small, "j1");  // twice: nothing more
  CHECK(small.used_vcpus == 2);
  // A job bigger than small's whole fits the worker that said nothing: not "never".
  Footprint most;
  CHECK_FALSE(r.never_fits("default", {8, 128}, &most));
  r.remove("O", now);
  CHECK(r.never_fits("default", {8, 128}, &most));
  CHECK(most.vcpus == 4);
  CHECK(most.mem_mib == 1024);
  CHECK_FALSE(r.never_fits("default", {4, 1024}, &most));
  CHECK_FALSE(r.never_fits("python", {64, 128}, &most));  // nobody has python: not this answer
  // With credits but no room: credit is said, no worker given.
  credit = false;
  CHECK(r.next_with_credit("default", {3, 128}, &credit) == nullptr);
  CHECK(credit);
}

TEST_CASE("READY capacity: vcpus and mem_mib capabilities, the first valid of each") {
  namespace sc = paddock::schemas;
  auto c = sc::capacity_of({"image:default", "vcpus:8", "mem_mib:4096", "vcpus:2"});
  CHECK(c.vcpus == 8);
  CHECK(c.mem_mib == 4096);
  c = sc::capacity_of({"vcpus:x", "vcpus:", "vcpus:-1", "vcpus:2147483648", "mem_mib:12"});
  CHECK(c.vcpus == 0);
  CHECK(c.mem_mib == 12);
  CHECK(sc::capacity_of({}).vcpus == 0);
}

TEST_CASE(
    "claim share: a tenant arriving behind another's claims gets the next, then they alternate") {
  ClaimShare share;
  const ClaimShare::Tenant alice{"alice"};
  const ClaimShare::Tenant bob{"bob"};
  // alice alone: all 10 are hers.
  CHECK(share.split({alice}, 10) == std::vector<size_t>{10});
  // bob arrives: he is at the current time, alice 1 ahead of it, so he goes first; of 5 he gets
  // 3 (bob, alice, bob, alice, bob).
  CHECK(share.split({alice, bob}, 5) == std::vector<size_t>{2, 3});
  CHECK(share.split({alice, bob}, 4) == std::vector<size_t>{2, 2});
  // Nobody queued: nothing to split.
  CHECK(share.split({}, 3).empty());
}

TEST_CASE(
    "claim share: weights split the claims, and an allowance caps a tenant, the rest to others") {
  ClaimShare share;
  const ClaimShare::Tenant heavy{"heavy", 3.0};
  const ClaimShare::Tenant light{"light", 1.0};
  CHECK(share.split({heavy, light}, 8) == std::vector<size_t>{6, 2});
  const ClaimShare::Tenant capped{"capped", 1.0, 1};
  const ClaimShare::Tenant other{"other"};
  CHECK(share.split({capped, other}, 6) == std::vector<size_t>{1, 5});
  // At its cap: none, and the others take all.
  const ClaimShare::Tenant full{"full", 1.0, 0};
  CHECK(share.split({full, other}, 2) == std::vector<size_t>{0, 2});
}

TEST_CASE("claim share: what was asked and not got is given back to the tenant's virtual time") {
  ClaimShare share;
  const ClaimShare::Tenant alice{"alice"};
  const ClaimShare::Tenant bob{"bob"};
  CHECK(share.split({alice, bob}, 4) == std::vector<size_t>{2, 2});
  const double before = share.vtime_of("alice");
  // alice's 2 were asked and 1 got (another broker took the other): she is charged for 1.
  share.settle(alice, 2, 1);
  CHECK(share.vtime_of("alice") == doctest::Approx(before - 1.0));
  // So she goes ahead of bob in the next split.
  CHECK(share.split({alice, bob}, 1) == std::vector<size_t>{1, 0});
}
