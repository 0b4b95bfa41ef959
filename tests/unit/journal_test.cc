// The broker's journal (broker/src/journal.h) on real SQLite files: what is committed survives a
// reopen, an answer is stored once, answers expire, and a damaged file is refused by name; rows
// changed past the journal are quarantined, and files removed underneath it stop it.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "journal.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "state_dir.h"

using paddock::broker::Journal;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/paddock-test-journal-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Journal::open and Journal::commit with the error as a string the checks below search: the
// journal, or nullptr and `error`; whether the commit held, and `error` if not.
std::unique_ptr<Journal> open_journal(const std::string& path, std::string& error,
                                      bool read_only = false) {
  auto j = Journal::open(path, read_only);
  if (!j) {
    error = j.error().message;
    return nullptr;
  }
  return std::move(j).value();
}

bool commit(Journal& j, std::string& error) {
  auto committed = j.commit();
  if (!committed) error = committed.error().message;
  return committed.ok();
}

std::unique_ptr<Journal> open_ok(const std::string& path) {
  std::string error;
  auto j = open_journal(path, error);
  REQUIRE_MESSAGE(j != nullptr, error);
  return j;
}

}  // namespace

TEST_CASE(
    "journal: committed jobs survive a reopen, unanswered ones come back in order with their "
    "attempt") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  {
    auto j = open_ok(path);
    std::string error;
    j->accepted("a", "request-a", 1000);
    j->accepted("b", "request-b", 1001);
    j->accepted("c", "request-c", 1002);
    j->dispatched("b", 2);
    j->finished("c", 7, "answer-c", 1003);
    REQUIRE(commit(*j, error));
  }
  {
    // A process that dies before its turn's commit: what it wrote is not in the journal.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      std::string error;
      auto j = open_journal(path, error);
      if (j) j->accepted("lost", "never committed", 1004);
      ::_exit(j ? 0 : 1);  // no destructor, no commit
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
  auto j = open_ok(path);
  const auto pending = j->pending();
  REQUIRE(pending.size() == 2);
  CHECK(pending[0].job_id == "a");
  CHECK(pending[0].request == "request-a");
  CHECK(pending[0].attempt == 1);
  CHECK_FALSE(pending[0].dispatched);
  CHECK(pending[1].job_id == "b");
  CHECK(pending[1].attempt == 2);
  CHECK(pending[1].dispatched);
  auto c = j->answer_of("c");
  REQUIRE(c.has_value());
  CHECK(c->command == 7);
  CHECK(c->body == "answer-c");
  CHECK_FALSE(j->answer_of("a").has_value());
  CHECK_FALSE(j->answer_of("lost").has_value());
  CHECK(j->size() == 3);
}

TEST_CASE(
    "journal: the first answer of a job is kept, a duplicate is ignored, and answers expire") {
  TempDir d;
  auto j = open_ok(d.path + "/j.db");
  std::string error;
  j->accepted("x", "req", 10);
  j->accepted("x", "a second submit of the same id", 11);  // ignored: one row per job id
  j->finished("x", 7, "first", 100);
  j->finished("x", 7, "duplicate from a reconnecting worker", 101);
  REQUIRE(commit(*j, error));
  CHECK(j->size() == 1);
  CHECK(j->answer_of("x")->body == "first");
  CHECK(j->expire(100) == 0);  // finished at 100: not before the cutoff
  REQUIRE(commit(*j, error));
  CHECK(j->expire(101) == 1);
  REQUIRE(commit(*j, error));
  CHECK_FALSE(j->answer_of("x").has_value());
  CHECK(j->size() == 0);
}

