#include "timer_queue.h"

namespace paddock::broker {

void TimerQueue::set(const Key& key, Clock::time_point when) {
  const uint64_t seq = next_seq_++;
  live_[key] = seq;
  heap_.push(Entry{when, seq, key});
}

bool TimerQueue::cancel(const Key& key) { return live_.erase(key) != 0; }

void TimerQueue::cancel_all(Kind kind) {
  std::erase_if(live_, [kind](const auto& kv) { return kv.first.kind == kind; });
}

void TimerQueue::prune() {
  while (!heap_.empty()) {
    auto it = live_.find(heap_.top().key);
    if (it != live_.end() && it->second == heap_.top().seq) return;
    heap_.pop();
  }
}

std::optional<TimerQueue::Clock::time_point> TimerQueue::next() {
  prune();
  if (heap_.empty()) return std::nullopt;
  return heap_.top().when;
}

std::vector<TimerQueue::Key> TimerQueue::take_due(Clock::time_point now) {
  std::vector<Key> due;
  for (prune(); !heap_.empty() && heap_.top().when <= now; prune()) {
    live_.erase(heap_.top().key);
    due.push_back(heap_.top().key);
    heap_.pop();
  }
  return due;
}

}  // namespace paddock::broker
