#include "journal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace paddock::broker {

namespace {

// 2: jobs.cancelled (a CANCEL of a running job, kept across a restart).
constexpr int kSchemaVersion = 2;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  job_id      TEXT PRIMARY KEY,
  request     BLOB NOT NULL,
  accepted_ms INTEGER NOT NULL,
  attempt     INTEGER NOT NULL DEFAULT 1,
  dispatched  INTEGER NOT NULL DEFAULT 0,
  cancelled   INTEGER NOT NULL DEFAULT 0,
  answer_cmd  INTEGER,
  answer      BLOB,
  finished_ms INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_unanswered ON jobs (accepted_ms) WHERE answer IS NULL;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_ms) WHERE answer IS NOT NULL;
)sql";

std::string message_of(sqlite3* db) { return db ? sqlite3_errmsg(db) : "out of memory"; }

bool exec(sqlite3* db, const char* sql, std::string& error) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    error = msg ? msg : message_of(db);
    sqlite3_free(msg);
    return false;
  }
  return true;
}

void bind_text(sqlite3_stmt* st, int i, std::string_view v) {
  sqlite3_bind_text(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void bind_blob(sqlite3_stmt* st, int i, std::string_view v) {
  sqlite3_bind_blob(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
std::string column_blob(sqlite3_stmt* st, int i) {
  const void* p = sqlite3_column_blob(st, i);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}

// Takes the journal's lock file: `<path>.lock`, flock(LOCK_EX | LOCK_NB), our pid written in it.
// Returns the fd, or -1 and `error`. A separate file, not the database: SQLite locks the database
// with fcntl() locks, and on NFS flock() is emulated with those.
int lock_journal(const std::string& path, std::string& error) {
  const std::string lock_path = path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    error = "journal " + path + ": open " + lock_path + ": " + std::strerror(errno);
    return -1;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char pid[32] = {};
    const ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK) {
      error = "journal " + path + " is in use by another broker" +
              (holder.empty() ? "" : " (pid " + holder + ")") + ", which holds " + lock_path +
              ": give each broker its own --state-dir or --journal";
    } else {
      error = "journal " + path + ": flock " + lock_path + ": " + std::strerror(err);
    }
    return -1;
  }
  const std::string mine = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, mine.data(), mine.size(), 0) < 0) {
    spdlog::warn("journal {}: could not write our pid into {}: {}", path, lock_path,
                 std::strerror(errno));
  }
  return fd;
}

}  // namespace