TEST_CASE("journal: a file that is no database or is damaged is refused, naming the file") {
  TempDir d;
  {
    const std::string path = d.path + "/garbage.db";
    std::ofstream(path) << std::string(8192, 'x');
    std::string error;
    CHECK(open_journal(path, error) == nullptr);
    CHECK_MESSAGE(error.find(path) != std::string::npos, error);
    CHECK_MESSAGE(error.find("not a database") != std::string::npos, error);
  }
  {
    // A journal cut to part of a page (its WAL gone with it): refused, not read as empty.
    const std::string path = d.path + "/cut.db";
    {
      auto j = open_ok(path);
      std::string error;
      j->accepted("a", "r", 1);
      REQUIRE(commit(*j, error));
    }
    fs::resize_file(path, fs::file_size(path) - 1000);
    std::string error;
    CHECK(open_journal(path, error) == nullptr);
    CHECK_MESSAGE(error.find("truncated") != std::string::npos, error);
  }
  {
    // A real journal with enough rows for several pages, then its middle overwritten.
    const std::string path = d.path + "/damaged.db";
    {
      auto j = open_ok(path);
      std::string error;
      for (int i = 0; i < 2000; ++i) {
        j->accepted("job-" + std::to_string(i), std::string(200, 'r'), static_cast<uint64_t>(i));
      }
      REQUIRE(commit(*j, error));
    }
    {
      // Checkpointed on close: the pages are in the main file now.
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(fs::file_size(path) / 2));
      const std::string junk(16384, '\x5a');
      f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    std::string error;
    auto j = open_journal(path, error);
    CHECK(j == nullptr);
    CHECK_MESSAGE(error.find(path) != std::string::npos, error);
    CHECK_MESSAGE((error.find("corrupt") != std::string::npos ||
                   error.find("not a database") != std::string::npos),
                  error);
  }
}

TEST_CASE(
    "journal: a cancel request of a running job survives a reopen, and a version 1 journal is "
    "upgraded keeping its jobs") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  {
    auto j = open_ok(path);
    j->accepted("run", "req-run", 1);
    j->accepted("other", "req-other", 2);
    j->dispatched("run", 1);
    j->cancel_requested("run");
    std::string error;
    REQUIRE_MESSAGE(commit(*j, error), error);
  }
  {
    auto j = open_ok(path);
    const auto p = j->pending();
    REQUIRE(p.size() == 2);
    CHECK(p[0].job_id == "run");
    CHECK(p[0].cancel_requested);
    CHECK(p[0].dispatched);
    CHECK_FALSE(p[1].cancel_requested);
    // A cancel request of an answered job changes nothing.
    j->finished("other", 3, "answer", 5);
    j->cancel_requested("other");
    std::string error;
    REQUIRE_MESSAGE(commit(*j, error), error);
    CHECK(j->pending().size() == 1);
  }
  // A journal written by the previous schema (no cancelled column, user_version 1).
  const std::string old_path = d.path + "/v1.db";
  const std::string sql =
      "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, request BLOB NOT NULL, accepted_ms INTEGER "
      "NOT NULL, attempt INTEGER NOT NULL DEFAULT 1, dispatched INTEGER NOT NULL DEFAULT 0, "
      "answer_cmd INTEGER, answer BLOB, finished_ms INTEGER); "
      "INSERT INTO jobs (job_id, request, accepted_ms) VALUES ('old', x'0102', 7); "
      "PRAGMA user_version=1;";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(old_path.c_str(), &db) == SQLITE_OK);
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
  }
  {
    std::string error;
    auto ro = open_journal(old_path, error, true);  // read-only tools read version 1 as it is
    REQUIRE_MESSAGE(ro != nullptr, error);
  }
  auto j = open_ok(old_path);
  const auto p = j->pending();
  REQUIRE(p.size() == 1);
  CHECK(p[0].job_id == "local/old");  // schema 4: jobs from before tenants are "local"'s
  CHECK(p[0].request == std::string("\x01\x02"));
  CHECK_FALSE(p[0].cancel_requested);
  j->cancel_requested("local/old");
  std::string error;
  REQUIRE_MESSAGE(commit(*j, error), error);
  CHECK(j->pending()[0].cancel_requested);
}

