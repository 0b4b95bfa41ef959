#include "ledger.h"

#include <doctest/doctest.h>
#include <signal.h>

#include <thread>

namespace paddock::testing {

namespace {
using Clock = std::chrono::steady_clock;
bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}
}  // namespace

std::string describe(const client::Event& ev) {
  if (ev.kind == client::Event::Kind::kResult) {
    const auto& r = ev.result;
    return "RESULT{exit " + std::to_string(r.exit_code) + ", stdout '" + r.stdout_data +
           "', worker '" + r.worker_id + "', attempt " + std::to_string(r.attempt) + ", total_us " +
           std::to_string(r.timings.total_us) + "}";
  }
  if (ev.kind == client::Event::Kind::kError) {
    const auto& e = ev.error;
    return "ERROR{" + std::to_string(e.code) + " " + e.variant + ": " + e.message + ", worker '" +
           e.worker_id + "', attempt " + std::to_string(e.attempt) + "}";
  }
  return "other{" + ev.detail + "}";
}

bool same_answer(const client::Event& a, const client::Event& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == client::Event::Kind::kResult) return a.result == b.result;
  return a.error == b.error;
}

void Ledger::take(const client::Event& ev) {
  switch (ev.kind) {
    case client::Event::Kind::kAccepted:
      accepted.insert(ev.accepted_ids.begin(), ev.accepted_ids.end());
      return;
    case client::Event::Kind::kResult:
    case client::Event::Kind::kError: {
      const std::string& id =
          ev.kind == client::Event::Kind::kResult ? ev.result.job_id : ev.error.job_id;
      ++count[id];
      auto [it, fresh] = first.emplace(id, ev);
      if (!fresh && !same_answer(it->second, ev)) {
        conflicts.push_back(id + ": " + describe(it->second) + " then " + describe(ev));
      }
      return;
    }
    default:
      others.push_back(ev);
      return;
  }
}

std::vector<std::string> Ledger::missing(const std::vector<std::string>& ids) const {
  std::vector<std::string> out;
  for (const auto& id : ids) {
    if (!first.count(id)) out.push_back(id);
  }
  return out;
}

size_t Ledger::answered_twice() const {
  size_t n = 0;
  for (const auto& [id, c] : count) n += c > 1;
  return n;
}

int pump(client::Client& c, Ledger& book, Clock::time_point deadline,
         const std::function<bool()>& done, const std::vector<std::string>* fetch_ids,
         std::chrono::milliseconds refetch) {
  int rounds = 0;
  auto next_fetch = Clock::now();
  while (!done()) {
    const auto now = Clock::now();
    if (now >= deadline) break;
    if (fetch_ids && now >= next_fetch) {
      for (const auto& id : book.missing(*fetch_ids)) c.fetch(id);
      ++rounds;
      next_fetch = now + refetch;
    }
    auto ev = c.next(std::min<std::chrono::milliseconds>(
        50ms, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)));
    if (ev) book.take(*ev);
  }
  return rounds;
}

void drain(client::Client& c, Ledger& book) {
  while (auto ev = c.next(0ms)) book.take(*ev);
}

void wait_for_log(const Broker& b, const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!contains(slurp(b.process->log() + ".err"), text)) {
    REQUIRE_MESSAGE(Clock::now() < deadline, "broker never logged \"" << text << "\"");
    std::this_thread::sleep_for(20ms);
  }
}

void kill_broker(Broker& b) {
  b.process->signal(SIGKILL);
  REQUIRE(b.process->wait_for(5s).has_value());
}

}  // namespace paddock::testing
