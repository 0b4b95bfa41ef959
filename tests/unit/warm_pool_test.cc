// Warm pools over the in-memory test double: templates built once and reused, min kept ready,
// clones handed out once, too-old and unresponsive clones replaced, a lost or refused template
// rebuilt once (then the pool is broken), nothing left running after shutdown.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "paddock/runtime/memory_provider.h"
#include "paddock/worker/warm_pool.h"

using namespace paddock;
using namespace std::chrono_literals;
using runtime::MemoryProvider;
using runtime::VmSpec;
using runtime::VmState;
using worker::TemplateState;
using worker::WarmPool;
using worker::WarmPoolConfig;
using worker::WarmPoolStats;

namespace {

constexpr auto kWait = 5s;  // upper bound for background work; tests end as soon as it is done

// A clock that only moves when a test says so.
struct FakeClock {
  std::atomic<int64_t> offset_ms{0};
  worker::WarmClock::time_point start = worker::WarmClock::now();
  worker::WarmClock::time_point now() const {
    return start + std::chrono::milliseconds(offset_ms.load());
  }
  void advance(std::chrono::milliseconds d) { offset_ms += d.count(); }
};

WarmPoolConfig fast(size_t min, size_t max) {
  WarmPoolConfig c;
  c.min_ready = min;
  c.max_ready = max;
  c.check_interval = 5ms;
  c.retry_backoff = 5ms;
  c.vm_prefix = "test-warm";
  return c;
}

bool ready_n(const WarmPool& pool, size_t n) {
  return pool.wait_for(
      [n](const WarmPoolStats& s) { return s.state == TemplateState::kReady && s.ready == n; },
      kWait);
}

// The ids of the running clones the pool holds (every running VM restored from a template).
std::set<std::string> running_clones(const MemoryProvider& p) {
  std::set<std::string> out;
  const auto vms = p.list();
  for (const auto& vm : vms.value()) {
    if (vm.restored_from_vm && vm.state == VmState::kRunning) out.insert(vm.id);
  }
  return out;
}

size_t templates_of(const MemoryProvider& p, const std::string& prefix) {
  size_t n = 0;
  const auto snaps = p.all_snapshots();
  for (const auto& s : snaps.value()) n += s.vm_id.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

// The test double with faults on demand: restores refused as a real backend refuses a snapshot
// it cannot use (Unsupported), or a template build that cannot boot.
class FaultyProvider final : public runtime::Provider {
 public:
  MemoryProvider inner;
  std::atomic<bool> refuse_restores{false};
  std::atomic<bool> refuse_template_boot{false};
  // While held, a template's boot waits (a build under way); release() lets it go on.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool hold_template_boot = false;
  void hold() {
    std::lock_guard lock(gate_mu);
    hold_template_boot = true;
  }
  void release() {
    {
      std::lock_guard lock(gate_mu);
      hold_template_boot = false;
    }
    gate_cv.notify_all();
  }

  std::string_view backend() const override { return inner.backend(); }
  runtime::Status create(const std::string& id, const VmSpec& s) override {
    return inner.create(id, s);
  }
  runtime::Status start(const std::string& id) override {
    if (id.rfind("tpl-", 0) == 0) {
      std::unique_lock lock(gate_mu);
      gate_cv.wait(lock, [&] { return !hold_template_boot; });
    }
    if (refuse_template_boot && id.rfind("tpl-", 0) == 0) {
      return runtime::Error::guest_agent("scripted boot failure");
    }
    return inner.start(id);
  }
  runtime::Status stop(const std::string& id) override { return inner.stop(id); }
  runtime::Status resume(const std::string& id) override { return inner.resume(id); }
  runtime::Status destroy(const std::string& id) override { return inner.destroy(id); }
  runtime::Result<runtime::SnapshotInfo> snapshot(const std::string& id,
                                                  const std::string& snap) override {
    return inner.snapshot(id, snap);
  }
  runtime::Status restore(const std::string& id, const std::string& snap,
                          const std::string& new_id) override {
    if (refuse_restores) return runtime::Error::unsupported("snapshot written by another QEMU");
    return inner.restore(id, snap, new_id);
  }
  runtime::Status delete_snapshot(const std::string& id, const std::string& snap) override {
    return inner.delete_snapshot(id, snap);
  }
  runtime::Result<runtime::VmInfo> get(const std::string& id) const override {
    return inner.get(id);
  }
  runtime::Result<std::vector<runtime::VmInfo>> list() const override { return inner.list(); }
  runtime::Result<std::vector<runtime::SnapshotInfo>> list_snapshots(
      const std::string& id) const override {
    return inner.list_snapshots(id);
  }
  runtime::Result<std::vector<runtime::SnapshotInfo>> all_snapshots() const override {
    return inner.all_snapshots();
  }
  runtime::Status ping(const std::string& id, std::chrono::milliseconds t) override {
    return inner.ping(id, t);
  }
  runtime::Status set_egress(const std::string& id,
                             const std::vector<runtime::net::EgressRule>& rules) override {
    return inner.set_egress(id, rules);
  }
  runtime::Result<runtime::NetworkUsage> network_usage(const std::string& id) override {
    return inner.network_usage(id);
  }
  runtime::Result<runtime::ExecResult> exec(const std::string& id, const runtime::ExecRequest& r,
                                            std::stop_token cancel) override {
    {
      auto snaps = inner.list_snapshots(id);
      std::lock_guard lock(gate_mu);
      execs.push_back({id, r.argv, r.cwd, snaps ? snaps.value().size() : 0});
    }
    return inner.exec(id, r, std::move(cancel));
  }
  // The image's warm-up, for every image.
  std::vector<std::string> warmup;
  std::vector<std::string> warmup_argv(const std::string&) const override { return warmup; }
  struct Exec {
    std::string vm_id;
    std::vector<std::string> argv;
    std::string cwd;
    size_t snapshots_before = 0;  // of that VM, when it ran
  };
  std::vector<Exec> execs;  // under gate_mu
};

}  // namespace

TEST_CASE("warm pool: the template is built once, and reused by the next pool (a restart)") {
  MemoryProvider p;
  std::string first;
  {
    WarmPool pool(p, VmSpec{}, fast(1, 1));
    REQUIRE(ready_n(pool, 1));
    const auto s = pool.stats();
    CHECK(s.templates_built == 1);
    CHECK(s.templates_reused == 0);
    first = s.template_vm;
    CHECK(first.rfind("tpl-default-1x128-", 0) == 0);
    // The template VM itself is gone; its snapshot stays.
    CHECK(p.get(first).value().state == VmState::kDestroyed);
    auto vm = pool.acquire();
    REQUIRE(vm);
    CHECK(vm->template_vm() == first);
    CHECK(p.get(vm->id()).value().restored_from_vm == first);
    CHECK(p.get(vm->id()).value().state == VmState::kRunning);
  }
  CHECK(p.live_vms() == 0);
  CHECK(templates_of(p, "tpl-default-1x128-") == 1);

  WarmPool again(p, VmSpec{}, fast(1, 1));
  REQUIRE(ready_n(again, 1));
  CHECK(again.stats().templates_built == 0);
  CHECK(again.stats().templates_reused == 1);
  CHECK(again.stats().template_vm == first);
  again.shutdown();
  CHECK(p.live_vms() == 0);
}

TEST_CASE("warm pool: the newest matching template wins and older duplicates are deleted") {
  MemoryProvider p;
  auto make_template = [&](const std::string& id, VmSpec spec) {
    REQUIRE(p.create(id, spec).ok());
    REQUIRE(p.start(id).ok());
    REQUIRE(p.stop(id).ok());
    REQUIRE(p.snapshot(id, "template").ok());
    REQUIRE(p.destroy(id).ok());
  };
  make_template("tpl-default-1x128-1000", VmSpec{});
  make_template("tpl-default-1x128-2000", VmSpec{});
  make_template("tpl-default-2x128-3000", VmSpec{"default", 2, 128});  // another spec: kept
  make_template("tpl-default-1x128-bogus", VmSpec{});                  // not ours: kept
  WarmPool pool(p, VmSpec{}, fast(0, 1));
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.state == TemplateState::kReady; },
                        kWait));
  CHECK(pool.stats().template_vm == "tpl-default-1x128-2000");
  CHECK_FALSE(p.list_snapshots("tpl-default-1x128-1000").value().size() == 1);
  CHECK(p.list_snapshots("tpl-default-1x128-2000").value().size() == 1);
  CHECK(p.list_snapshots("tpl-default-2x128-3000").value().size() == 1);
  CHECK(p.list_snapshots("tpl-default-1x128-bogus").value().size() == 1);
}