TEST_CASE(
    "journal: a second writer on the same file is refused naming the first one's pid, a reader is "
    "not") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  auto first = open_ok(path);
  std::string lock;
  std::getline(std::ifstream(path + ".lock"), lock);
  CHECK(lock == std::to_string(::getpid()));

  std::string error;
  CHECK(open_journal(path, error) == nullptr);
  CAPTURE(error);
  CHECK(error.find("in use by another broker (pid " + std::to_string(::getpid()) + ")") !=
        std::string::npos);
  CHECK(error.find("--state-dir") != std::string::npos);

  // A reader (the CLI's dead-letters) takes no lock.
  error.clear();
  CHECK(open_journal(path, error, /*read_only=*/true) != nullptr);

  // The lock goes with its owner; a process that dies holding it releases it too.
  first.reset();
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::string e;
    auto j = open_journal(path, e);
    ::_exit(j ? 0 : 1);  // exits without closing: the kernel drops the flock
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto again = open_ok(path);
  std::getline(std::ifstream(path + ".lock"), lock);
  CHECK(lock == std::to_string(::getpid()));
}

TEST_CASE("state dir: STATE_DIRECTORY first, then /var/lib for root, then XDG_STATE_HOME or HOME") {
  using paddock::broker::default_state_dir;
  CHECK(default_state_dir(1000, "/run/svc", "/x", "/home/u") == "/run/svc");
  CHECK(default_state_dir(0, "/srv/a:/srv/b", nullptr, nullptr) == "/srv/a");
  CHECK(default_state_dir(0, nullptr, "/x", "/root") == "/var/lib/paddock/broker");
  CHECK(default_state_dir(0, "", nullptr, nullptr) == "/var/lib/paddock/broker");
  CHECK(default_state_dir(1000, nullptr, "/x/state", "/home/u") == "/x/state/paddock/broker");
  // XDG paths must be absolute: a relative one is ignored, as the XDG spec says.
  CHECK(default_state_dir(1000, nullptr, "rel", "/home/u") ==
        "/home/u/.local/state/paddock/broker");
  CHECK(default_state_dir(1000, nullptr, nullptr, "/home/u") ==
        "/home/u/.local/state/paddock/broker");
  CHECK(default_state_dir(1000, nullptr, nullptr, nullptr).empty());
}

TEST_CASE("journal: dispatches and answers written by row id reach that job's row only") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  int64_t row_a = 0;
  int64_t row_b = 0;
  {
    auto j = open_ok(path);
    std::string error;
    row_a = j->accepted("a", "request-a", 1000);
    row_b = j->accepted("b", "request-b", 1001);
    CHECK(row_a > 0);
    CHECK(row_b > 0);
    CHECK(row_a != row_b);
    // A job_id that has a row already: no row id of its own (OR IGNORE left the row as it was).
    CHECK(j->accepted("a", "request-a again", 1002) == 0);
    j->dispatched("a", 2, row_a);
    // A row id that is not this job's (a bug in the caller): nothing is written.
    j->dispatched("b", 3, row_a);
    j->finished("b", 7, "answer-b", 1003, row_b);
    j->finished("a", 8, "answer-a", 1004, row_b);
    REQUIRE(commit(*j, error));
  }
  auto j = open_ok(path);
  const auto pending = j->pending();
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].job_id == "a");
  CHECK(pending[0].request == "request-a");
  CHECK(pending[0].row == row_a);
  CHECK(pending[0].attempt == 2);
  CHECK(pending[0].dispatched);
  CHECK_FALSE(j->answer_of("a").has_value());
  auto b = j->answer_of("b");
  REQUIRE(b.has_value());
  CHECK(b->command == 7);
  CHECK(b->body == "answer-b");
}

namespace {

// Runs `sql` on the journal through a connection of its own, as something other than the broker
// (a disk, a person, a bug) would change it: past the journal's checksums.
void raw_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* msg = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  const std::string error = msg ? msg : "";
  sqlite3_free(msg);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, sql << ": " << error);
}

