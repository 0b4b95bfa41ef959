// Fault tests for the broker's journal (issue 7): real broker and worker processes over loopback
// TCP, the in-memory test double as the backend. A broker SIGKILLed and restarted on the same
// --journal loses nothing it accepted; a submitter that reconnects gets every answer with FETCH;
// a finished job submitted again is answered from the store, never run twice; a journal that is
// not a database, corrupt or truncated never makes the broker crash; a row damaged on disk is
// answered JournalDamaged, never run altered; a -wal removed underneath stops the broker.
#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <nlohmann/json.hpp>

#include "dashboard_probe.h"
#include "harness.h"
#include "ledger.h"

using namespace paddock;
using namespace paddock::testing;

namespace bp = boost::process;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> ids_of(const std::vector<schemas::JobRequest>& jobs) {
  std::vector<std::string> ids;
  for (const auto& j : jobs) ids.push_back(j.job_id);
  return ids;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return s;
}

// A broker run as a bare child process, so that a refusal to start and the raw wait status (exit
// code or signal) can be seen; start_broker() throws when the broker does not start.
struct RawBroker {
  std::unique_ptr<bp::child> child;
  std::string ready;
  std::string err_log;
  std::string client_endpoint;

  enum class Outcome { kReady, kExited, kHung };

  RawBroker() = default;
  RawBroker(const RawBroker&) = delete;
  RawBroker& operator=(const RawBroker&) = delete;
  ~RawBroker() {
    if (!child) return;
    std::error_code ec;
    if (child->running(ec)) child->terminate(ec);
    child->wait(ec);
  }

  // Starts a broker on `journal` and waits until it is ready or has exited.
  Outcome start(const TempDir& dir, const std::string& journal, const std::string& tag,
                std::chrono::milliseconds timeout = 10s) {
    return start_with(dir, {"--journal", journal}, tag, "", timeout);
  }

  // The same with `journal_args` for the journal flags (none: the broker's default), and
  // STATE_DIRECTORY set in its environment when `state_directory` is not empty.
  Outcome start_with(const TempDir& dir, const std::vector<std::string>& journal_args,
                     const std::string& tag, const std::string& state_directory,
                     std::chrono::milliseconds timeout = 10s) {
    ready = dir.path() + "/raw-" + tag + ".ready";
    err_log = dir.path() + "/raw-" + tag + ".err";
    std::vector<std::string> args = {"--client-endpoint", "tcp://127.0.0.1:*",
                                     "--worker-endpoint", "tcp://127.0.0.1:*",
                                     "--ready-file",      ready,
                                     "--log-level",       "info"};
    args.insert(args.end(), journal_args.begin(), journal_args.end());
    auto env = boost::this_process::environment();
    bp::environment child_env = env;
    if (!state_directory.empty()) child_env["STATE_DIRECTORY"] = state_directory;
    child = std::make_unique<bp::child>(PADDOCK_BROKER_BIN, bp::args(args),
                                        bp::std_out > dir.path() + "/raw-" + tag + ".out",
                                        bp::std_err > err_log, bp::std_in < bp::null, child_env);
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      std::error_code ec;
      if (!child->running(ec)) return Outcome::kExited;
      if (fs::exists(ready)) {
        client_endpoint = nlohmann::json::parse(slurp(ready)).at("client");
        return Outcome::kReady;
      }
      std::this_thread::sleep_for(10ms);
    }
    return Outcome::kHung;
  }

  // The raw wait status once the child has exited.
  int status() const { return child->native_exit_code(); }
  std::string stderr_text() const { return slurp(err_log); }

  // Waits for exit after `sig`; false if it is still running after `timeout`.
  bool stop(int sig, std::chrono::milliseconds timeout = 10s) {
    ::kill(child->id(), sig);
    const auto deadline = Clock::now() + timeout;
    std::error_code ec;
    while (child->running(ec)) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }
};

// A crash shows as death by a signal, or as a sanitizer's report (which exits non-zero).
void check_no_crash(const std::string& what, int raw_status, const std::string& err) {
  CAPTURE(what);
  CAPTURE(err);
  CHECK_FALSE(WIFSIGNALED(raw_status));
  CHECK_FALSE(contains(err, "AddressSanitizer"));
  CHECK_FALSE(contains(err, "runtime error:"));
  CHECK_FALSE(contains(err, "LeakSanitizer"));
}

// A refusal names the file and says it is corrupt or not a database.
void check_refusal(const std::string& what, const std::string& path, const RawBroker& b) {
  const std::string err = b.stderr_text();
  CAPTURE(what);
  CAPTURE(err);
  const int raw = b.status();
  check_no_crash(what, raw, err);
  REQUIRE(WIFEXITED(raw));
  CHECK(WEXITSTATUS(raw) != 0);
  CHECK(contains(err, path));
  const std::string l = lower(err);
  CHECK((contains(l, "corrupt") || contains(l, "not a database")));
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

std::string noise(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  for (auto& ch : s) {
    seed = seed * 1103515245u + 12345u;
    ch = static_cast<char>(seed >> 16);
  }
  return s;
}

}  // namespace