TEST_CASE("warm pool: keeps min ready and refills after each acquire") {
  MemoryProvider p;
  WarmPool pool(p, VmSpec{}, fast(2, 3));
  REQUIRE(ready_n(pool, 2));
  auto vm = pool.acquire();
  REQUIRE(vm);
  CHECK(ready_n(pool, 2));  // refilled behind the acquire
  CHECK(pool.stats().target == 2);
  pool.shutdown();
  CHECK(p.live_vms() == 1);  // the one handed out: its holder destroys it
  vm.reset();
  CHECK(p.live_vms() == 0);
}

TEST_CASE("warm pool: misses raise the target up to max, and clones that age out unused lower it") {
  MemoryProvider p;
  FakeClock clock;
  auto config = fast(0, 2);
  config.max_age = 60s;
  config.now = [&] { return clock.now(); };
  WarmPool pool(p, VmSpec{}, config);
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.state == TemplateState::kReady; },
                        kWait));
  CHECK(pool.stats().target == 0);
  std::vector<worker::WarmVm> held;
  auto first = pool.acquire();  // nothing ready: restored on demand, still warm
  REQUIRE(first);
  CHECK(pool.stats().misses == 1);
  CHECK(pool.stats().target == 1);
  held.push_back(std::move(*first));
  REQUIRE(ready_n(pool, 1));
  for (int i = 0; i < 50 && pool.stats().target < 2; ++i) {
    auto vm = pool.acquire();
    REQUIRE(vm);
    held.push_back(std::move(*vm));
  }
  CHECK(pool.stats().target == 2);
  REQUIRE(ready_n(pool, 2));
  for (int i = 0; i < 5; ++i) held.push_back(std::move(*pool.acquire()));
  CHECK(pool.stats().target == 2);  // never past max
  CHECK(pool.wait_for([](const WarmPoolStats& s) { return s.ready == 2; }, kWait));
  clock.advance(61s);
  pool.poke();
  CHECK(pool.wait_for([](const WarmPoolStats& s) { return s.ready == 0 && s.target == 0; }, kWait));
  pool.shutdown();
  held.clear();
  CHECK(p.live_vms() == 0);
}