// The single text result of `sql`, through a connection of its own.
std::string raw_text(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

// The stored answer is ERROR 107 JournalDamaged for `job_id`, saying what was damaged.
void check_damaged_answer(const std::optional<Journal::Answer>& a, const std::string& job_id,
                          const std::string& what) {
  CAPTURE(job_id);
  REQUIRE(a.has_value());
  CHECK(a->command == static_cast<uint8_t>(paddock::schemas::Command::kError));
  auto e = paddock::schemas::decode_job_error(a->body);
  REQUIRE(static_cast<bool>(e));
  CHECK(e->job_id == job_id);
  CHECK(e->code == 107);
  CHECK(e->variant == "JournalDamaged");
  CHECK_FALSE(e->retryable);
  CAPTURE(e->message);
  CHECK(e->message.find("stored " + what) != std::string::npos);
  CHECK(e->message.find("checksum") != std::string::npos);
}

}  // namespace

TEST_CASE(
    "journal: a stored request or answer changed past the journal is quarantined and answered "
    "JournalDamaged, never returned to run: intact rows are") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  {
    auto j = open_ok(path);
    j->accepted("a", "request-a", 1);
    j->accepted("b", "request-b-1000", 2);
    j->accepted("c", "request-c", 3);
    j->accepted("d", "request-d", 4);
    j->finished("d", 7, "answer-d", 5);
    j->accepted("e", "request-e", 6);
    j->finished("e", 8, "answer-e", 7);
    std::string error;
    REQUIRE_MESSAGE(commit(*j, error), error);
  }
  // One byte of b's request and one of d's answer changed, the way SQLite cannot see.
  raw_sql(path,
          "UPDATE jobs SET request = CAST('request-b-100Z' AS BLOB) WHERE job_id = 'b'; "
          "UPDATE jobs SET answer = CAST('answer-D' AS BLOB) WHERE job_id = 'd';");
  {
    auto j = open_ok(path);
    const auto pending = j->pending();
    REQUIRE(pending.size() == 2);
    CHECK(pending[0].job_id == "a");
    CHECK(pending[0].request == "request-a");
    CHECK(pending[1].job_id == "c");
    CHECK(j->quarantined() == 1);
    check_damaged_answer(j->answer_of("b"), "b", "request");
    check_damaged_answer(j->answer_of("d"), "d", "answer");  // found on reading it
    CHECK(j->quarantined() == 2);
    auto e = j->answer_of("e");
    REQUIRE(e.has_value());
    CHECK(e->body == "answer-e");
    CHECK(j->quarantined() == 2);
    std::string error;
    REQUIRE_MESSAGE(commit(*j, error), error);
  }
  // Kept: the next start neither runs b nor quarantines anything again, and the damaged bytes
  // are in the quarantine table for the operator.
  auto j = open_ok(path);
  CHECK(j->pending().size() == 2);
  check_damaged_answer(j->answer_of("b"), "b", "request");
  check_damaged_answer(j->answer_of("d"), "d", "answer");
  CHECK(j->quarantined() == 0);
  CHECK(raw_text(path, "SELECT CAST(request AS TEXT) FROM quarantine WHERE job_id = 'b'") ==
        "request-b-100Z");
  CHECK(raw_text(path, "SELECT damaged FROM quarantine WHERE job_id = 'b'") == "request");
  CHECK(raw_text(path, "SELECT CAST(answer AS TEXT) FROM quarantine WHERE job_id = 'd'") ==
        "answer-D");
  CHECK(raw_text(path, "SELECT count(*) FROM quarantine") == "2");
  // The dead-letter list holds the damaged jobs (their answer is an ERROR now).
  const auto failed = j->failed(10);
  std::set<std::string> ids;
  for (const auto& f : failed) ids.insert(f.job_id);
  CHECK(ids == std::set<std::string>{"b", "d", "e"});
}

