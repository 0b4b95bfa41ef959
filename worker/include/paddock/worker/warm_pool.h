// Warm pools: VMs restored from a template snapshot and made ready before a job asks for one, so
// that a job starts in tens of milliseconds instead of a cold boot of seconds (BENCHMARKS.md has
// the figures; worker/README.md, "Warm pools", says how min, max and max_age meet demand).
//
// A *template* is one per VmSpec (image, vcpus, mem_mib): a VM `tpl-<image>-<vcpus>x<mem>-<ms>`
// that was created, booted, paused, snapshotted as `template` and destroyed; the snapshot stays
// (it is a cache the next worker start reuses). A *clone* is a VM restored from it, resumed,
// pinged and pre-warmed with one trivial exec. A WarmPool keeps clones of one template ready; a
// clone is handed out once (WarmVm) and never comes back: its holder destroys it.
//
// Thread-safety: every method of WarmPool and WarmPools may be called from any thread. A WarmVm
// is owned by one thread at a time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "paddock/runtime/provider.h"

namespace paddock::worker {

using WarmClock = std::chrono::steady_clock;

struct WarmPoolConfig {
  size_t min_ready = 1;  // ready clones kept at all times (refilled in the background)
  size_t max_ready = 2;  // ready clones never exceed this; demand moves the target up to it
  std::chrono::milliseconds max_age{300'000};         // a ready clone older than this is replaced
  std::chrono::milliseconds ping_timeout{1000};       // on acquire, and after a clone's resume
  std::chrono::milliseconds prewarm_timeout{30'000};  // the trivial exec of a new clone
  // A job that finds no ready clone while the template is being built waits this long for it
  // (then restores a clone from it) instead of booting cold at once: a build under way ends
  // sooner than a new cold boot would, and cold boots beside it slow it down. 0: boot cold.
  std::chrono::milliseconds template_wait{120'000};
  // The background thread looks at ages at least this often, and waits this long after a clone
  // could not be made before it tries again.
  std::chrono::milliseconds check_interval{1000};
  std::chrono::milliseconds retry_backoff{1000};
  std::string vm_prefix = "warm";  // clone ids: <vm_prefix>-<n>, n unique in this process
  // The clock ages are measured with; tests inject one. Empty: steady_clock::now.
  std::function<WarmClock::time_point()> now;
};

// A running clone handed out by a pool, owned by its holder: destroy() (or the destructor)
// destroys the VM. Move-only; destroy() is safe to call twice.
class WarmVm {
 public:
  WarmVm(runtime::Provider& provider, std::string vm_id, std::string template_vm);
  WarmVm(WarmVm&& other) noexcept;
  WarmVm& operator=(WarmVm&& other) noexcept;
  WarmVm(const WarmVm&) = delete;
  WarmVm& operator=(const WarmVm&) = delete;
  ~WarmVm();

  const std::string& id() const { return vm_id_; }
  const std::string& template_vm() const { return template_vm_; }
  // Destroys the VM; a second call does nothing and succeeds.
  runtime::Status destroy();

 private:
  runtime::Provider* provider_;
  std::string vm_id_;
  std::string template_vm_;
  bool live_ = true;
};

enum class TemplateState { kBuilding, kReady, kBroken };

struct WarmPoolStats {
  TemplateState state = TemplateState::kBuilding;
  std::string template_vm;    // "" unless kReady
  std::string broken_reason;  // set when kBroken
  size_t ready = 0;           // clones ready now
  size_t target = 0;          // ready clones the background thread aims at (min..max)
  uint64_t templates_built = 0;
  uint64_t templates_reused = 0;  // found by all_snapshots() at start
  uint64_t clones_made = 0;       // restored and resumed (ready or on demand)
  uint64_t clones_retired = 0;    // destroyed by the pool: too old, failed ping, shut down
  uint64_t handed_out = 0;        // acquire() answered with a clone
  uint64_t misses = 0;            // acquire() found no ready clone
  uint64_t template_waits = 0;    // acquire() waited for the template being built
};

// The ready clones of one VmSpec. The constructor starts the background thread, which finds or
// builds the template, then keeps the pool filled; jobs that arrive while the template is being
// built wait for it (up to template_wait), and boot cold only when it does not come.
class WarmPool {
 public:
  WarmPool(runtime::Provider& provider, runtime::VmSpec spec, WarmPoolConfig config);
  ~WarmPool();  // shutdown()
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  // A ready clone (oldest first, after an age check and a ping), else one restored on demand from
  // the template, after waiting up to template_wait for a template being built; nullopt when
  // there is no usable template (still building after the wait, broken, shut down) or the
  // restore failed: the caller boots cold.
  std::optional<WarmVm> acquire();

  // No more template builds or restores (ready clones are still handed out). Does not block.
  void stop_refills();
  // stop_refills(), waits for the background thread, destroys every ready clone. Idempotent.
  void shutdown();

  WarmPoolStats stats() const;
  // Waits until `ok(stats())` or the timeout; returns whether it held.
  bool wait_for(const std::function<bool(const WarmPoolStats&)>& ok,
                std::chrono::milliseconds timeout) const;
  // Wakes the background thread now (e.g. after a test moved its injected clock).
  void poke();

  const runtime::VmSpec& spec() const { return spec_; }

 private:
  struct Ready {
    std::string vm_id;
    std::string template_vm;
    WarmClock::time_point since;
  };
  struct Clone {
    std::string vm_id;
    std::optional<runtime::Error> error;
    bool at_restore = false;  // the error came from restore() itself
  };

  void background();
  void settle_template(std::unique_lock<std::mutex>& lock);
  WarmPoolStats stats_locked() const;
  Clone make_clone(const std::string& template_vm, bool prewarm);
  // A restore from `template_vm` failed with `error`: rebuild once, then mark broken.
  void template_failed(const std::string& template_vm, const runtime::Error& error);
  // Pops the oldest ready clone that is young enough; the old ones go to `retire`.
  std::optional<Ready> pop_ready_locked(std::vector<std::string>& retire);
  void retire(const std::vector<std::string>& vm_ids, const char* why);
  WarmClock::time_point now() const;
  void changed_locked();

  runtime::Provider& provider_;
  const runtime::VmSpec spec_;
  const WarmPoolConfig config_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;       // wakes the background thread
  mutable std::condition_variable changed_;  // wakes wait_for()
  std::deque<Ready> ready_;                  // oldest first
  TemplateState state_ = TemplateState::kBuilding;
  bool fresh_build_ = false;  // the next build skips all_snapshots() (a rebuild)
  int rebuilds_left_ = 1;
  std::string template_vm_;
  std::string broken_reason_;
  size_t target_ = 0;
  bool refills_stopped_ = false;
  bool closed_ = false;  // shut down: acquire() answers nullopt
  bool wake_ = false;
  WarmPoolStats counters_;
  std::once_flag shutdown_once_;
  std::jthread thread_;  // last: starts after every member it reads
};

// The worker's pools, one per VmSpec, created on first use (the default spec's at start, with
// prepare()); at most `max_pools`, jobs of further specs boot cold. A pool made for a tenant's
// job counts against that tenant: one tenant makes at most `per_tenant` pools, so that jobs of
// many shapes from one tenant cannot take every pool (and the templates they cost) from the
// others; its jobs of further shapes boot cold. Pools made by prepare() count against nobody,
// and a pool once made serves every tenant's jobs of its spec (each clone runs one job).
class WarmPools {
 public:
  WarmPools(runtime::Provider& provider, WarmPoolConfig config, size_t max_pools = 8,
            size_t per_tenant = 2);
  ~WarmPools();  // shutdown()

  void prepare(const runtime::VmSpec& spec);
  // A clone for a job of `tenant` ("": nobody's, as prepare()), or nullopt: boot cold.
  std::optional<WarmVm> acquire(const runtime::VmSpec& spec, std::string_view tenant = {});
  // The pool of `spec`, or nullptr if none was made. Valid until shutdown().
  WarmPool* find(const runtime::VmSpec& spec) const;
  // Every pool's stats, by its template prefix without the trailing '-' ("tpl-default-1x128").
  std::vector<std::pair<std::string, WarmPoolStats>> stats() const;

  void stop_refills();  // every pool's; new specs get no pool any more
  void shutdown();      // every pool's: ready clones destroyed, template snapshots kept

 private:
  using Key = std::tuple<std::string, uint32_t, uint32_t>;
  WarmPool* pool_for(const runtime::VmSpec& spec, std::string_view tenant);

  runtime::Provider& provider_;
  const WarmPoolConfig config_;
  const size_t max_pools_;
  const size_t per_tenant_;
  mutable std::mutex mu_;
  bool stopped_ = false;
  std::map<Key, std::unique_ptr<WarmPool>> pools_;
  std::map<std::string, size_t, std::less<>> made_for_;  // pools made for each tenant's jobs
  std::set<std::string, std::less<>> told_;  // tenants whose bound was logged (once each)
};

}  // namespace paddock::worker