std::unique_ptr<Journal> Journal::open(const std::string& path, std::string& error,
                                       bool read_only) {
  std::unique_ptr<Journal> j(new Journal());
  j->path_ = path;
  const std::string where = "journal " + path + ": ";
  if (!read_only && (j->lock_fd_ = lock_journal(path, error)) < 0) return nullptr;
  // A database file is whole pages (the page size is in its header, bytes 16-17). SQLite reads a
  // file cut short as if it held less, without an error: refuse it rather than lose jobs quietly.
  {
    std::ifstream in(path, std::ios::binary);
    unsigned char header[100] = {};
    if (in && in.read(reinterpret_cast<char*>(header), sizeof header)) {
      const uint32_t raw = (uint32_t{header[16]} << 8) | header[17];
      const uint64_t page = raw == 1 ? 65536 : raw;
      std::error_code ec;
      const uint64_t size = std::filesystem::file_size(path, ec);
      if (std::memcmp(header, "SQLite format 3", 16) == 0 && page >= 512 && !ec &&
          size % page != 0) {
        error = where + "corrupt: " + std::to_string(size) + " bytes is not a whole number of " +
                std::to_string(page) + "-byte pages (truncated?); move it aside to start with an "
                "empty one (the jobs it held are then lost)";
        return nullptr;
      }
    }
  }
  const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(path.c_str(), &j->db_, flags, nullptr) != SQLITE_OK) {
    error = where + "cannot open: " + message_of(j->db_);
    return nullptr;
  }
  sqlite3_busy_timeout(j->db_, 5000);
  // The first read tells whether this is a database at all (SQLITE_NOTADB) or a damaged one.
  std::string e;
  if (!exec(j->db_, read_only ? "PRAGMA schema_version" : "PRAGMA journal_mode=WAL", e)) {
    error = where + "not a usable database (" + e +
            "); it is corrupt or not a journal: move it aside to start with an empty one (the "
            "jobs it held are then lost)";
    return nullptr;
  }
  {
    sqlite3_stmt* st = nullptr;
    std::string verdict;
    if (sqlite3_prepare_v2(j->db_, "PRAGMA quick_check", -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        const auto* t = sqlite3_column_text(st, 0);
        if (t && std::string_view(reinterpret_cast<const char*>(t)) != "ok") {
          verdict += (verdict.empty() ? "" : "; ") + std::string(reinterpret_cast<const char*>(t));
        }
      }
      if (sqlite3_finalize(st) != SQLITE_OK && verdict.empty()) verdict = message_of(j->db_);
    } else {
      verdict = message_of(j->db_);
    }
    if (!verdict.empty()) {
      error = where + "corrupt (integrity check: " + verdict.substr(0, 300) +
              "); move it aside to start with an empty one (the jobs it held are then lost)";
      return nullptr;
    }
  }
  int version = 0;
  {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(j->db_, "PRAGMA user_version", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      version = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
  }
  if (version > kSchemaVersion) {
    error = where + "schema version " + std::to_string(version) + " is newer than this broker's (" +
            std::to_string(kSchemaVersion) + ")";
    return nullptr;
  }
  if (read_only) {
    if (version < 1) {
      error = where + "not a journal (schema version " + std::to_string(version) + ")";
      return nullptr;
    }
    return j;  // reads only: no statements for writes
  }
  // Durable at every commit (FULL): a commit is once per loop turn, however many jobs it holds.
  // Version 1 journals gain the cancelled column (a job's cancel request; 0 for their jobs).
  if (version == 1 &&
      !exec(j->db_, "ALTER TABLE jobs ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0", e)) {
    error = where + "cannot upgrade from schema version 1: " + e;
    return nullptr;
  }
  if (!exec(j->db_, "PRAGMA synchronous=FULL", e) || !exec(j->db_, kSchema, e) ||
      !exec(j->db_, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str(), e)) {
    error = where + "cannot set up: " + e;
    return nullptr;
  }
  if (!j->prepare(e)) {
    error = where + "cannot prepare statements: " + e;
    return nullptr;
  }
  return j;
}

bool Journal::prepare(std::string& error) {
  struct {
    sqlite3_stmt** st;
    const char* sql;
  } statements[] = {
      {&insert_,
       "INSERT OR IGNORE INTO jobs (job_id, request, accepted_ms) VALUES (?1, ?2, ?3)"},
      {&dispatch_, "UPDATE jobs SET attempt = ?2, dispatched = 1 WHERE job_id = ?1"},
      // By row id: a seek in the table itself, not first in the index of job ids (the writes per
      // job are most of the journal's cost); job_id is checked on the row all the same.
      {&dispatch_row_,
       "UPDATE jobs SET attempt = ?2, dispatched = 1 WHERE rowid = ?3 AND job_id = ?1"},
      {&cancel_, "UPDATE jobs SET cancelled = 1 WHERE job_id = ?1 AND answer IS NULL"},
      {&finish_,
       "UPDATE jobs SET answer_cmd = ?2, answer = ?3, finished_ms = ?4 "
       "WHERE job_id = ?1 AND answer IS NULL"},
      {&finish_row_,
       "UPDATE jobs SET answer_cmd = ?2, answer = ?3, finished_ms = ?4 "
       "WHERE rowid = ?5 AND job_id = ?1 AND answer IS NULL"},
      {&answer_, "SELECT answer_cmd, answer FROM jobs WHERE job_id = ?1 AND answer IS NOT NULL"},
      {&expire_, "DELETE FROM jobs WHERE answer IS NOT NULL AND finished_ms < ?1"},
  };
  for (auto& s : statements) {
    if (sqlite3_prepare_v3(db_, s.sql, -1, SQLITE_PREPARE_PERSISTENT, s.st, nullptr) != SQLITE_OK) {
      error = message_of(db_);
      return false;
    }
  }
  return true;
}