TEST_CASE(
    "durability: 2000 jobs in flight while the broker is SIGKILLed and restarted twice are all "
    "answered, none lost") {
  constexpr size_t kJobs = 2000;
  TempDir dir;
  const std::string journal = dir.path() + "/journal.db";
  const std::vector<std::string> broker_args = {"--journal", journal,      "--heartbeat-ms",
                                                "100",       "--liveness", "3"};
  auto broker = start_broker(dir, broker_args);
  const std::string client_ep = broker.client_endpoint, worker_ep = broker.worker_endpoint;
  auto w1 = start_worker(dir, worker_ep, "w1", 4, {"--heartbeat-ms", "100"});
  auto w2 = start_worker(dir, worker_ep, "w2", 4, {"--heartbeat-ms", "100"});
  wait_for_log(broker, "worker 'w1' ready", 10s);
  wait_for_log(broker, "worker 'w2' ready", 10s);

  // Even jobs take a while (so that jobs are on workers when the broker dies), odd ones print
  // their id (so that an answer is known to be this job's).
  std::vector<schemas::JobRequest> jobs;
  for (size_t i = 0; i < kJobs; ++i) {
    const std::string id = "dur-" + std::to_string(i);
    jobs.push_back(i % 2 == 0 ? job(id, {"sleep", "25"}) : job(id, {"echo", id}));
  }
  const auto ids = ids_of(jobs);
  const auto start = Clock::now();
  Ledger book;
  auto c = std::make_unique<client::Client>(client_ep);
  c->submit(jobs);
  pump(*c, book, Clock::now() + 30s,
       [&] { return book.accepted.size() == kJobs && book.answered() >= kJobs / 3; });
  REQUIRE(book.accepted.size() == kJobs);  // all journaled before the first kill
  REQUIRE(book.answered() >= kJobs / 3);

  int fetch_rounds = 0;
  std::vector<size_t> answered_at_kill;
  for (int kill = 1; kill <= 2; ++kill) {
    kill_broker(broker);
    drain(*c, book);
    answered_at_kill.push_back(book.answered());
    broker = start_broker(dir, broker_args, client_ep, worker_ep);
    // The submitter reconnects: a new socket, and FETCH of every job it has no answer for.
    c = std::make_unique<client::Client>(client_ep);
    if (kill == 1) {
      fetch_rounds += pump(
          *c, book, Clock::now() + 30s, [&] { return book.answered() >= 2 * kJobs / 3; }, &ids);
    }
  }
  fetch_rounds += pump(
      *c, book, Clock::now() + 120s, [&] { return book.answered() == kJobs; }, &ids);
  // A little longer, to catch late duplicates.
  pump(*c, book, Clock::now() + 300ms, [] { return false; });
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);

  size_t retried = 0, twice = 0;
  for (const auto& [id, ev] : book.first) {
    if (ev.kind == client::Event::Kind::kResult) retried += ev.result.attempt > 1;
  }
  for (const auto& [id, n] : book.count) twice += n > 1;
  MESSAGE("answered " << book.answered() << " of " << kJobs << " in " << elapsed.count()
                      << " ms; answered at the kills: " << answered_at_kill[0] << ", "
                      << answered_at_kill[1] << "; FETCH rounds " << fetch_rounds
                      << "; answers with attempt > 1: " << retried
                      << "; jobs answered more than once (same answer): " << twice);

  const auto missing = book.missing(ids);
  CHECK_MESSAGE(missing.empty(), missing.size() << " job(s) never answered, first: "
                                                << (missing.empty() ? "" : missing.front()));
  CHECK(book.answered() == kJobs);
  CHECK_MESSAGE(book.conflicts.empty(),
                book.conflicts.size() << " job(s) got two different answers, first: "
                                      << (book.conflicts.empty() ? "" : book.conflicts.front()));
  size_t not_ok = 0;
  std::string first_bad;
  for (size_t i = 0; i < kJobs; ++i) {
    auto it = book.first.find(ids[i]);
    if (it == book.first.end()) continue;
    const auto& ev = it->second;
    const bool ok = ev.kind == client::Event::Kind::kResult && ev.result.exit_code == 0 &&
                    ev.result.signal == 0 &&
                    ev.result.stdout_data == (i % 2 == 0 ? "" : ids[i] + "\n");
    if (!ok && not_ok++ == 0) first_bad = ids[i] + ": " + describe(ev);
  }
  CHECK_MESSAGE(not_ok == 0, not_ok << " answer(s) not a RESULT with exit 0 and the job's output, "
                                    << "first: " << first_bad);
  CHECK(book.others.empty());
  CHECK(w1->running());
  CHECK(w2->running());
}

TEST_CASE("durability: a worker SIGKILLed mid-job, the job finishes on another worker") {
  TempDir dir;
  auto broker = start_broker(dir, {"--journal", dir.path() + "/journal.db", "--heartbeat-ms", "100",
                                   "--liveness", "3", "--metrics-address", "127.0.0.1:0"});
  auto victim = start_worker(dir, broker.worker_endpoint, "victim", 2, {"--heartbeat-ms", "100"});
  wait_for_log(broker, "worker 'victim' ready", 10s);
  client::Client c(broker.client_endpoint);
  const std::vector<schemas::JobRequest> jobs = {job("mid-0", {"sleep", "1000"}),
                                                 job("mid-1", {"sleep", "1000"})};
  c.submit(jobs);
  // Both running on the victim (it has 2 slots; each job takes a second).
  REQUIRE(wait_until_running(broker.metrics_address, "mid-0"));
  REQUIRE(wait_until_running(broker.metrics_address, "mid-1"));
  victim->signal(SIGKILL);
  REQUIRE(victim->wait_for(5s).has_value());
  auto survivor =
      start_worker(dir, broker.worker_endpoint, "survivor", 2, {"--heartbeat-ms", "100"});
  auto answers = collect(c, ids_of(jobs), 15s, 300ms);
  REQUIRE(answers.all_exactly_once(ids_of(jobs)));
  for (const auto& id : ids_of(jobs)) {
    const auto& ev = answers.finals.at(id).front();
    CAPTURE(describe(ev));
    REQUIRE(ev.kind == client::Event::Kind::kResult);
    CHECK(ev.result.exit_code == 0);
    CHECK_FALSE(ev.result.timed_out);
    CHECK(ev.result.worker_id == "survivor");
    CHECK(ev.result.attempt == 2);  // the victim's dispatch was attempt 1
  }
  CHECK(survivor->running());
}

