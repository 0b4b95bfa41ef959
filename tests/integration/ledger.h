// A submitter's own bookkeeping for fault tests (durability, shared queue): the first final
// answer per job, how many came, and every job that got two answers that differ; and helpers
// that pump a client into it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "harness.h"

namespace paddock::testing {

// A final answer in one line, for failure messages.
std::string describe(const client::Event& ev);
bool same_answer(const client::Event& a, const client::Event& b);

struct Ledger {
  std::set<std::string> accepted;
  std::map<std::string, client::Event> first;
  std::map<std::string, int> count;
  std::vector<std::string> conflicts;
  std::vector<client::Event> others;

  size_t answered() const { return first.size(); }
  void take(const client::Event& ev);
  std::vector<std::string> missing(const std::vector<std::string>& ids) const;
  // Jobs that got more than one final answer.
  size_t answered_twice() const;
};

// Reads answers into `book` until `done()` or `deadline`. With `fetch_ids`, FETCHes those of them
// still unanswered at once and then every `refetch` (a FETCH of a job still queued or running is
// answered when it ends; repeating it covers an answer sent to a socket that is gone). Returns
// how many FETCH rounds it sent.
int pump(client::Client& c, Ledger& book, std::chrono::steady_clock::time_point deadline,
         const std::function<bool()>& done, const std::vector<std::string>* fetch_ids = nullptr,
         std::chrono::milliseconds refetch = 1000ms);
// Reads what is already waiting on `c` (answers that arrived before the broker died).
void drain(client::Client& c, Ledger& book);
void wait_for_log(const Broker& b, const std::string& text, std::chrono::milliseconds timeout);
void kill_broker(Broker& b);

}  // namespace paddock::testing
