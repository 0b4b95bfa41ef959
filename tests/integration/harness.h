// Test harness for integration tests: real paddock-broker and paddock-worker processes on
// loopback TCP, owned so that every test ends with nothing left running.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/process.hpp>

#include "paddock/client/client.h"

namespace paddock::testing {

using namespace std::chrono_literals;

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process with its output in a log file. The destructor kills (SIGKILL) and reaps it.
class Process {
 public:
  Process(const std::string& exe, const std::vector<std::string>& args, const std::string& log);
  ~Process();
  Process(Process&&) = default;

  int pid() const { return child_->id(); }
  bool running();
  void signal(int sig);
  // Exit code, or nullopt if still running after `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  const std::string& log() const { return log_; }

 private:
  std::unique_ptr<boost::process::child> child_;
  std::string log_;
};

struct Broker {
  std::unique_ptr<Process> process;
  std::string client_endpoint;
  std::string worker_endpoint;
  std::string metrics_address;  // HOST:PORT, if started with --metrics-address
};

// Starts paddock-broker on ephemeral loopback ports (or the given endpoints) and waits until it
// has bound them. With `netns`, inside that network namespace (`ip netns exec`).
Broker start_broker(const TempDir& dir, std::vector<std::string> extra_args = {},
                    const std::string& client_ep = "tcp://127.0.0.1:*",
                    const std::string& worker_ep = "tcp://127.0.0.1:*",
                    const std::string& netns = "");

std::unique_ptr<Process> start_worker(const TempDir& dir, const std::string& broker_worker_ep,
                                      const std::string& worker_id, int slots,
                                      std::vector<std::string> extra_args = {},
                                      const std::string& netns = "");

schemas::JobRequest job(std::string id, std::vector<std::string> argv);

// Every answer the broker sent, per job_id, until each of `expected` has a final answer (RESULT
// or ERROR) or `timeout` passes; then `settle` more to catch duplicates.
struct Answers {
  std::map<std::string, std::vector<client::Event>> finals;  // RESULT/ERROR per job
  std::set<std::string> accepted;
  std::vector<client::Event> others;  // REJECTED, invalid, ...
  size_t answered() const { return finals.size(); }
  bool all_exactly_once(const std::vector<std::string>& ids) const;
};
Answers collect(client::Client& c, const std::vector<std::string>& expected,
                std::chrono::milliseconds timeout, std::chrono::milliseconds settle = 300ms);

// Reads `c`'s events into `seen` until done() or `timeout`; returns done().
bool read_until(client::Client& c, std::vector<client::Event>& seen,
                const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s);

// Reads a whole file (for logs in failure messages).
std::string slurp(const std::string& path);

}  // namespace paddock::testing