TEST_CASE("durability: a submitter that disconnects and reconnects gets everything with FETCH") {
  TempDir dir;
  auto broker =
      start_broker(dir, {"--journal", dir.path() + "/journal.db", "--heartbeat-ms", "100"});
  std::vector<std::string> ids;
  {
    // Half the jobs run while the first socket is open; their answers are sent to it and never
    // read. The other half is still queued (no worker) when the socket closes.
    client::Client first(broker.client_endpoint);
    auto w1 = start_worker(dir, broker.worker_endpoint, "w1", 4, {"--heartbeat-ms", "100"});
    wait_for_log(broker, "worker 'w1' ready", 10s);
    std::vector<schemas::JobRequest> early, late;
    for (int i = 0; i < 25; ++i) {
      early.push_back(job("early-" + std::to_string(i), {"echo", "early", std::to_string(i)}));
      late.push_back(job("late-" + std::to_string(i), {"echo", "late", std::to_string(i)}));
    }
    Ledger seen;  // only ACCEPTED is looked at: the answers are left unread
    first.submit(early);
    pump(first, seen, Clock::now() + 10s, [&] { return seen.accepted.size() == 25; });
    REQUIRE(seen.accepted.size() == 25);
    std::this_thread::sleep_for(500ms);  // the early jobs are answered to `first`, unread
    w1->signal(SIGTERM);
    REQUIRE(w1->wait_for(10s).has_value());
    first.submit(late);
    pump(first, seen, Clock::now() + 10s, [&] { return seen.accepted.size() == 50; });
    REQUIRE(seen.accepted.size() == 50);
    for (const auto& j : early) ids.push_back(j.job_id);
    for (const auto& j : late) ids.push_back(j.job_id);
  }  // the socket closes here
  auto w2 = start_worker(dir, broker.worker_endpoint, "w2", 4, {"--heartbeat-ms", "100"});

  client::Client second(broker.client_endpoint);
  Ledger book;
  pump(
      second, book, Clock::now() + 20s, [&] { return book.answered() == ids.size(); }, &ids, 500ms);
  pump(second, book, Clock::now() + 300ms, [] { return false; });
  const auto missing = book.missing(ids);
  CHECK_MESSAGE(missing.empty(), missing.size() << " job(s) never answered, first: "
                                                << (missing.empty() ? "" : missing.front()));
  CHECK(book.conflicts.empty());
  for (const auto& id : ids) {
    auto it = book.first.find(id);
    if (it == book.first.end()) continue;
    CAPTURE(describe(it->second));
    REQUIRE(it->second.kind == client::Event::Kind::kResult);
    const auto dash = id.find('-');
    CHECK(it->second.result.stdout_data == id.substr(0, dash) + " " + id.substr(dash + 1) + "\n");
    CHECK(it->second.result.exit_code == 0);
  }
  // The answers stay stored: a third socket FETCHes them all again, the same.
  client::Client third(broker.client_endpoint);
  Ledger again;
  for (const auto& id : ids) third.fetch(id);
  pump(third, again, Clock::now() + 10s, [&] { return again.answered() == ids.size(); });
  CHECK(again.answered() == ids.size());
  for (const auto& [id, ev] : again.first) {
    auto it = book.first.find(id);
    if (it == book.first.end()) continue;
    CAPTURE(id);
    CHECK(same_answer(ev, it->second));
  }
}