TEST_CASE("warm pool: never hands out one VM twice, and every clone is destroyed after") {
  MemoryProvider p;
  std::mutex mu;
  std::vector<std::string> ids;
  {
    WarmPool pool(p, VmSpec{}, fast(2, 4));
    REQUIRE(ready_n(pool, 2));
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 25; ++i) {
          auto vm = pool.acquire();
          if (!vm) continue;
          {
            std::lock_guard lock(mu);
            ids.push_back(vm->id());
          }
          CHECK(p.ping(vm->id(), 1s).ok());
          if (i % 2 == 0) CHECK(vm->destroy().ok());  // else its destructor does it
        }
      });
    }
    threads.clear();
    CHECK(pool.stats().handed_out == ids.size());
  }
  CHECK(ids.size() == 100);  // the template was there: every acquire was warm
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
  for (const auto& id : ids) CHECK(p.get(id).value().state == VmState::kDestroyed);
  CHECK(p.live_vms() == 0);
}

TEST_CASE("warm pool: ready clones older than max_age are destroyed and replaced") {
  MemoryProvider p;
  FakeClock clock;
  auto config = fast(2, 2);
  config.max_age = 60s;
  config.now = [&] { return clock.now(); };
  WarmPool pool(p, VmSpec{}, config);
  REQUIRE(ready_n(pool, 2));
  const auto old = running_clones(p);
  REQUIRE(old.size() == 2);

  SUBCASE("on acquire") {
    clock.advance(61s);
    auto vm = pool.acquire();
    REQUIRE(vm);
    CHECK(old.count(vm->id()) == 0);
  }
  SUBCASE("in the background") {
    clock.advance(61s);
    pool.poke();
  }
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.clones_retired >= 2; }, kWait));
  for (const auto& id : old) CHECK(p.get(id).value().state == VmState::kDestroyed);
  REQUIRE(ready_n(pool, 2));
  for (const auto& id : running_clones(p)) CHECK(old.count(id) == 0);
  pool.shutdown();
  CHECK(p.live_vms() == 0);
}