TEST_CASE(
    "journal: a version 2 journal is upgraded in place with checksums of its rows, which are "
    "checked from then on") {
  TempDir d;
  const std::string path = d.path + "/v2.db";
  raw_sql(path,
          "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, request BLOB NOT NULL, accepted_ms INTEGER "
          "NOT NULL, attempt INTEGER NOT NULL DEFAULT 1, dispatched INTEGER NOT NULL DEFAULT 0, "
          "cancelled INTEGER NOT NULL DEFAULT 0, answer_cmd INTEGER, answer BLOB, finished_ms "
          "INTEGER); "
          "INSERT INTO jobs (job_id, request, accepted_ms) VALUES ('p', x'0102', 7); "
          "INSERT INTO jobs (job_id, request, accepted_ms) VALUES ('q', x'0304', 8); "
          "INSERT INTO jobs (job_id, request, accepted_ms, answer_cmd, answer, finished_ms) "
          "VALUES ('done', x'05', 9, 7, x'0607', 10); "
          "PRAGMA user_version=2;");
  {
    std::string error;
    auto ro = open_journal(path, error, true);  // read-only tools read version 2 as it is
    REQUIRE_MESSAGE(ro != nullptr, error);
    CHECK(ro->stored("done")->answer->body == std::string("\x06\x07"));
  }
  {
    auto j = open_ok(path);
    CHECK(raw_text(path, "PRAGMA user_version") == "4");
    CHECK(raw_text(path, "SELECT count(*) FROM jobs WHERE request_sum IS NULL") == "0");
    const auto p = j->pending();
    REQUIRE(p.size() == 2);
    CHECK(p[0].request == std::string("\x01\x02"));
    CHECK(j->answer_of("local/done")->body == std::string("\x06\x07"));
    CHECK(j->quarantined() == 0);
  }
  raw_sql(path, "UPDATE jobs SET request = x'0305' WHERE job_id = 'local/q'");
  auto j = open_ok(path);
  const auto p = j->pending();
  REQUIRE(p.size() == 1);
  CHECK(p[0].job_id == "local/p");
  check_damaged_answer(j->answer_of("local/q"), "q", "request");
}

TEST_CASE(
    "journal: an index that no longer matches its table, which quick_check passes, is refused at "
    "open with what to do") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  {
    auto j = open_ok(path);
    for (int i = 0; i < 2000; ++i) {
      j->accepted("job-" + std::to_string(i), std::string(200, 'r'), static_cast<uint64_t>(i));
    }
    std::string error;
    REQUIRE(commit(*j, error));
  }  // checkpointed on close: every page is in the main file
  // One job_id inside a leaf page of the job_id index (page type 0x0A) changed: the table is
  // intact, the index no longer finds that job (the broker answered UnknownJob for such jobs).
  std::string db;
  {
    std::ifstream in(path, std::ios::binary);
    db.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t page = (static_cast<uint8_t>(db[16]) << 8) | static_cast<uint8_t>(db[17]);
  REQUIRE(page >= 512);
  bool changed = false;
  for (size_t p = db.size() / page / 2; p < db.size() / page && !changed; ++p) {
    const size_t at = p * page;
    if (static_cast<uint8_t>(db[at]) != 0x0A) continue;
    const size_t key = db.find("job-", at);
    if (key == std::string::npos || key >= at + page) continue;
    db[key + 1] = 'a';  // "job-…" becomes "jab-…"
    changed = true;
  }
  REQUIRE(changed);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(db.data(), static_cast<std::streamsize>(db.size()));
  }
  CHECK(raw_text(path, "PRAGMA quick_check") == "ok");  // what the broker checked before
  std::string error;
  CHECK(open_journal(path, error) == nullptr);
  CAPTURE(error);
  CHECK(error.find(path) != std::string::npos);
  CHECK(error.find("corrupt") != std::string::npos);
  CHECK(error.find("sqlite_autoindex_jobs_1") != std::string::npos);
  CHECK(error.find("aside") != std::string::npos);
  CHECK(error.find(".dump") != std::string::npos);
}