Journal::~Journal() {
  std::string ignored;
  if (in_transaction_) (void)commit(ignored);
  for (auto* st : {insert_, dispatch_, dispatch_row_, cancel_, finish_, finish_row_, answer_,
                   expire_}) {
    sqlite3_finalize(st);
  }
  sqlite3_close(db_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock, after SQLite is done with the file
}

void Journal::begin() {
  if (in_transaction_) return;
  std::string e;
  if (!exec(db_, "BEGIN IMMEDIATE", e)) {
    if (write_error_.empty()) write_error_ = "begin: " + e;
    return;
  }
  in_transaction_ = true;
}

void Journal::step_reset(sqlite3_stmt* st, const char* what) {
  if (sqlite3_step(st) != SQLITE_DONE && write_error_.empty()) {
    write_error_ = std::string(what) + ": " + message_of(db_);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

int64_t Journal::accepted(std::string_view job_id, std::string_view request, uint64_t unix_ms) {
  begin();
  bind_text(insert_, 1, job_id);
  bind_blob(insert_, 2, request);
  sqlite3_bind_int64(insert_, 3, static_cast<sqlite3_int64>(unix_ms));
  const std::string before = write_error_;
  step_reset(insert_, "store accepted job");
  // OR IGNORE: no change means the job_id had a row, and the last insert's id is another row's.
  if (write_error_ != before || sqlite3_changes(db_) != 1) return 0;
  return sqlite3_last_insert_rowid(db_);
}

void Journal::dispatched(std::string_view job_id, uint32_t attempt, int64_t row) {
  begin();
  sqlite3_stmt* st = row > 0 ? dispatch_row_ : dispatch_;
  bind_text(st, 1, job_id);
  sqlite3_bind_int64(st, 2, attempt);
  if (row > 0) sqlite3_bind_int64(st, 3, row);
  step_reset(st, "store dispatch");
}

void Journal::cancel_requested(std::string_view job_id) {
  begin();
  bind_text(cancel_, 1, job_id);
  step_reset(cancel_, "store cancel request");
}

void Journal::finished(std::string_view job_id, uint8_t command, std::string_view body,
                       uint64_t unix_ms, int64_t row) {
  begin();
  sqlite3_stmt* st = row > 0 ? finish_row_ : finish_;
  bind_text(st, 1, job_id);
  sqlite3_bind_int(st, 2, command);
  bind_blob(st, 3, body);
  sqlite3_bind_int64(st, 4, static_cast<sqlite3_int64>(unix_ms));
  if (row > 0) sqlite3_bind_int64(st, 5, row);
  step_reset(st, "store answer");
}

bool Journal::commit(std::string& error) {
  if (!in_transaction_) {
    if (write_error_.empty()) return true;
    error = "journal " + path_ + ": " + write_error_;
    write_error_.clear();
    return false;
  }
  std::string e;
  const bool ok = write_error_.empty() && exec(db_, "COMMIT", e);
  if (!ok) {
    error = "journal " + path_ + ": " + (write_error_.empty() ? "commit: " + e : write_error_);
    std::string ignored;
    (void)exec(db_, "ROLLBACK", ignored);
  }
  in_transaction_ = false;
  write_error_.clear();
  return ok;
}

std::vector<Journal::Pending> Journal::pending() {
  std::vector<Pending> out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT job_id, request, attempt, dispatched, accepted_ms, cancelled, rowid "
                         "FROM jobs "
                         "WHERE answer IS NULL ORDER BY accepted_ms, rowid",
                         -1, &st, nullptr) != SQLITE_OK) {
    spdlog::error("journal {}: reading pending jobs: {}", path_, message_of(db_));
    return out;
  }
  while (sqlite3_step(st) == SQLITE_ROW) {
    Pending p;
    const auto* id = sqlite3_column_text(st, 0);
    p.job_id = id ? reinterpret_cast<const char*>(id) : "";
    p.request = column_blob(st, 1);
    p.attempt = static_cast<uint32_t>(sqlite3_column_int64(st, 2));
    p.dispatched = sqlite3_column_int(st, 3) != 0;
    p.accepted_unix_ms = static_cast<uint64_t>(sqlite3_column_int64(st, 4));
    p.cancel_requested = sqlite3_column_int(st, 5) != 0;
    p.row = sqlite3_column_int64(st, 6);
    out.push_back(std::move(p));
  }
  sqlite3_finalize(st);
  return out;
}

std::optional<Journal::Answer> Journal::answer_of(std::string_view job_id) {
  bind_text(answer_, 1, job_id);
  std::optional<Answer> a;
  if (sqlite3_step(answer_) == SQLITE_ROW) {
    a = Answer{static_cast<uint8_t>(sqlite3_column_int(answer_, 0)), column_blob(answer_, 1)};
  }
  sqlite3_reset(answer_);
  sqlite3_clear_bindings(answer_);
  return a;
}

uint64_t Journal::expire(uint64_t cutoff_unix_ms) {
  begin();
  sqlite3_bind_int64(expire_, 1, static_cast<sqlite3_int64>(cutoff_unix_ms));
  step_reset(expire_, "expire answers");
  return static_cast<uint64_t>(sqlite3_changes(db_));
}

std::vector<Journal::Failed> Journal::failed(size_t limit) {
  std::vector<Failed> out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT job_id, answer, finished_ms FROM jobs WHERE answer_cmd = 8 "
                         "ORDER BY finished_ms DESC, rowid DESC LIMIT ?1",
                         -1, &st, nullptr) != SQLITE_OK) {
    return out;
  }
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(limit));
  while (sqlite3_step(st) == SQLITE_ROW) {
    const auto* id = sqlite3_column_text(st, 0);
    out.push_back(Failed{id ? reinterpret_cast<const char*>(id) : "", column_blob(st, 1),
                         static_cast<uint64_t>(sqlite3_column_int64(st, 2))});
  }
  sqlite3_finalize(st);
  return out;
}