TEST_CASE("durability: a corrupt or truncated journal stops the broker with a clear message") {
  TempDir dir;
  SUBCASE("a file that is not a database") {
    const std::string path = dir.path() + "/garbage.db";
    write_file(path, noise(16384, 42));
    RawBroker b;
    const auto outcome = b.start(dir, path, "garbage");
    CAPTURE(b.stderr_text());
    REQUIRE(outcome == RawBroker::Outcome::kExited);
    check_refusal("garbage", path, b);
  }

  SUBCASE("a database whose pages after the first are overwritten") {
    // A journal closed cleanly (SIGTERM) holds its jobs in the main file; keep its header page,
    // overwrite everything after it.
    const std::string path = dir.path() + "/paged.db";
    {
      auto broker = start_broker(dir, {"--journal", path});
      client::Client c(broker.client_endpoint);
      std::vector<schemas::JobRequest> jobs;
      for (int i = 0; i < 200; ++i) {
        auto j = job("p-" + std::to_string(i), {"cat"});
        j.stdin_data = std::string(1024, 'a' + static_cast<char>(i % 26));
        jobs.push_back(j);
      }
      c.submit(jobs);
      Ledger seen;
      pump(c, seen, Clock::now() + 10s, [&] { return seen.accepted.size() == jobs.size(); });
      REQUIRE(seen.accepted.size() == jobs.size());
      broker.process->signal(SIGTERM);
      REQUIRE(broker.process->wait_for(10s).has_value());
    }
    std::string db = slurp(path);
    REQUIRE(db.size() > 100);
    REQUIRE(db.rfind(std::string("SQLite format 3\0", 16), 0) == 0);
    const uint32_t raw_page = (static_cast<uint8_t>(db[16]) << 8) | static_cast<uint8_t>(db[17]);
    const size_t page = raw_page == 1 ? 65536 : raw_page;
    MESSAGE("journal after SIGTERM: " << db.size() << " bytes, page " << page);
    REQUIRE(db.size() > page);
    const std::string garbage = noise(db.size() - page, 7);
    std::copy(garbage.begin(), garbage.end(), db.begin() + static_cast<std::ptrdiff_t>(page));
    std::error_code ec;
    fs::remove(path + "-wal", ec);
    fs::remove(path + "-shm", ec);
    write_file(path, db);
    RawBroker b;
    const auto outcome = b.start(dir, path, "paged");
    CAPTURE(b.stderr_text());
    REQUIRE(outcome == RawBroker::Outcome::kExited);
    check_refusal("paged", path, b);
  }

  SUBCASE("a journal truncated to half its size after a SIGKILL") {
    // The file's name does not say "journal": when the broker mentions it, it says so itself.
    const std::string path = dir.path() + "/state.db";
    // Jobs accepted and left queued (no worker), each with 512 bytes of stdin.
    auto accept = [&](Broker& broker, const std::string& prefix, int n) {
      client::Client c(broker.client_endpoint);
      std::vector<schemas::JobRequest> jobs;
      for (int i = 0; i < n; ++i) {
        auto j = job(prefix + std::to_string(i), {"cat"});
        j.stdin_data = std::string(512, 'x');
        jobs.push_back(j);
      }
      c.submit(jobs);
      Ledger seen;
      pump(c, seen, Clock::now() + 10s, [&] { return seen.accepted.size() == jobs.size(); });
      REQUIRE(seen.accepted.size() == jobs.size());
    };
    {
      // A first run stopped cleanly, so that the main file (not only its WAL) holds jobs.
      auto broker = start_broker(dir, {"--journal", path});
      accept(broker, "t-", 200);
      broker.process->signal(SIGTERM);
      REQUIRE(broker.process->wait_for(10s).has_value());
    }
    {
      auto broker = start_broker(dir, {"--journal", path});
      accept(broker, "u-", 20);
      kill_broker(broker);
    }
    const auto size = fs::file_size(path);
    MESSAGE("journal after SIGKILL: "
            << size << " bytes, WAL "
            << (fs::exists(path + "-wal") ? fs::file_size(path + "-wal") : 0) << " bytes");
    fs::resize_file(path, size / 2);
    std::error_code ec;
    fs::remove(path + "-wal", ec);
    fs::remove(path + "-shm", ec);

    RawBroker b;
    const auto outcome = b.start(dir, path, "truncated");
    REQUIRE(outcome != RawBroker::Outcome::kHung);
    if (outcome == RawBroker::Outcome::kExited) {
      MESSAGE("the broker refused the truncated journal: " << b.stderr_text());
      check_refusal("truncated", path, b);
      CHECK(contains(lower(b.stderr_text()), "journal"));
    } else {
      // It started and recovered what was intact: it serves, says so, and stops cleanly.
      client::Client c(b.client_endpoint);
      c.ping();
      auto ev = c.next(5s);
      REQUIRE(ev.has_value());
      CHECK(ev->kind == client::Event::Kind::kPong);
      c.submit(job("after-truncation", {"echo", "x"}));
      Ledger seen;
      pump(c, seen, Clock::now() + 5s,
           [&] { return seen.accepted.count("after-truncation") == 1; });
      CHECK(seen.accepted.count("after-truncation") == 1);
      REQUIRE(b.stop(SIGTERM));
      const std::string err = b.stderr_text();
      MESSAGE("the broker started on the truncated journal: " << err);
      check_no_crash("truncated, started", b.status(), err);
      CHECK(WIFEXITED(b.status()));
      CHECK(contains(lower(err), "journal"));
    }
  }
}