TEST_CASE("warm pool: a clone that fails its ping is destroyed and another one handed out") {
  MemoryProvider p;
  WarmPool pool(p, VmSpec{}, fast(1, 1));
  REQUIRE(ready_n(pool, 1));
  const std::string dead = *running_clones(p).begin();
  REQUIRE(p.stop(dead).ok());  // a paused guest does not answer
  auto vm = pool.acquire();
  REQUIRE(vm);
  CHECK(vm->id() != dead);
  CHECK(p.get(dead).value().state == VmState::kDestroyed);
  CHECK(p.get(vm->id()).value().state == VmState::kRunning);
  vm.reset();
  pool.shutdown();
  CHECK(p.live_vms() == 0);
}

TEST_CASE("warm pool: a deleted template snapshot is rebuilt, once") {
  MemoryProvider p;
  WarmPool pool(p, VmSpec{}, fast(0, 1));  // min 0: the fault is met by an on-demand restore
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.state == TemplateState::kReady; },
                        kWait));
  const std::string first = pool.stats().template_vm;
  REQUIRE(p.delete_snapshot(first, "template").ok());
  CHECK_FALSE(pool.acquire());  // this job boots cold; a new template is built meanwhile
  REQUIRE(pool.wait_for(
      [&](const WarmPoolStats& s) {
        return s.state == TemplateState::kReady && s.template_vm != first;
      },
      kWait));
  CHECK(pool.stats().templates_built == 2);
  auto vm = pool.acquire();
  REQUIRE(vm);
  CHECK(vm->template_vm() == pool.stats().template_vm);
  vm.reset();
  pool.shutdown();
  CHECK(p.live_vms() == 0);
  CHECK(templates_of(p, "tpl-") == 1);
}

TEST_CASE("warm pool: a template refused again after its rebuild marks the pool broken") {
  FaultyProvider p;
  p.refuse_restores = true;
  WarmPool pool(p, VmSpec{}, fast(1, 2));
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.state == TemplateState::kBroken; },
                        kWait));
  const auto s = pool.stats();
  CHECK(s.templates_built == 2);
  CHECK(s.broken_reason.find("failed after a rebuild") != std::string::npos);
  CHECK(s.broken_reason.find("snapshot written by another QEMU") != std::string::npos);
  CHECK_FALSE(pool.acquire());                     // jobs boot cold
  CHECK(p.inner.all_snapshots().value().empty());  // refused templates are deleted
  pool.shutdown();
  CHECK(p.inner.live_vms() == 0);
}

TEST_CASE("warm pool: a template that cannot be built marks the pool broken") {
  FaultyProvider p;
  p.refuse_template_boot = true;
  WarmPool pool(p, VmSpec{}, fast(1, 2));
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.state == TemplateState::kBroken; },
                        kWait));
  CHECK(pool.stats().broken_reason.find("scripted boot failure") != std::string::npos);
  CHECK_FALSE(pool.acquire());
  pool.shutdown();
  CHECK(p.inner.live_vms() == 0);  // the template VM that did not boot was destroyed
}

