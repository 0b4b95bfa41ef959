// The broker loop's timer queue (broker/src/timer_queue.h): one deadline per key, earliest first.
#include <doctest/doctest.h>

#include "timer_queue.h"

using namespace paddock::broker;
using Kind = TimerQueue::Kind;
using std::chrono::milliseconds;

TEST_CASE("timer queue: next() is the earliest deadline and take_due() fires due timers in order") {
  TimerQueue t;
  const auto t0 = TimerQueue::Clock::now();
  CHECK_FALSE(t.next().has_value());
  t.set(Kind::kHeartbeat, t0 + milliseconds(100));
  t.set(TimerQueue::Key{Kind::kRetry, "b"}, t0 + milliseconds(20));
  t.set(TimerQueue::Key{Kind::kRetry, "a"}, t0 + milliseconds(20));  // same deadline, set later
  t.set(Kind::kClaim, t0 + milliseconds(50));
  CHECK(t.size() == 4);
  REQUIRE(t.next().has_value());
  CHECK(*t.next() == t0 + milliseconds(20));

  CHECK(t.take_due(t0 + milliseconds(19)).empty());
  auto due = t.take_due(t0 + milliseconds(50));
  REQUIRE(due.size() == 3);
  CHECK(due[0] == TimerQueue::Key{Kind::kRetry, "b"});
  CHECK(due[1] == TimerQueue::Key{Kind::kRetry, "a"});
  CHECK(due[2] == TimerQueue::Key{Kind::kClaim, ""});
  CHECK_FALSE(t.armed(Kind::kClaim));  // fired timers are disarmed
  CHECK(t.armed(Kind::kHeartbeat));
  CHECK(*t.next() == t0 + milliseconds(100));
}

TEST_CASE("timer queue: set() of an armed key moves it and cancel() disarms it") {
  TimerQueue t;
  const auto t0 = TimerQueue::Clock::now();
  t.set(Kind::kHeartbeat, t0 + milliseconds(10));
  t.set(Kind::kHeartbeat, t0 + milliseconds(30));  // moved later: fires once, at 30
  CHECK(t.size() == 1);
  CHECK(*t.next() == t0 + milliseconds(30));
  CHECK(t.take_due(t0 + milliseconds(20)).empty());
  CHECK(t.take_due(t0 + milliseconds(30)).size() == 1);
  CHECK_FALSE(t.next().has_value());

  t.set(TimerQueue::Key{Kind::kRetry, "x"}, t0 + milliseconds(5));
  t.set(Kind::kRejoin, t0 + milliseconds(7));
  CHECK(t.cancel(TimerQueue::Key{Kind::kRetry, "x"}));
  CHECK_FALSE(t.cancel(TimerQueue::Key{Kind::kRetry, "x"}));
  CHECK(*t.next() == t0 + milliseconds(7));
  auto due = t.take_due(t0 + milliseconds(100));
  REQUIRE(due.size() == 1);
  CHECK(due[0].kind == Kind::kRejoin);
}

TEST_CASE("timer queue: cancel_all() disarms every timer of one kind, and no other") {
  TimerQueue t;
  const auto t0 = TimerQueue::Clock::now();
  for (int i = 0; i < 100; ++i) {
    t.set(TimerQueue::Key{Kind::kRetry, "job-" + std::to_string(i)}, t0 + milliseconds(i));
  }
  t.set(Kind::kHeartbeat, t0 + milliseconds(50));
  t.cancel_all(Kind::kRetry);
  CHECK(t.size() == 1);
  auto due = t.take_due(t0 + milliseconds(1000));
  REQUIRE(due.size() == 1);
  CHECK(due[0].kind == Kind::kHeartbeat);
  // A key set again after cancel_all is armed anew.
  t.set(TimerQueue::Key{Kind::kRetry, "job-3"}, t0 + milliseconds(2));
  CHECK(t.take_due(t0 + milliseconds(2)).size() == 1);
}