std::optional<Journal::Stored> Journal::stored(std::string_view job_id) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT request, accepted_ms, attempt, dispatched, answer_cmd, answer, "
                         "finished_ms FROM jobs WHERE job_id = ?1",
                         -1, &st, nullptr) != SQLITE_OK) {
    return std::nullopt;
  }
  bind_text(st, 1, job_id);
  std::optional<Stored> out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    Stored s;
    s.request = column_blob(st, 0);
    s.accepted_unix_ms = static_cast<uint64_t>(sqlite3_column_int64(st, 1));
    s.attempt = static_cast<uint32_t>(sqlite3_column_int64(st, 2));
    s.dispatched = sqlite3_column_int(st, 3) != 0;
    if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
      s.answer = Answer{static_cast<uint8_t>(sqlite3_column_int(st, 4)), column_blob(st, 5)};
      s.finished_unix_ms = static_cast<uint64_t>(sqlite3_column_int64(st, 6));
    }
    out = std::move(s);
  }
  sqlite3_finalize(st);
  return out;
}

uint64_t Journal::size() {
  sqlite3_stmt* st = nullptr;
  uint64_t n = 0;
  if (sqlite3_prepare_v2(db_, "SELECT count(*) FROM jobs", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    n = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  }
  sqlite3_finalize(st);
  return n;
}

}  // namespace paddock::broker