TEST_CASE(
    "durability: a known job_id submitted again after it finished gets its stored answer, not a "
    "second run") {
  TempDir dir;
  const std::vector<std::string> broker_args = {"--journal", dir.path() + "/journal.db",
                                                "--heartbeat-ms", "100"};
  auto broker = start_broker(dir, broker_args);
  const std::string client_ep = broker.client_endpoint, worker_ep = broker.worker_endpoint;
  // Cold starts: the worker names its VMs w1-vm-1, w1-vm-2, ... one per job it runs, so a job
  // that fails with VmNotFound tells how many jobs ran before it.
  auto worker = start_worker(dir, worker_ep, "w1", 1, {"--warm", "off", "--heartbeat-ms", "100"});
  const auto result_job = job("idem-r", {"echo", "once"});
  const auto error_job = job("idem-e", {"fail", "VmNotFound", "snap"});

  client::Client c(client_ep);
  Ledger book;
  c.submit(result_job);
  pump(c, book, Clock::now() + 10s, [&] { return book.first.count("idem-r") == 1; });
  c.submit(error_job);
  pump(c, book, Clock::now() + 10s, [&] { return book.first.count("idem-e") == 1; });
  REQUIRE(book.answered() == 2);
  const auto stored_r = book.first.at("idem-r");
  const auto stored_e = book.first.at("idem-e");
  REQUIRE(stored_r.kind == client::Event::Kind::kResult);
  CHECK(stored_r.result.stdout_data == "once\n");
  REQUIRE(stored_e.kind == client::Event::Kind::kError);
  CHECK(stored_e.error.message == "vm 'w1-vm-2' not found");

  // Submitted again, on the same socket and on a new one: ACCEPTED, then the stored answer.
  auto resubmit = [&](client::Client& to, const std::string& what) {
    CAPTURE(what);
    Ledger again;
    const std::vector<schemas::JobRequest> both = {result_job, error_job};
    to.submit(both);
    pump(to, again, Clock::now() + 10s,
         [&] { return again.accepted.size() == 2 && again.answered() == 2; });
    pump(to, again, Clock::now() + 300ms, [] { return false; });
    CHECK(again.accepted.count("idem-r") == 1);
    CHECK(again.accepted.count("idem-e") == 1);
    REQUIRE(again.answered() == 2);
    CAPTURE(describe(again.first.at("idem-r")));
    CAPTURE(describe(again.first.at("idem-e")));
    CHECK(same_answer(again.first.at("idem-r"), stored_r));
    CHECK(same_answer(again.first.at("idem-e"), stored_e));
    CHECK(again.count.at("idem-r") == 1);
    CHECK(again.count.at("idem-e") == 1);
    CHECK(again.others.empty());
  };
  resubmit(c, "same socket");
  {
    client::Client other(client_ep);
    resubmit(other, "new socket");
  }

  // Across a SIGKILL and restart on the same journal: FETCH and SUBMIT answer from the store, and
  // a job the broker never knew is UnknownJob.
  kill_broker(broker);
  broker = start_broker(dir, broker_args, client_ep, worker_ep);
  {
    client::Client after(client_ep);
    Ledger fetched;
    after.fetch("idem-r");
    after.fetch("idem-e");
    after.fetch("idem-never");
    pump(after, fetched, Clock::now() + 10s, [&] { return fetched.answered() == 3; });
    REQUIRE(fetched.answered() == 3);
    CHECK(same_answer(fetched.first.at("idem-r"), stored_r));
    CHECK(same_answer(fetched.first.at("idem-e"), stored_e));
    const auto& unknown = fetched.first.at("idem-never");
    CAPTURE(describe(unknown));
    REQUIRE(unknown.kind == client::Event::Kind::kError);
    CHECK(unknown.error.code == 105);
    CHECK(unknown.error.variant == "UnknownJob");
    resubmit(after, "after a restart");
  }

  // Nothing ran twice: the next job the worker runs is its third VM.
  client::Client probe_client(client_ep);
  Ledger probe;
  probe_client.submit(job("idem-probe", {"fail", "VmNotFound", "snap"}));
  pump(probe_client, probe, Clock::now() + 20s, [&] { return probe.answered() == 1; });
  REQUIRE(probe.first.count("idem-probe") == 1);
  const auto& p = probe.first.at("idem-probe");
  CAPTURE(describe(p));
  REQUIRE(p.kind == client::Event::Kind::kError);
  CHECK(p.error.message == "vm 'w1-vm-3' not found");
  CHECK(worker->running());
}

TEST_CASE(
    "durability: a submitter that stops reading does not stall the broker or other submitters, and "
    "loses nothing") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 16);
  // The slow one: 2000 jobs whose answers (10 KB of output each, 20 MB in all) it does not read
  // for a while, so its connection backs up into the broker.
  client::Client slow(broker.client_endpoint);
  std::vector<schemas::JobRequest> heavy;
  std::vector<std::string> heavy_ids;
  const std::string chunk(10'000, 'z');
  for (int i = 0; i < 2000; ++i) {
    heavy.push_back(job("slow-" + std::to_string(i), {"echo", chunk}));
    heavy_ids.push_back(heavy.back().job_id);
  }
  slow.submit(heavy);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Meanwhile another submitter's jobs go through.
  client::Client fast(broker.client_endpoint);
  std::vector<schemas::JobRequest> light;
  std::vector<std::string> light_ids;
  for (int i = 0; i < 200; ++i) {
    light.push_back(job("fast-" + std::to_string(i), {"echo", "quick"}));
    light_ids.push_back(light.back().job_id);
  }
  const auto t0 = std::chrono::steady_clock::now();
  fast.submit(light);
  auto quick = collect(fast, light_ids, 30s);
  MESSAGE("200 jobs of a reading submitter, behind 20 MB of unread answers: "
          << std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - t0)
                 .count()
          << " ms");
  REQUIRE(quick.all_exactly_once(light_ids));
  // The slow submitter reads at last: every answer is there.
  auto late = collect(slow, heavy_ids, 60s);
  REQUIRE(late.all_exactly_once(heavy_ids));
  for (const auto& id : heavy_ids) {
    const auto& ev = late.finals.at(id).front();
    REQUIRE(ev.kind == client::Event::Kind::kResult);
    CHECK(ev.result.stdout_data.size() == chunk.size() + 1);
  }
}