TEST_CASE(
    "warm pool: the image's warm-up runs in the template before its snapshot, not in clones") {
  FaultyProvider p;
  p.warmup = {"echo", "warm"};
  WarmPool pool(p, VmSpec{}, fast(1, 1));
  REQUIRE(ready_n(pool, 1));
  const std::string tpl = pool.stats().template_vm;
  std::vector<FaultyProvider::Exec> on_template, on_clones;
  {
    std::lock_guard lock(p.gate_mu);
    for (const auto& e : p.execs) (e.vm_id == tpl ? on_template : on_clones).push_back(e);
  }
  // The warm-up, then its scratch directory removed: the test double knows no rm (exit 127), so
  // busybox's is tried too. All before the snapshot.
  REQUIRE(on_template.size() == 3);
  CHECK(on_template[0].argv == std::vector<std::string>{"echo", "warm"});
  CHECK(on_template[0].cwd == "/tmp/paddock-warmup");
  CHECK(on_template[1].argv == std::vector<std::string>{"rm", "-rf", "/tmp/paddock-warmup"});
  CHECK(on_template[2].argv ==
        std::vector<std::string>{"/bin/busybox", "rm", "-rf", "/tmp/paddock-warmup"});
  for (const auto& e : on_template) CHECK(e.snapshots_before == 0);
  for (const auto& e : on_clones) {
    CHECK(e.argv == std::vector<std::string>{"true"});  // only the clones' pre-warm exec
  }
  pool.shutdown();
}

TEST_CASE("warm pool: a warm-up that fails still leaves a usable template") {
  FaultyProvider p;
  p.warmup = {"false"};
  WarmPool pool(p, VmSpec{}, fast(1, 1));
  REQUIRE(ready_n(pool, 1));
  CHECK(pool.stats().templates_built == 1);
  auto vm = pool.acquire();
  CHECK(vm);
  vm.reset();
  pool.shutdown();
  CHECK(p.inner.live_vms() == 0);
}

TEST_CASE("warm pool: a warm-up the provider cannot run fails the build: jobs boot cold") {
  FaultyProvider p;
  p.warmup = {"fail", "Jailer", "the agent went away"};  // the test double's scripted error
  WarmPool pool(p, VmSpec{}, fast(1, 1));
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.state == TemplateState::kBroken; },
                        kWait));
  CHECK(pool.stats().broken_reason.find("the agent went away") != std::string::npos);
  CHECK(templates_of(p.inner, "tpl-") == 0);  // no snapshot of that VM
  CHECK_FALSE(pool.acquire());
  pool.shutdown();
  CHECK(p.inner.live_vms() == 0);
}

TEST_CASE("warm pool: a job that finds the template being built waits for it, then gets a clone") {
  FaultyProvider p;
  p.hold();
  WarmPool pool(p, VmSpec{}, fast(0, 1));
  auto taken = std::async(std::launch::async, [&] { return pool.acquire(); });
  // The job waits (it does not boot cold beside the build) ...
  REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.template_waits == 1; }, kWait));
  CHECK(pool.stats().state == TemplateState::kBuilding);
  CHECK(taken.wait_for(0s) == std::future_status::timeout);
  // ... and once the build ends, it runs in a clone of the new template.
  p.release();
  REQUIRE(taken.wait_for(kWait) == std::future_status::ready);
  auto vm = taken.get();
  REQUIRE(vm);
  auto info = p.get(vm->id());
  REQUIRE(info);
  CHECK(info.value().restored_from_vm == vm->template_vm());
  CHECK(pool.stats().templates_built == 1);
  vm.reset();
  pool.shutdown();
  CHECK(p.inner.live_vms() == 0);
}

TEST_CASE(
    "warm pool: a build that fails, a shutdown or template_wait 0 send the waiting job cold") {
  SUBCASE("the build fails: the waiting job gets nothing, at once") {
    FaultyProvider p;
    p.hold();
    p.refuse_template_boot = true;
    WarmPool pool(p, VmSpec{}, fast(0, 1));
    auto taken = std::async(std::launch::async, [&] { return pool.acquire(); });
    REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.template_waits == 1; }, kWait));
    p.release();
    REQUIRE(taken.wait_for(kWait) == std::future_status::ready);
    CHECK_FALSE(taken.get());
    CHECK(pool.stats().state == TemplateState::kBroken);
    pool.shutdown();
  }
  SUBCASE("refills stop (the worker drains): the waiting job gets nothing") {
    FaultyProvider p;
    p.hold();
    WarmPool pool(p, VmSpec{}, fast(0, 1));
    auto taken = std::async(std::launch::async, [&] { return pool.acquire(); });
    REQUIRE(pool.wait_for([](const WarmPoolStats& s) { return s.template_waits == 1; }, kWait));
    pool.stop_refills();
    REQUIRE(taken.wait_for(kWait) == std::future_status::ready);
    CHECK_FALSE(taken.get());
    p.release();
    pool.shutdown();
    CHECK(p.inner.live_vms() == 0);
  }
  SUBCASE("template_wait 0: no wait, the job boots cold as before") {
    FaultyProvider p;
    p.hold();
    auto config = fast(0, 1);
    config.template_wait = 0ms;
    WarmPool pool(p, VmSpec{}, config);
    CHECK_FALSE(pool.acquire());
    CHECK(pool.stats().template_waits == 0);
    CHECK(pool.stats().misses == 1);
    p.release();
    pool.shutdown();
  }
}

