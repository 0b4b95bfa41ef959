#include "paddock/worker/warm_pool.h"

#include <algorithm>
#include <atomic>

#include <spdlog/spdlog.h>

#include "template.h"

namespace paddock::worker {
namespace {

namespace rt = paddock::runtime;
using std::chrono::milliseconds;

// Clone ids are unique within the process, across pools (and across a pool's restart in tests:
// a provider never reuses a destroyed VM's id).
std::atomic<uint64_t> g_next_clone{1};

// The provider refuses to restore from a snapshot that is missing, corrupted or was written by
// another QEMU or image: the template is bad, not the clone.
bool is_template_fault(const rt::Error& e) {
  return e.variant() == rt::Variant::kUnsupported || e.variant() == rt::Variant::kSnapshotNotFound;
}

WarmPoolConfig normalized(WarmPoolConfig c) {
  c.max_ready = std::max(c.max_ready, c.min_ready);
  return c;
}

}  // namespace

WarmPool::WarmPool(rt::Provider& provider, rt::VmSpec spec, WarmPoolConfig config)
    : provider_(provider), spec_(std::move(spec)), config_(normalized(std::move(config))) {
  target_ = config_.min_ready;
  thread_ = std::jthread([this] { background(); });
}

WarmPool::~WarmPool() { shutdown(); }

WarmClock::time_point WarmPool::now() const {
  return config_.now ? config_.now() : WarmClock::now();
}

void WarmPool::changed_locked() { changed_.notify_all(); }

void WarmPool::background() {
  std::unique_lock lock(mu_);
  while (!refills_stopped_) {
    if (state_ == TemplateState::kBuilding) {
      settle_template(lock);
      continue;
    }
    if (state_ == TemplateState::kBroken) {
      cv_.wait(lock, [&] { return refills_stopped_ || state_ != TemplateState::kBroken; });
      continue;
    }
    // Clones that grew too old unused are replaced; each lowers the target by one (down to min).
    std::vector<std::string> old;
    const auto t = now();
    while (!ready_.empty() && t - ready_.front().since > config_.max_age) {
      old.push_back(ready_.front().vm_id);
      ready_.pop_front();
      if (target_ > config_.min_ready) --target_;
    }
    if (!old.empty()) {
      lock.unlock();
      retire(old, "too old");
      lock.lock();
      continue;
    }
    if (ready_.size() < target_) {
      const std::string tpl = template_vm_;
      lock.unlock();
      Clone c = make_clone(tpl, /*prewarm=*/true);
      if (c.error && c.at_restore && is_template_fault(*c.error)) {
        template_failed(tpl, *c.error);
        lock.lock();
        continue;
      }
      lock.lock();
      if (c.error) {
        spdlog::warn("warm pool {}: could not make a clone of '{}': {}; again in {} ms",
                     template_prefix(spec_), tpl, c.error->message(),
                     config_.retry_backoff.count());
        cv_.wait_for(lock, config_.retry_backoff, [&] { return refills_stopped_; });
        continue;
      }
      if (refills_stopped_ || ready_.size() >= config_.max_ready) {
        lock.unlock();
        retire({c.vm_id}, "not needed");
        lock.lock();
        continue;
      }
      ready_.push_back(Ready{c.vm_id, tpl, now()});
      changed_locked();
      continue;
    }
    // Full: sleep until the oldest clone expires, the check interval passes, or a poke.
    auto wait = config_.check_interval;
    if (!ready_.empty()) {
      const auto left = std::chrono::duration_cast<milliseconds>(
          config_.max_age - (t - ready_.front().since) + milliseconds(1));
      wait = std::clamp(left, milliseconds(1), wait);
    }
    cv_.wait_for(lock, wait, [&] { return refills_stopped_ || wake_; });
    wake_ = false;
  }
}

void WarmPool::settle_template(std::unique_lock<std::mutex>& lock) {
  const bool fresh = fresh_build_;
  lock.unlock();
  const auto t0 = WarmClock::now();
  std::optional<std::string> found;
  if (!fresh) found = find_template(provider_, spec_);
  rt::Result<std::string> tpl =
      found ? rt::Result<std::string>(*found) : build_template(provider_, spec_);
  const auto took = std::chrono::duration_cast<milliseconds>(WarmClock::now() - t0).count();
  lock.lock();
  if (tpl) {
    state_ = TemplateState::kReady;
    template_vm_ = tpl.value();
    ++(found ? counters_.templates_reused : counters_.templates_built);
    spdlog::info("warm pool {}: template '{}' {} ({} ms)", template_prefix(spec_), template_vm_,
                 found ? "reused" : "built", took);
  } else {
    state_ = TemplateState::kBroken;
    broken_reason_ = "template build failed: " + tpl.error().message();
    spdlog::error("warm pool {}: {}; its jobs boot cold", template_prefix(spec_), broken_reason_);
  }
  changed_locked();
}

WarmPool::Clone WarmPool::make_clone(const std::string& template_vm, bool prewarm) {
  Clone c;
  c.vm_id = config_.vm_prefix + "-" + std::to_string(g_next_clone.fetch_add(1));
  if (auto st = provider_.restore(template_vm, kTemplateSnapshot, c.vm_id); !st) {
    c.error = st.error();
    c.at_restore = true;
    return c;
  }
  // From here on the clone exists: a failure destroys it.
  auto fail = [&](rt::Error e) {
    retire({c.vm_id}, "could not be made ready");
    c.error = std::move(e);
    return c;
  };
  if (auto st = provider_.resume(c.vm_id); !st) return fail(st.error());
  if (auto st = provider_.ping(c.vm_id, config_.ping_timeout); !st) return fail(st.error());
  if (prewarm) {
    // Under TCG a new clone's first exec is slow (≈250 ms: TCG translates its code afresh), the
    // next ≈15 ms: pay it here, not in a job.
    rt::ExecRequest req;
    req.argv = {"true"};
    req.timeout_ms = static_cast<uint32_t>(config_.prewarm_timeout.count());
    auto x = provider_.exec(c.vm_id, req, {});
    if (!x) return fail(x.error());
    if (x.value().exit_code != 0 || x.value().timed_out || x.value().signal != 0) {
      return fail(rt::Error::guest_agent("pre-warm exec of 'true' in '" + c.vm_id + "' exited " +
                                         std::to_string(x.value().exit_code)));
    }
  }
  std::lock_guard lock(mu_);
  ++counters_.clones_made;
  return c;
}

void WarmPool::template_failed(const std::string& template_vm, const rt::Error& error) {
  // Deleted first, so that whoever sees the new state sees the bad snapshot gone. A second thread
  // that met the same fault deletes nothing (SnapshotNotFound) and changes no state.
  if (auto st = provider_.delete_snapshot(template_vm, kTemplateSnapshot);
      !st && st.error().variant() != rt::Variant::kSnapshotNotFound) {
    spdlog::warn("warm pool {}: could not delete template '{}': {}", template_prefix(spec_),
                 template_vm, st.error().message());
  }
  std::lock_guard lock(mu_);
  if (state_ != TemplateState::kReady || template_vm_ != template_vm) return;  // handled
  template_vm_.clear();
  if (rebuilds_left_ > 0) {
    --rebuilds_left_;
    state_ = TemplateState::kBuilding;
    fresh_build_ = true;
    spdlog::warn(
        "warm pool {}: restore from template '{}' failed: {}; deleted it, building a new "
        "one",
        template_prefix(spec_), template_vm, error.message());
  } else {
    state_ = TemplateState::kBroken;
    broken_reason_ =
        "restore from template '" + template_vm + "' failed after a rebuild: " + error.message();
    spdlog::error("warm pool {}: {}; its jobs boot cold", template_prefix(spec_), broken_reason_);
  }
  wake_ = true;
  cv_.notify_all();
  changed_locked();
}

std::optional<WarmPool::Ready> WarmPool::pop_ready_locked(std::vector<std::string>& retire) {
  const auto t = now();
  while (!ready_.empty()) {
    Ready r = std::move(ready_.front());
    ready_.pop_front();
    if (t - r.since > config_.max_age) {
      retire.push_back(std::move(r.vm_id));
      if (target_ > config_.min_ready) --target_;
      continue;
    }
    return r;
  }
  return std::nullopt;
}

void WarmPool::retire(const std::vector<std::string>& vm_ids, const char* why) {
  for (const auto& id : vm_ids) {
    spdlog::debug("warm pool {}: destroying clone '{}' ({})", template_prefix(spec_), id, why);
    if (auto st = provider_.destroy(id); !st) {
      spdlog::error("warm pool {}: destroy of clone '{}' ({}) failed: {}", template_prefix(spec_),
                    id, why, st.error().message());
    }
  }
  std::lock_guard lock(mu_);
  counters_.clones_retired += vm_ids.size();
  changed_locked();
}

std::optional<WarmVm> WarmPool::acquire() {
  std::vector<std::string> old;
  std::optional<Ready> pick;
  {
    std::lock_guard lock(mu_);
    if (closed_) return std::nullopt;
    pick = pop_ready_locked(old);
    wake_ = true;  // refill behind us
    cv_.notify_all();
    changed_locked();
  }
  retire(old, "too old");
  while (pick) {
    if (auto st = provider_.ping(pick->vm_id, config_.ping_timeout); st) {
      std::lock_guard lock(mu_);
      ++counters_.handed_out;
      changed_locked();
      return WarmVm(provider_, pick->vm_id, pick->template_vm);
    } else {
      spdlog::warn("warm pool {}: ready clone '{}' failed its ping: {}", template_prefix(spec_),
                   pick->vm_id, st.error().message());
    }
    retire({pick->vm_id}, "failed ping");
    old.clear();
    {
      std::lock_guard lock(mu_);
      pick = pop_ready_locked(old);
    }
    retire(old, "too old");
  }
  // Nothing ready: restore one on demand (still warm, without the pre-warm exec), and raise the
  // target so that the pool holds one more next time. A template being built is waited for: it
  // ends sooner than a cold boot started now, which would also take CPU from it.
  std::string tpl;
  {
    std::unique_lock lock(mu_);
    ++counters_.misses;
    if (state_ == TemplateState::kBuilding && config_.template_wait.count() > 0 && !closed_ &&
        !refills_stopped_) {
      ++counters_.template_waits;
      changed_locked();
      changed_.wait_for(lock, config_.template_wait, [&] {
        return closed_ || refills_stopped_ || state_ != TemplateState::kBuilding;
      });
    }
    if (closed_ || refills_stopped_ || state_ != TemplateState::kReady) return std::nullopt;
    tpl = template_vm_;
    target_ = std::min(target_ + 1, config_.max_ready);
    wake_ = true;
    cv_.notify_all();
  }
  Clone c = make_clone(tpl, /*prewarm=*/false);
  if (c.error) {
    if (c.at_restore && is_template_fault(*c.error)) {
      template_failed(tpl, *c.error);
    } else {
      spdlog::warn("warm pool {}: on-demand clone of '{}' failed: {}; the job boots cold",
                   template_prefix(spec_), tpl, c.error->message());
    }
    return std::nullopt;
  }
  std::lock_guard lock(mu_);
  ++counters_.handed_out;
  changed_locked();
  return WarmVm(provider_, c.vm_id, tpl);
}

void WarmPool::stop_refills() {
  std::lock_guard lock(mu_);
  refills_stopped_ = true;
  cv_.notify_all();
  changed_locked();
}

void WarmPool::shutdown() {
  std::call_once(shutdown_once_, [this] {
    stop_refills();
    if (thread_.joinable()) thread_.join();
    std::vector<std::string> ids;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      for (auto& r : ready_) ids.push_back(std::move(r.vm_id));
      ready_.clear();
    }
    retire(ids, "shut down");
  });
}

WarmPoolStats WarmPool::stats_locked() const {
  WarmPoolStats s = counters_;
  s.state = state_;
  s.template_vm = template_vm_;
  s.broken_reason = broken_reason_;
  s.ready = ready_.size();
  s.target = target_;
  return s;
}

WarmPoolStats WarmPool::stats() const {
  std::lock_guard lock(mu_);
  return stats_locked();
}

bool WarmPool::wait_for(const std::function<bool(const WarmPoolStats&)>& ok,
                        milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] { return ok(stats_locked()); });
}

void WarmPool::poke() {
  std::lock_guard lock(mu_);
  wake_ = true;
  cv_.notify_all();
}

}  // namespace paddock::worker