TEST_CASE(
    "durability: with the journal on, priorities, a full queue, CANCEL and deadlines behave as "
    "without it, and hold across a restart") {
  TempDir dir;
  const std::vector<std::string> broker_args = {
      "--journal", dir.path() + "/journal.db", "--max-queue", "6", "--heartbeat-ms", "100"};
  auto broker = start_broker(dir, broker_args);
  const std::string client_ep = broker.client_endpoint, worker_ep = broker.worker_endpoint;

  // No worker yet: everything stays queued. Six jobs fill the queue; a seventh is REJECTED.
  const auto now_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  auto prio = [](std::string id, int32_t p) {
    auto j = job(id, {"echo", id});
    j.priority = p;
    return j;
  };
  auto soon = job("pq-soon", {"echo", "must not run"});
  soon.deadline_ms = now_ms + 2000;
  const std::vector<schemas::JobRequest> first = {prio("pq-low-1", 0),  prio("pq-low-2", 0),
                                                  prio("pq-high-1", 5), prio("pq-high-2", 5),
                                                  prio("pq-gone", 0),   soon};
  {
    client::Client c(client_ep);
    Ledger book;
    c.submit(first);
    pump(c, book, Clock::now() + 10s, [&] { return book.accepted.size() == first.size(); });
    REQUIRE(book.accepted.size() == first.size());
    c.submit(job("pq-over", {"echo", "over"}));
    c.cancel("pq-gone");
    pump(c, book, Clock::now() + 10s,
         [&] { return book.others.size() == 1 && book.first.count("pq-gone") == 1; });
    REQUIRE(book.others.size() == 1);
    CHECK(book.others[0].kind == client::Event::Kind::kRejected);
    CHECK(book.others[0].error.job_id == "pq-over");
    CHECK(book.others[0].error.code == 103);
    REQUIRE(book.first.count("pq-gone") == 1);
    CHECK(book.first.at("pq-gone").error.variant == "Cancelled");
    CHECK(book.first.at("pq-gone").error.code == 101);
  }

  // SIGKILL before the deadline passes; the restarted broker re-queues the five unanswered jobs
  // with their priorities and deadline, and answers the cancelled one from the store.
  kill_broker(broker);
  broker = start_broker(dir, broker_args, client_ep, worker_ep);
  client::Client c(client_ep);
  Ledger book;
  std::vector<std::string> order;  // RESULTs as they arrive: one slot runs them one at a time
  const std::vector<std::string> all = {"pq-low-1", "pq-low-2", "pq-high-1", "pq-high-2",
                                        "pq-gone",  "pq-soon",  "pq-over"};
  for (const auto& id : all) c.fetch(id);
  // The deadline passes while the job is queued: DeadlineExceeded, and it never runs.
  auto take = [&](Clock::time_point until, const std::function<bool()>& done) {
    while (!done() && Clock::now() < until) {
      if (auto ev = c.next(50ms)) {
        if (ev->kind == client::Event::Kind::kResult) order.push_back(ev->result.job_id);
        book.take(*ev);
      }
    }
  };
  take(Clock::now() + 10s, [&] { return book.answered() == 3; });
  REQUIRE(book.answered() == 3);
  CHECK(book.first.at("pq-gone").error.variant == "Cancelled");
  CHECK(book.first.at("pq-over").error.variant == "UnknownJob");  // REJECTED is not stored
  CAPTURE(describe(book.first.at("pq-soon")));
  CHECK(book.first.at("pq-soon").error.variant == "DeadlineExceeded");
  CHECK(book.first.at("pq-soon").error.code == 104);
  CHECK(book.first.at("pq-soon").error.worker_id.empty());

  // One slot: the jobs run in priority order, FIFO within a priority.
  auto worker = start_worker(dir, worker_ep, "w1", 1, {"--heartbeat-ms", "100"});
  take(Clock::now() + 20s, [&] { return book.answered() == all.size(); });
  take(Clock::now() + 300ms, [] { return false; });
  CHECK(order == std::vector<std::string>{"pq-high-1", "pq-high-2", "pq-low-1", "pq-low-2"});
  for (const auto& [id, n] : book.count) {
    CAPTURE(id);
    CHECK(n == 1);
  }
  CHECK(book.conflicts.empty());
}

TEST_CASE(
    "durability: a CANCEL of a running job holds across a restart that comes before its worker "
    "answers") {
  TempDir dir;
  // A long liveness: the stopped worker must not be declared lost before the broker dies.
  const std::vector<std::string> broker_args = {
      "--journal", dir.path() + "/journal.db", "--heartbeat-ms", "100", "--liveness",
      "50",        "--metrics-address",        "127.0.0.1:0"};
  auto broker = start_broker(dir, broker_args);
  const std::string client_ep = broker.client_endpoint, worker_ep = broker.worker_endpoint;
  auto w1 = start_worker(dir, worker_ep, "w1", 1, {"--warm", "off", "--heartbeat-ms", "100"});
  wait_for_log(broker, "worker 'w1' ready", 10s);
  {
    client::Client c(client_ep);
    Ledger book;
    c.submit(job("cx-long", {"sleep", "30000"}));
    pump(c, book, Clock::now() + 5s, [&] { return book.accepted.count("cx-long") == 1; });
    REQUIRE(book.accepted.count("cx-long") == 1);
    REQUIRE(wait_until_running(broker.metrics_address, "cx-long"));  // dispatched to w1
    // The worker cannot answer the CANCEL: the broker has stored the request, and dies.
    w1->signal(SIGSTOP);
    c.cancel("cx-long");
    std::this_thread::sleep_for(300ms);
    kill_broker(broker);
    w1->signal(SIGKILL);
    REQUIRE(w1->wait_for(5s).has_value());
    drain(c, book);
    CHECK(book.first.count("cx-long") == 0);
  }
  broker = start_broker(dir, broker_args, client_ep, worker_ep);
  client::Client c(client_ep);
  Ledger book;
  c.fetch("cx-long");
  pump(c, book, Clock::now() + 5s, [&] { return book.answered() == 1; });
  REQUIRE(book.first.count("cx-long") == 1);
  const auto& ev = book.first.at("cx-long");
  CAPTURE(describe(ev));
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.variant == "Cancelled");
  CHECK(ev.error.code == 101);
  CHECK(ev.error.attempt == 1);
  CHECK(contains(ev.error.message, "restarted"));
  // It is not run again: a new worker's first VM runs the probe.
  auto w2 = start_worker(dir, worker_ep, "w2", 1, {"--warm", "off", "--heartbeat-ms", "100"});
  c.submit(job("cx-probe", {"fail", "VmNotFound", "snap"}));
  pump(c, book, Clock::now() + 10s, [&] { return book.answered() == 2; });
  REQUIRE(book.first.count("cx-probe") == 1);
  CAPTURE(describe(book.first.at("cx-probe")));
  CHECK(book.first.at("cx-probe").error.message == "vm 'w2-vm-1' not found");
  CHECK(book.count.at("cx-long") == 1);
}