TEST_CASE(
    "journal: damage SQLite reports while the journal is open fails the turn's commit, and every "
    "one after, with what to do") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  {
    auto j = open_ok(path);
    for (int i = 0; i < 500; ++i) {
      j->accepted("job-" + std::to_string(i), std::string(200, 'r'), static_cast<uint64_t>(i));
    }
    std::string error;
    REQUIRE(commit(*j, error));
  }
  auto j = open_ok(path);
  // The root page of the job_id index overwritten on disk, then a write by another connection, so
  // that the journal's connection reads its pages again on its next read.
  const int root = std::stoi(
      raw_text(path, "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_jobs_1'"));
  const int page = std::stoi(raw_text(path, "PRAGMA page_size"));
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(root - 1) * page);
    const std::string junk(64, '\xff');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  raw_sql(path, "CREATE TABLE nudge (x); DROP TABLE nudge;");
  CHECK_FALSE(j->answer_of("job-7").has_value());
  std::string error;
  CHECK_FALSE(commit(*j, error));
  CAPTURE(error);
  CHECK(error.find(path) != std::string::npos);
  CHECK(error.find("damaged") != std::string::npos);
  CHECK(error.find("malformed") != std::string::npos);
  CHECK(error.find(".dump") != std::string::npos);
  error.clear();
  CHECK_FALSE(commit(*j, error));  // sticky: the broker stops rather than serve from it
  CHECK(error.find("damaged") != std::string::npos);
}

TEST_CASE(
    "journal: its -wal, database or lock file removed or replaced underneath fails the next "
    "commit: a removed -wal is checkpointed first") {
  TempDir d;
  const std::string path = d.path + "/j.db";
  {
    auto j = open_ok(path);
    j->accepted("a", "request-a", 1);
    std::string error;
    REQUIRE_MESSAGE(commit(*j, error), error);
    REQUIRE(fs::exists(path + "-wal"));
    fs::remove(path + "-wal");
    j->accepted("b", "request-b", 2);  // into the -wal nobody can open any more
    CHECK_FALSE(commit(*j, error));
    CAPTURE(error);
    CHECK(error.find(path + "-wal was removed or renamed") != std::string::npos);
    CHECK(error.find("checkpointed") != std::string::npos);
    error.clear();
    CHECK_FALSE(commit(*j, error));  // and so it stays
    CHECK(error.find("-wal") != std::string::npos);
  }
  {
    // Nothing committed was lost: it went into the database file before the broker stopped.
    auto j = open_ok(path);
    const auto p = j->pending();
    REQUIRE(p.size() == 2);
    CHECK(p[0].job_id == "a");
    CHECK(p[1].job_id == "b");
    // An idle journal notices too, within kFileCheckInterval: commit() with nothing written.
    fs::remove(path + "-wal");
    std::string error;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (commit(*j, error) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling, not waiting
    }
    CHECK(error.find("-wal was removed") != std::string::npos);
  }
  {
    auto j = open_ok(path);
    fs::rename(path, path + ".moved");
    j->accepted("c", "request-c", 3);
    std::string error;
    CHECK_FALSE(commit(*j, error));
    CAPTURE(error);
    CHECK(error.find(path + " was removed or renamed") != std::string::npos);
  }
  fs::rename(path + ".moved", path);
  {
    auto j = open_ok(path);
    const std::string lock = path + ".lock";
    fs::remove(lock);
    std::ofstream(lock) << "0\n";  // a second broker's lock file could now be taken
    j->accepted("d", "request-d", 4);
    std::string error;
    CHECK_FALSE(commit(*j, error));
    CAPTURE(error);
    CHECK(error.find(lock + " was replaced") != std::string::npos);
  }
}

