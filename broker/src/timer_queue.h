// The broker loop's timers, all in one queue: a min-heap keyed by deadline. The loop asks it once
// per turn when to wake (next()), and after its poll takes every timer that came due (take_due()).
//
// A timer is a key: a kind, and for the per-job kinds a job id. Each key has at most one deadline:
// set() of an armed key moves it, cancel() disarms it. Stale heap entries (moved or cancelled) are
// skipped lazily, so set() and cancel() are O(log n) and next() is amortised O(1).
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

namespace paddock::broker {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Kind : uint8_t {
    kHeartbeat,  // the loop's tick: liveness, the held-job watchdog, deadlines, expiry
    kMetrics,    // the metrics may be published again (armed only while something is unpublished)
    kDashboard,  // the dashboard's snapshot likewise
    kClaim,      // shared queue: claims are tried at least this often
    kRejoin,     // shared queue: the next re-join after one failed
    kRetry,      // per job: a retryable failure's backoff ends, the job goes back to the queue
  };
  struct Key {
    Kind kind = Kind::kHeartbeat;
    std::string job_id;  // kRetry only
    bool operator==(const Key&) const = default;
  };

  // Arms `key` at `when`, replacing its deadline if it was armed.
  void set(const Key& key, Clock::time_point when);
  void set(Kind kind, Clock::time_point when) { set(Key{kind, {}}, when); }
  // Disarms `key`; false if it was not armed.
  bool cancel(const Key& key);
  bool cancel(Kind kind) { return cancel(Key{kind, {}}); }
  // Disarms every timer of `kind`.
  void cancel_all(Kind kind);
  bool armed(const Key& key) const { return live_.count(key) != 0; }
  bool armed(Kind kind) const { return armed(Key{kind, {}}); }
  size_t size() const { return live_.size(); }

  // The earliest deadline armed, if any.
  std::optional<Clock::time_point> next();
  // Disarms and returns every timer due at `now` (deadline <= now), earliest first; of equal
  // deadlines, the one set first.
  std::vector<Key> take_due(Clock::time_point now);

 private:
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<std::string>()(k.job_id) * 31 + static_cast<size_t>(k.kind);
    }
  };
  struct Entry {
    Clock::time_point when;
    uint64_t seq;  // the set() that made it; live_ holds the seq of a key's current entry
    Key key;
  };
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const {
      return a.when != b.when ? a.when > b.when : a.seq > b.seq;
    }
  };
  // Drops heap tops that no longer are a key's current entry.
  void prune();

  uint64_t next_seq_ = 0;
  std::priority_queue<Entry, std::vector<Entry>, Later> heap_;
  std::unordered_map<Key, uint64_t, KeyHash> live_;
};

}  // namespace paddock::broker
