#include "harness.h"

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

namespace bp = boost::process;
namespace fs = std::filesystem;

namespace paddock::testing {

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "paddock-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Process::Process(const std::string& exe, const std::vector<std::string>& args,
                 const std::string& log)
    : log_(log) {
  if (!fs::exists(exe)) throw std::runtime_error("binary missing: " + exe);
  child_ = std::make_unique<bp::child>(exe, bp::args(args), bp::std_out > log,
                                       bp::std_err > log + ".err", bp::std_in < bp::null);
}

Process::~Process() {
  if (!child_) return;
  std::error_code ec;
  if (child_->running(ec)) child_->terminate(ec);  // SIGKILL
  child_->wait(ec);
}

bool Process::running() {
  std::error_code ec;
  return child_->running(ec);
}

void Process::signal(int sig) { ::kill(child_->id(), sig); }

std::optional<int> Process::wait_for(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    if (!child_->running(ec)) return child_->exit_code();
    std::this_thread::sleep_for(10ms);
  }
  return std::nullopt;
}

namespace {
// `exe args…`, or `ip netns exec NS exe args…`.
std::unique_ptr<Process> spawn_in(const std::string& netns, const std::string& exe,
                                  std::vector<std::string> args, const std::string& log) {
  if (netns.empty()) return std::make_unique<Process>(exe, args, log);
  args.insert(args.begin(), {"netns", "exec", netns, exe});
  return std::make_unique<Process>("/usr/sbin/ip", args, log);
}
}  // namespace

Broker start_broker(const TempDir& dir, std::vector<std::string> extra_args,
                    const std::string& client_ep, const std::string& worker_ep,
                    const std::string& netns) {
  static int counter = 0;
  const std::string tag = std::to_string(++counter);
  const std::string ready = dir.path() + "/broker-" + tag + ".ready";
  std::vector<std::string> args = {"--client-endpoint", client_ep, "--worker-endpoint", worker_ep,
                                   "--ready-file",      ready,     "--log-level",       "info"};
  // The broker journals by default under a state dir; a test that wants the journal says where
  // (--journal / --state-dir), the others run without one.
  const bool journal_chosen = std::any_of(extra_args.begin(), extra_args.end(), [](const auto& a) {
    return a == "--journal" || a == "--state-dir" || a == "--no-journal" || a == "--store";
  });
  if (!journal_chosen) args.push_back("--no-journal");
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  Broker b;
  b.process = spawn_in(netns, PADDOCK_BROKER_BIN, args, dir.path() + "/broker-" + tag + ".log");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!fs::exists(ready)) {
    if (std::chrono::steady_clock::now() > deadline || !b.process->running()) {
      throw std::runtime_error("broker did not start: " + slurp(b.process->log() + ".err"));
    }
    std::this_thread::sleep_for(10ms);
  }
  auto j = nlohmann::json::parse(slurp(ready));
  b.client_endpoint = j.at("client");
  b.worker_endpoint = j.at("worker");
  b.metrics_address = j.value("metrics", "");
  return b;
}

std::unique_ptr<Process> start_worker(const TempDir& dir, const std::string& broker_worker_ep,
                                      const std::string& worker_id, int slots,
                                      std::vector<std::string> extra_args,
                                      const std::string& netns) {
  std::vector<std::string> args = {"--broker", broker_worker_ep, "--worker-id",
                                   worker_id,  "--slots",        std::to_string(slots)};
  // The in-memory test double unless the test chose a backend.
  if (std::find(extra_args.begin(), extra_args.end(), "--backend") == extra_args.end()) {
    args.insert(args.end(), {"--backend", "memory"});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return spawn_in(netns, PADDOCK_WORKER_BIN, args, dir.path() + "/worker-" + worker_id + ".log");
}

schemas::JobRequest job(std::string id, std::vector<std::string> argv) {
  schemas::JobRequest r;
  r.job_id = std::move(id);
  r.argv = std::move(argv);
  return r;
}

bool Answers::all_exactly_once(const std::vector<std::string>& ids) const {
  if (finals.size() != ids.size()) return false;
  for (const auto& id : ids) {
    auto it = finals.find(id);
    if (it == finals.end() || it->second.size() != 1) return false;
  }
  return true;
}

bool read_until(client::Client& c, std::vector<client::Event>& seen,
                const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (auto ev = c.next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now))) {
      seen.push_back(std::move(*ev));
    }
  }
  return true;
}

Answers collect(client::Client& c, const std::vector<std::string>& expected,
                std::chrono::milliseconds timeout, std::chrono::milliseconds settle) {
  Answers a;
  const std::set<std::string> want(expected.begin(), expected.end());
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool settling = false;
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    auto ev = c.next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    if (!ev) continue;
    switch (ev->kind) {
      case client::Event::Kind::kAccepted:
        a.accepted.insert(ev->accepted_ids.begin(), ev->accepted_ids.end());
        break;
      case client::Event::Kind::kResult:
        a.finals[ev->result.job_id].push_back(*ev);
        break;
      case client::Event::Kind::kError:
        a.finals[ev->error.job_id].push_back(*ev);
        break;
      default:
        a.others.push_back(*ev);
        break;
    }
    if (!settling) {
      size_t done = 0;
      for (const auto& id : want) done += a.finals.count(id);
      if (done == want.size()) {
        settling = true;
        deadline = std::chrono::steady_clock::now() + settle;
      }
    }
  }
  return a;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace paddock::testing