TEST_CASE(
    "journal: a journal salvaged with .dump (no schema version) opens by its columns, upgraded if "
    "need be, and its damaged rows are quarantined") {
  TempDir d;
  // Version 3 tables without their user_version, as `sqlite3 journal.db .dump | sqlite3 new.db`
  // leaves them, with one request changed on the way.
  const std::string v3 = d.path + "/dumped3.db";
  {
    auto j = open_ok(v3);
    j->accepted("x", "request-x", 1);
    j->accepted("y", "request-y", 2);
    std::string error;
    REQUIRE(commit(*j, error));
  }
  raw_sql(v3, "PRAGMA user_version=0; UPDATE jobs SET request = x'00' WHERE job_id = 'y';");
  {
    auto j = open_ok(v3);
    CHECK(raw_text(v3, "PRAGMA user_version") == "4");
    const auto p = j->pending();
    REQUIRE(p.size() == 1);
    CHECK(p[0].job_id == "local/x");
    check_damaged_answer(j->answer_of("local/y"), "y", "request");
  }
  // Version 2 tables (no checksums) without their user_version: upgraded as a version 2 journal.
  const std::string v2 = d.path + "/dumped2.db";
  raw_sql(v2,
          "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, request BLOB NOT NULL, accepted_ms INTEGER "
          "NOT NULL, attempt INTEGER NOT NULL DEFAULT 1, dispatched INTEGER NOT NULL DEFAULT 0, "
          "cancelled INTEGER NOT NULL DEFAULT 0, answer_cmd INTEGER, answer BLOB, finished_ms "
          "INTEGER); "
          "INSERT INTO jobs (job_id, request, accepted_ms) VALUES ('old', x'0102', 7);");
  auto j = open_ok(v2);
  CHECK(raw_text(v2, "PRAGMA user_version") == "4");
  const auto p = j->pending();
  REQUIRE(p.size() == 1);
  CHECK(p[0].request == std::string("\x01\x02"));
}

TEST_CASE(
    "journal: a version 3 journal is keyed by tenant at open: its jobs become the local tenant's, "
    "their checksums move to the key, and a row damaged before still fails its check") {
  TempDir d;
  const std::string path = d.path + "/v3.db";
  {
    // Rows as a version 3 broker wrote them: keyed by the job_id alone.
    auto j = open_ok(path);
    j->accepted("queued", "request-queued", 1);
    j->accepted("done", "request-done", 2);
    j->finished("done", 7, "answer-done", 3);
    j->accepted("broken", "request-broken", 4);
    j->finished("broken", 7, "answer-broken", 5);
    std::string error;
    REQUIRE_MESSAGE(commit(*j, error), error);
  }
  raw_sql(path, "PRAGMA user_version=3; UPDATE jobs SET answer = x'00' WHERE job_id = 'broken'");
  {
    auto j = open_ok(path);
    CHECK(raw_text(path, "PRAGMA user_version") == "4");
    CHECK(raw_text(path, "SELECT count(*) FROM jobs WHERE instr(job_id, '/') = 0") == "0");
    const auto p = j->pending();
    REQUIRE(p.size() == 1);
    CHECK(p[0].job_id == "local/queued");
    CHECK(p[0].request == "request-queued");
    CHECK(j->answer_of("local/done")->body == "answer-done");
    CHECK(j->quarantined() == 0);
    // Damaged before the upgrade: still found, and answered under the submitter's own job_id.
    check_damaged_answer(j->answer_of("local/broken"), "broken", "answer");
    CHECK(j->quarantined() == 1);
    std::string error;
    REQUIRE_MESSAGE(commit(*j, error), error);
  }
  // Opened again: nothing is keyed twice.
  auto j = open_ok(path);
  CHECK(raw_text(path, "SELECT count(*) FROM jobs WHERE job_id LIKE 'local/local/%'") == "0");
  CHECK(j->answer_of("local/done")->body == "answer-done");
}