TEST_CASE(
    "durability: without journal flags the broker journals in its state directory and a second "
    "broker there is refused until the first is gone") {
  TempDir dir;
  const std::string state = dir.path() + "/state";  // made by the broker
  RawBroker first;
  REQUIRE(first.start_with(dir, {}, "first", state) == RawBroker::Outcome::kReady);
  CHECK(fs::exists(state + "/journal.db"));
  CHECK((fs::status(state).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK(contains(slurp(state + "/journal.db.lock"), std::to_string(first.child->id())));
  {
    client::Client c(first.client_endpoint);
    Ledger book;
    c.submit(job("default-1", {"echo", "kept"}));  // no worker: it stays queued
    pump(c, book, Clock::now() + 5s, [&] { return book.accepted.count("default-1") == 1; });
    REQUIRE(book.accepted.count("default-1") == 1);
  }

  RawBroker second;
  REQUIRE(second.start_with(dir, {}, "second", state) == RawBroker::Outcome::kExited);
  const std::string err = second.stderr_text();
  CAPTURE(err);
  CHECK(WIFEXITED(second.status()));
  CHECK(WEXITSTATUS(second.status()) != 0);
  CHECK(contains(err, "in use by another broker (pid " + std::to_string(first.child->id()) + ")"));
  CHECK(first.child->running());

  // A broker killed outright leaves no stale lock: the next one starts and still has the job.
  REQUIRE(first.stop(SIGKILL));
  RawBroker third;
  REQUIRE(third.start_with(dir, {}, "third", state) == RawBroker::Outcome::kReady);
  auto worker = start_worker(dir, nlohmann::json::parse(slurp(third.ready)).at("worker"), "w", 1);
  client::Client c(third.client_endpoint);
  Ledger book;
  c.fetch("default-1");
  pump(c, book, Clock::now() + 10s, [&] { return book.answered() == 1; });
  REQUIRE(book.first.count("default-1") == 1);
  CAPTURE(describe(book.first.at("default-1")));
  CHECK(book.first.at("default-1").result.stdout_data == "kept\n");

  // --no-journal is memory only, and cannot be combined with a journal flag.
  RawBroker both;
  REQUIRE(both.start_with(dir, {"--no-journal", "--state-dir", state}, "both", "") ==
          RawBroker::Outcome::kExited);
  CHECK(contains(both.stderr_text() + slurp(dir.path() + "/raw-both.out"), "excludes"));
}

namespace {

// Waits (polling) until `b` has exited; false if it still runs at `deadline`.
bool wait_exit(RawBroker& b, Clock::time_point deadline) {
  std::error_code ec;
  while (b.child->running(ec)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Submits `jobs` and waits until all are ACCEPTED (stored).
void submit_accepted(const std::string& endpoint, const std::vector<schemas::JobRequest>& jobs) {
  client::Client c(endpoint);
  c.submit(jobs);
  Ledger seen;
  pump(c, seen, Clock::now() + 10s, [&] { return seen.accepted.size() == jobs.size(); });
  REQUIRE(seen.accepted.size() == jobs.size());
}

// GET http://ADDRESS/metrics, "" if it did not answer 200.
std::string scrape_metrics(const std::string& address) {
  httplib::Client client("http://" + address);
  client.set_connection_timeout(2s);
  client.set_read_timeout(5s);
  auto res = client.Get("/metrics");
  return res && res->status == 200 ? res->body : "";
}

}  // namespace

TEST_CASE(
    "durability: a byte flipped on disk inside a stored request quarantines that job, answered "
    "JournalDamaged and never run altered, and the intact jobs run") {
  TempDir dir;
  const std::string path = dir.path() + "/journal.db";
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    jobs.push_back(job("dmg-" + std::to_string(i), {"echo", "value-1000-" + std::to_string(i)}));
    ids.push_back(jobs.back().job_id);
  }
  {
    // Accepted with no worker connected, then a clean stop: the requests are in the main file.
    auto broker = start_broker(dir, {"--journal", path});
    submit_accepted(broker.client_endpoint, jobs);
    broker.process->signal(SIGTERM);
    REQUIRE(broker.process->wait_for(10s).has_value());
  }
  REQUIRE_FALSE(fs::exists(path + "-wal"));
  {
    // "value-1000-3" becomes "value-100Z-3" where it is stored: SQLite's checks cannot see it.
    std::string db = slurp(path);
    const size_t at = db.find("value-1000-3");
    REQUIRE(at != std::string::npos);
    REQUIRE(db.find("value-1000-3", at + 1) == std::string::npos);
    db[at + 9] = 'Z';
    write_file(path, db);
  }
  auto broker = start_broker(
      dir, {"--journal", path, "--heartbeat-ms", "100", "--metrics-address", "127.0.0.1:0"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2, {"--heartbeat-ms", "100"});
  client::Client c(broker.client_endpoint);
  Ledger book;
  pump(
      c, book, Clock::now() + 20s, [&] { return book.answered() == ids.size(); }, &ids, 500ms);
  REQUIRE(book.answered() == ids.size());
  for (const auto& id : ids) {
    const auto& ev = book.first.at(id);
    CAPTURE(describe(ev));
    if (id == "dmg-3") {
      REQUIRE(ev.kind == client::Event::Kind::kError);
      CHECK(ev.error.code == 107);
      CHECK(ev.error.variant == "JournalDamaged");
      CHECK_FALSE(ev.error.retryable);
      CHECK(contains(ev.error.message, "checksum"));
      CHECK(contains(ev.error.message, "not run"));
      continue;
    }
    REQUIRE(ev.kind == client::Event::Kind::kResult);
    CHECK(ev.result.stdout_data == "value-1000-" + id.substr(4) + "\n");
  }
  // Submitted again (on a socket of its own: the first may still get answers to its repeated
  // FETCHes): ACCEPTED, then the same answer; still not run.
  client::Client resubmit(broker.client_endpoint);
  Ledger again;
  resubmit.submit(jobs[3]);
  pump(resubmit, again, Clock::now() + 10s, [&] { return again.first.count("dmg-3") == 1; });
  REQUIRE(again.first.count("dmg-3") == 1);
  CHECK(again.accepted.count("dmg-3") == 1);
  CHECK(again.first.at("dmg-3").error.code == 107);
  // Logged with its job id, and counted.
  wait_for_log(broker, "job 'local/dmg-3' (row", 5s);  // logs name the key
  std::string metrics;
  const auto deadline = Clock::now() + 10s;
  while (!contains(metrics, "paddock_broker_journal_quarantined_total 1") &&
         Clock::now() < deadline) {
    metrics = scrape_metrics(broker.metrics_address);
    if (!contains(metrics, "paddock_broker_journal_quarantined_total 1")) {
      std::this_thread::sleep_for(20ms);
    }
  }
  CAPTURE(metrics);
  CHECK(contains(metrics, "paddock_broker_journal_quarantined_total 1"));
}

TEST_CASE(
    "durability: the journal's -wal removed under a running broker stops it loudly, and the jobs "
    "it accepted are kept") {
  TempDir dir;
  const std::string path = dir.path() + "/journal.db";
  RawBroker b;
  REQUIRE(b.start_with(dir, {"--journal", path, "--heartbeat-ms", "100"}, "wal", "") ==
          RawBroker::Outcome::kReady);
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    jobs.push_back(job("wal-" + std::to_string(i), {"echo", "kept-" + std::to_string(i)}));
    ids.push_back(jobs.back().job_id);
  }
  submit_accepted(b.client_endpoint, jobs);  // no worker: all held, in the -wal
  REQUIRE(fs::exists(path + "-wal"));
  fs::remove(path + "-wal");
  // Noticed without any further message: the broker exits, non-zero, saying what happened.
  REQUIRE(wait_exit(b, Clock::now() + 20s));
  const std::string err = b.stderr_text();
  CAPTURE(err);
  check_no_crash("wal removed", b.status(), err);
  REQUIRE(WIFEXITED(b.status()));
  CHECK(WEXITSTATUS(b.status()) != 0);
  CHECK(contains(err, path + "-wal was removed or renamed while the broker ran"));
  CHECK(contains(err, "stopping"));
  CHECK(contains(err, "checkpointed"));
  // The next broker on that journal has every accepted job.
  auto broker = start_broker(dir, {"--journal", path, "--heartbeat-ms", "100"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4, {"--heartbeat-ms", "100"});
  client::Client c(broker.client_endpoint);
  Ledger book;
  pump(
      c, book, Clock::now() + 20s, [&] { return book.answered() == ids.size(); }, &ids, 500ms);
  const auto missing = book.missing(ids);
  CHECK_MESSAGE(missing.empty(), missing.size() << " job(s) lost, first: "
                                                << (missing.empty() ? "" : missing.front()));
  for (const auto& [id, ev] : book.first) {
    CAPTURE(describe(ev));
    REQUIRE(ev.kind == client::Event::Kind::kResult);
    CHECK(ev.result.stdout_data == "kept-" + id.substr(4) + "\n");
  }
}

TEST_CASE(
    "durability: a journal whose job_id index is damaged where quick_check does not look is "
    "refused at every start, never served") {
  TempDir dir;
  const std::string path = dir.path() + "/journal.db";
  {
    auto broker = start_broker(dir, {"--journal", path});
    std::vector<schemas::JobRequest> jobs;
    for (int i = 0; i < 1000; ++i) jobs.push_back(job("idx-" + std::to_string(i), {"true"}));
    submit_accepted(broker.client_endpoint, jobs);
    broker.process->signal(SIGTERM);
    REQUIRE(broker.process->wait_for(10s).has_value());
  }
  // One job_id in a leaf page of the job_id index (page type 0x0A), in the second half of the
  // file, changed: the rows are intact, the index no longer finds one of them.
  std::string db = slurp(path);
  const size_t page = (static_cast<uint8_t>(db[16]) << 8) | static_cast<uint8_t>(db[17]);
  REQUIRE(page >= 512);
  bool changed = false;
  for (size_t p = db.size() / page / 2; p < db.size() / page && !changed; ++p) {
    const size_t at = p * page;
    if (static_cast<uint8_t>(db[at]) != 0x0A) continue;
    const size_t key = db.find("idx-", at);
    if (key == std::string::npos || key >= at + page) continue;
    db[key + 1] = 'X';
    changed = true;
  }
  REQUIRE(changed);
  write_file(path, db);
  // Twice: a restart (systemd's, say) is refused the same way, not served and then crashed.
  for (const char* tag : {"idx-1", "idx-2"}) {
    RawBroker b;
    const auto outcome = b.start(dir, path, tag);
    CAPTURE(b.stderr_text());
    REQUIRE(outcome == RawBroker::Outcome::kExited);
    check_refusal(tag, path, b);
    CHECK(contains(b.stderr_text(), "aside"));
    CHECK(contains(b.stderr_text(), ".dump"));
  }
}