TEST_CASE("warm pool: after stop_refills ready clones still serve, then nothing is restored") {
  MemoryProvider p;
  WarmPool pool(p, VmSpec{}, fast(1, 1));
  REQUIRE(ready_n(pool, 1));
  pool.stop_refills();
  auto vm = pool.acquire();
  CHECK(vm);
  CHECK_FALSE(pool.acquire());
  vm.reset();
  pool.shutdown();
  CHECK(p.live_vms() == 0);
}

TEST_CASE(
    "warm pools: one per spec, made on first use, and shutdown leaves no VM, keeps templates") {
  MemoryProvider p;
  worker::WarmPools pools(p, fast(1, 2), /*max_pools=*/2);
  pools.prepare(VmSpec{});
  REQUIRE(pools.find(VmSpec{}) != nullptr);
  CHECK(ready_n(*pools.find(VmSpec{}), 1));
  const VmSpec big{"default", 2, 256};
  CHECK(pools.find(big) == nullptr);
  // The first job of a spec makes its pool; while the template is built, jobs get nothing and
  // boot cold (on the test double the build may already be done: then this one is warm).
  (void)pools.acquire(big);
  REQUIRE(pools.find(big) != nullptr);
  CHECK(pools.find(big)->wait_for([](const WarmPoolStats& s) { return s.ready >= 1; }, kWait));
  auto vm = pools.acquire(big);
  REQUIRE(vm);
  CHECK(vm->template_vm().rfind("tpl-default-2x256-", 0) == 0);
  CHECK(p.get(vm->id()).value().spec.mem_mib == 256);
  CHECK_FALSE(pools.acquire(VmSpec{"default", 4, 512}));  // a third spec: over max_pools
  CHECK(pools.find(VmSpec{"default", 4, 512}) == nullptr);
  pools.shutdown();
  CHECK_FALSE(pools.acquire(VmSpec{}));
  vm.reset();
  CHECK(p.live_vms() == 0);
  CHECK(templates_of(p, "tpl-") == 2);
}

TEST_CASE(
    "warm pools: a tenant's jobs make at most its share of pools, then boot cold, while other "
    "tenants still get pools and every tenant is served by a pool made") {
  MemoryProvider p;
  worker::WarmPools pools(p, fast(1, 2), /*max_pools=*/8, /*per_tenant=*/2);
  const VmSpec a{"default", 1, 256};
  const VmSpec b{"default", 2, 256};
  const VmSpec c{"default", 3, 256};
  (void)pools.acquire(a, "mallory");
  (void)pools.acquire(b, "mallory");
  CHECK(pools.find(a) != nullptr);
  CHECK(pools.find(b) != nullptr);
  // A third shape of hers: no pool, boots cold.
  CHECK_FALSE(pools.acquire(c, "mallory"));
  CHECK(pools.find(c) == nullptr);
  // Another tenant's job of that shape makes its pool.
  (void)pools.acquire(c, "alice");
  REQUIRE(pools.find(c) != nullptr);
  // Once made, a pool serves everyone: mallory gets a clone of alice's shape.
  REQUIRE(pools.find(c)->wait_for([](const WarmPoolStats& s) { return s.ready >= 1; }, kWait));
  auto vm = pools.acquire(c, "mallory");
  CHECK(vm);
  vm.reset();
  pools.shutdown();
  CHECK(p.live_vms() == 0);
}
