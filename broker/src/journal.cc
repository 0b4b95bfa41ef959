#include "journal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/frames.h"
#include "tenancy.h"

namespace paddock::broker {

namespace sc = paddock::schemas;

namespace {

// 2: jobs.cancelled (a CANCEL of a running job, kept across a restart).
// 3: jobs.request_sum and jobs.answer_sum (row_sum below), and the quarantine table.
// 4: job_id holds the job's key, "<tenant>/<job_id>" (tenancy.h); older rows become the local
//    tenant's ("local/<job_id>"), their checksums moved to the new key where they held.
constexpr int kSchemaVersion = 4;

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
  finished_ms INTEGER,
  request_sum INTEGER,
  answer_sum  INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_unanswered ON jobs (accepted_ms) WHERE answer IS NULL;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_ms) WHERE answer IS NOT NULL;
CREATE TABLE IF NOT EXISTS quarantine (
  jobs_rowid     INTEGER,
  job_id         TEXT,
  damaged        TEXT NOT NULL,
  quarantined_ms INTEGER NOT NULL,
  request        BLOB,
  accepted_ms    INTEGER,
  attempt        INTEGER,
  dispatched     INTEGER,
  cancelled      INTEGER,
  answer_cmd     INTEGER,
  answer         BLOB,
  finished_ms    INTEGER,
  request_sum    INTEGER,
  answer_sum     INTEGER
);
)sql";

// The checksum of a row's request or answer: XXH3-64 of its bytes, seeded with the XXH3-64 of the
// job_id and a domain (an answer's command byte, or kRequestDomain for the request), so that bytes
// read under another job_id or as the other column fail too. Stored as SQLite's signed 64 bits.
constexpr uint64_t kRequestDomain = 256;

int64_t row_sum(std::string_view job_id, uint64_t domain, std::string_view body) {
  const XXH64_hash_t seed = XXH3_64bits_withSeed(job_id.data(), job_id.size(), domain);
  return static_cast<int64_t>(XXH3_64bits_withSeed(body.data(), body.size(), seed));
}

// paddock_row_sum(job_id, domain, body): row_sum in SQL, for the upgrade of older journals.
void sql_row_sum(sqlite3_context* ctx, int, sqlite3_value** v) {
  auto bytes = [](sqlite3_value* x) {
    const void* p = sqlite3_value_blob(x);
    const int n = sqlite3_value_bytes(x);
    return p ? std::string_view(static_cast<const char*>(p), static_cast<size_t>(n))
             : std::string_view();
  };
  sqlite3_result_int64(
      ctx, row_sum(bytes(v[0]), static_cast<uint64_t>(sqlite3_value_int64(v[1])), bytes(v[2])));
}

// The operator's way out of a damaged journal.
std::string damaged_advice(const std::string& path) {
  return "with the broker stopped, either move " + path +
         " and its -wal and -shm files aside "
         "to start with an empty journal (the jobs it held are then lost), or salvage the rows "
         "SQLite "
         "can still read into a new file (sqlite3 " +
         path +
         " .dump | sqlite3 NEW.db) and "
         "start on that: rows whose checksums fail are then quarantined and answered "
         "JournalDamaged (107)";
}

bool is_damage(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

uint64_t unix_ms_now() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string message_of(sqlite3* db) { return db ? sqlite3_errmsg(db) : "out of memory"; }

base::Status exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string error = msg ? msg : message_of(db);
    sqlite3_free(msg);
    return base::fail(std::move(error));
  }
  return {};
}

// Runs `statements` in order; the first failure stops them.
base::Status exec_all(sqlite3* db, const std::vector<std::string>& statements) {
  for (const auto& sql : statements) {
    if (auto done = exec(db, sql); !done) return done;
  }
  return {};
}

void bind_text(sqlite3_stmt* st, int i, std::string_view v) {
  sqlite3_bind_text(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void bind_blob(sqlite3_stmt* st, int i, std::string_view v) {
  sqlite3_bind_blob(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
std::string column_blob(sqlite3_stmt* st, int i) {
  const void* p = sqlite3_column_blob(st, i);
  return p ? std::string(static_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}
// A TEXT column's bytes as stored (UTF-8 journals: no conversion), NULs and all.
std::string column_text(sqlite3_stmt* st, int i) { return column_blob(st, i); }

// The schema version whose jobs table has the columns this file's has: 0 without a jobs table.
int version_of_columns(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  bool table = false, cancelled = false, sums = false;
  if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('jobs')", -1, &st, nullptr) ==
      SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      table = true;
      const std::string name = column_text(st, 0);
      cancelled = cancelled || name == "cancelled";
      sums = sums || name == "request_sum";
    }
  }
  sqlite3_finalize(st);
  return !table ? 0 : sums ? 3 : cancelled ? 2 : 1;
}

// Takes the journal's lock file: `<path>.lock`, flock(LOCK_EX | LOCK_NB), our pid written in it.
// Returns the fd, or why not. A separate file, not the database: SQLite locks the database
// with fcntl() locks, and on NFS flock() is emulated with those.
base::Expected<int> lock_journal(const std::string& path) {
  const std::string lock_path = path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return base::fail("journal " + path + ": open " + lock_path + ": " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char pid[32] = {};
    const ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK) {
      return base::fail("journal " + path + " is in use by another broker" +
                        (holder.empty() ? "" : " (pid " + holder + ")") + ", which holds " +
                        lock_path + ": give each broker its own --state-dir or --journal");
    }
    return base::fail("journal " + path + ": flock " + lock_path + ": " + std::strerror(err));
  }
  const std::string mine = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, mine.data(), mine.size(), 0) < 0) {
    spdlog::warn("journal {}: could not write our pid into {}: {}", path, lock_path,
                 std::strerror(errno));
  }
  return fd;
}

}  // namespace

base::Expected<std::unique_ptr<Journal>> Journal::open(const std::string& path, bool read_only) {
  std::unique_ptr<Journal> j(new Journal());
  j->path_ = path;
  const std::string where = "journal " + path + ": ";
  if (!read_only) {
    auto lock = lock_journal(path);
    if (!lock) return std::move(lock).error();
    j->lock_fd_ = *lock;
  }
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
        return base::fail(where + "corrupt: " + std::to_string(size) +
                          " bytes is not a whole number of " + std::to_string(page) +
                          "-byte pages (truncated?); " + damaged_advice(path));
      }
    }
  }
  const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(path.c_str(), &j->db_, flags, nullptr) != SQLITE_OK) {
    return base::fail(where + "cannot open: " + message_of(j->db_));
  }
  sqlite3_busy_timeout(j->db_, 5000);
  sqlite3_create_function_v2(j->db_, "paddock_row_sum", 3,
                             SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, nullptr,
                             sql_row_sum, nullptr, nullptr, nullptr);
  // The first read tells whether this is a database at all (SQLITE_NOTADB) or a damaged one.
  if (auto first = exec(j->db_, read_only ? "PRAGMA schema_version" : "PRAGMA journal_mode=WAL");
      !first) {
    return base::fail(where + "not a usable database (" + first.error().message +
                      "); it is corrupt or not a journal: " + damaged_advice(path));
  }
  {
    // The broker runs the full check, not quick_check: it also checks every index against its
    // table. Damage there (a job_id index that no longer finds its rows) passes quick_check, and
    // the broker then answered UnknownJob for jobs it held until a write hit the damage, and
    // crashed on every restart (issue 20). It costs about what quick_check does (both read every
    // page): 0.45 s against 0.41 s for a journal of 200,000 jobs, 280 MB, warm cache. Read-only
    // tools, which may open a live broker's journal often (the dashboard), keep quick_check.
    sqlite3_stmt* st = nullptr;
    std::string verdict;
    const char* check = read_only ? "PRAGMA quick_check(20)" : "PRAGMA integrity_check(20)";
    if (sqlite3_prepare_v2(j->db_, check, -1, &st, nullptr) == SQLITE_OK) {
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
      return base::fail(where + "corrupt (integrity check: " + verdict.substr(0, 300) + "); " +
                        damaged_advice(path));
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
  if (version == 0) {
    // A journal salvaged with the sqlite3 shell's .dump comes without its user_version: its
    // version is told by the columns its jobs table has (none: a new file).
    version = version_of_columns(j->db_);
    if (version > 0) {
      spdlog::warn(
          "journal {}: no schema version recorded; its tables are those of version {} "
          "(a journal salvaged with .dump?)",
          path, version);
    }
  }
  if (version > kSchemaVersion) {
    return base::fail(where + "schema version " + std::to_string(version) +
                      " is newer than this broker's (" + std::to_string(kSchemaVersion) + ")");
  }
  if (read_only) {
    if (version < 1) {
      return base::fail(where + "not a journal (schema version " + std::to_string(version) + ")");
    }
    j->sums_ = version >= 3;  // an older journal is read as it is, without checksums
    return j;                 // reads only: no statements for writes
  }
  // Durable at every commit (FULL): a commit is once per loop turn, however many jobs it holds.
  if (auto durable = exec(j->db_, "PRAGMA synchronous=FULL"); !durable) {
    return base::fail(where + "cannot set up: " + durable.error().message);
  }
  // Created, or upgraded in place, in one transaction: a broker that dies half-way leaves the
  // journal as it was. Version 1 journals gain the cancelled column (0 for their jobs); version 1
  // and 2 journals gain the checksums, computed from their rows as they are now.
  std::vector<std::string> statements = {"BEGIN IMMEDIATE"};
  if (version == 1) {
    statements.push_back("ALTER TABLE jobs ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0");
  }
  if (version >= 1 && version <= 2) {
    statements.push_back("ALTER TABLE jobs ADD COLUMN request_sum INTEGER");
    statements.push_back("ALTER TABLE jobs ADD COLUMN answer_sum INTEGER");
    statements.push_back("UPDATE jobs SET request_sum = paddock_row_sum(job_id, " +
                         std::to_string(kRequestDomain) +
                         ", request), answer_sum = CASE WHEN answer IS NULL THEN NULL ELSE "
                         "paddock_row_sum(job_id, answer_cmd, answer) END");
  }
  if (version >= 1 && version <= 3) {
    // Keys, not job_ids (a journal salvaged with .dump reads as version 3: rows already keyed,
    // with a '/', are left alone). A checksum that held under the old id is recomputed under the
    // key; one that did not is kept, so the damage is still found when the row is read.
    const std::string request = std::to_string(kRequestDomain);
    statements.push_back(
        "UPDATE jobs SET job_id = 'local/' || job_id, "
        "request_sum = CASE WHEN request_sum = paddock_row_sum(job_id, " +
        request + ", request) THEN paddock_row_sum('local/' || job_id, " + request +
        ", request) ELSE request_sum END, "
        "answer_sum = CASE WHEN answer IS NULL THEN answer_sum "
        "WHEN answer_sum = paddock_row_sum(job_id, answer_cmd, answer) "
        "THEN paddock_row_sum('local/' || job_id, answer_cmd, answer) ELSE answer_sum END "
        "WHERE instr(job_id, '/') = 0");
    if (version == 3) {  // older ones have no quarantine table yet (kSchema makes it)
      statements.push_back(
          "UPDATE quarantine SET job_id = 'local/' || job_id "
          "WHERE job_id IS NOT NULL AND instr(job_id, '/') = 0");
    }
  }
  statements.push_back(kSchema);
  statements.push_back("PRAGMA user_version=" + std::to_string(kSchemaVersion));
  statements.push_back("COMMIT");
  if (auto upgraded = exec_all(j->db_, statements); !upgraded) {
    (void)exec(j->db_, "ROLLBACK");
    return base::fail(where +
                      (version > 0 && version < kSchemaVersion
                           ? "cannot upgrade from schema version " + std::to_string(version) + ": "
                           : "cannot set up: ") +
                      upgraded.error().message);
  }
  if (version > 0 && version < kSchemaVersion) {
    spdlog::info("journal {}: upgraded from schema version {} to {}", path, version,
                 kSchemaVersion);
  }
  if (auto prepared = j->prepare(); !prepared) {
    return base::fail(where + "cannot prepare statements: " + prepared.error().message);
  }
  j->remember_files();
  return j;
}

base::Status Journal::prepare() {
  struct {
    sqlite3_stmt** st;
    const char* sql;
  } statements[] = {
      {&insert_,
       "INSERT OR IGNORE INTO jobs (job_id, request, accepted_ms, request_sum) "
       "VALUES (?1, ?2, ?3, ?4)"},
      {&dispatch_, "UPDATE jobs SET attempt = ?2, dispatched = 1 WHERE job_id = ?1"},
      // By row id: a seek in the table itself, not first in the index of job ids (the writes per
      // job are most of the journal's cost); job_id is checked on the row all the same.
      {&dispatch_row_,
       "UPDATE jobs SET attempt = ?2, dispatched = 1 WHERE rowid = ?3 AND job_id = ?1"},
      {&cancel_, "UPDATE jobs SET cancelled = 1 WHERE job_id = ?1 AND answer IS NULL"},
      {&finish_,
       "UPDATE jobs SET answer_cmd = ?2, answer = ?3, finished_ms = ?4, answer_sum = ?5 "
       "WHERE job_id = ?1 AND answer IS NULL"},
      {&finish_row_,
       "UPDATE jobs SET answer_cmd = ?2, answer = ?3, finished_ms = ?4, answer_sum = ?5 "
       "WHERE rowid = ?6 AND job_id = ?1 AND answer IS NULL"},
      {&answer_,
       "SELECT answer_cmd, answer, answer_sum, rowid, attempt FROM jobs "
       "WHERE job_id = ?1 AND answer IS NOT NULL"},
      {&expire_, "DELETE FROM jobs WHERE answer IS NOT NULL AND finished_ms < ?1"},
      {&quarantine_copy_,
       "INSERT INTO quarantine (jobs_rowid, job_id, damaged, quarantined_ms, request, accepted_ms, "
       "attempt, dispatched, cancelled, answer_cmd, answer, finished_ms, request_sum, answer_sum) "
       "SELECT rowid, job_id, ?2, ?3, request, accepted_ms, attempt, dispatched, cancelled, "
       "answer_cmd, answer, finished_ms, request_sum, answer_sum FROM jobs WHERE rowid = ?1"},
      // ?4 NULL keeps the request (only the answer was damaged).
      {&quarantine_mark_,
       "UPDATE jobs SET request = coalesce(?4, request), request_sum = coalesce(?5, request_sum), "
       "answer_cmd = ?6, answer = ?7, answer_sum = ?8, finished_ms = ?3 WHERE rowid = ?1"},
  };
  for (auto& s : statements) {
    if (sqlite3_prepare_v3(db_, s.sql, -1, SQLITE_PREPARE_PERSISTENT, s.st, nullptr) != SQLITE_OK) {
      return base::fail(message_of(db_));
    }
  }
  return {};
}

Journal::~Journal() {
  if (in_transaction_) (void)commit();
  for (auto* st : {insert_, dispatch_, dispatch_row_, cancel_, finish_, finish_row_, answer_,
                   expire_, quarantine_copy_, quarantine_mark_}) {
    sqlite3_finalize(st);
  }
  sqlite3_close(db_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock, after SQLite is done with the file
}

void Journal::begin() {
  if (in_transaction_) return;
  if (!exec(db_, "BEGIN IMMEDIATE")) {
    failed_statement("begin");
    return;
  }
  in_transaction_ = true;
}

void Journal::failed_statement(const char* what) {
  const int rc = sqlite3_extended_errcode(db_);
  std::string message = std::string(what) + ": " + message_of(db_);
  if (is_damage(rc)) {
    message = "damaged (" + message + "); " + damaged_advice(path_);
    if (broken_.empty()) broken_ = message;
  }
  if (write_error_.empty()) write_error_ = std::move(message);
}

void Journal::step_reset(sqlite3_stmt* st, const char* what) {
  if (sqlite3_step(st) != SQLITE_DONE) failed_statement(what);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

bool Journal::sum_ok(sqlite3_stmt* st, int col, std::string_view job_id, uint64_t domain,
                     std::string_view body) const {
  if (!sums_) return true;
  return sqlite3_column_type(st, col) != SQLITE_NULL &&
         sqlite3_column_int64(st, col) == row_sum(job_id, domain, body);
}

Journal::Answer Journal::quarantine(int64_t row, std::string_view job_id, uint32_t attempt,
                                    Damage what) {
  begin();
  const uint64_t now = unix_ms_now();
  const char* damaged = what == Damage::kRequest ? "request" : "answer";
  sc::JobError e;
  e.job_id = std::string(key_job_id(job_id));  // sent to the submitter: its own job_id
  e.code = sc::code(sc::JobCode::kJournalDamaged);
  e.variant = std::string(sc::job_code_name(e.code));
  e.attempt = attempt;
  e.retryable = false;
  e.message = what == Damage::kRequest
                  ? "this job's stored request failed its checksum (the broker's journal is "
                    "damaged): the job was quarantined and not run; submit it again under a new "
                    "job_id to run it"
                  : "this job's stored answer failed its checksum (the broker's journal is "
                    "damaged): it was quarantined and is lost; submit the job again under a new "
                    "job_id to run it again";
  Answer a{static_cast<uint8_t>(sc::Command::kError), sc::encode(e)};

  sqlite3_bind_int64(quarantine_copy_, 1, row);
  bind_text(quarantine_copy_, 2, damaged);
  sqlite3_bind_int64(quarantine_copy_, 3, static_cast<sqlite3_int64>(now));
  step_reset(quarantine_copy_, "quarantine a damaged row");
  sqlite3_bind_int64(quarantine_mark_, 1, row);
  sqlite3_bind_int64(quarantine_mark_, 3, static_cast<sqlite3_int64>(now));
  if (what == Damage::kRequest) {
    sqlite3_bind_zeroblob(quarantine_mark_, 4, 0);  // never read again: the job is answered
    sqlite3_bind_int64(quarantine_mark_, 5, row_sum(job_id, kRequestDomain, ""));
  }
  sqlite3_bind_int(quarantine_mark_, 6, a.command);
  bind_blob(quarantine_mark_, 7, a.body);
  sqlite3_bind_int64(quarantine_mark_, 8, row_sum(job_id, a.command, a.body));
  step_reset(quarantine_mark_, "answer a damaged row");
  ++quarantined_;
  spdlog::error(
      "journal {}: job '{}' (row {}): its stored {} failed its checksum; quarantined "
      "(table quarantine) and answered {} ({}){}",
      path_, job_id, row, damaged, e.variant, e.code, what == Damage::kRequest ? ", not run" : "");
  return a;
}

int64_t Journal::accepted(std::string_view job_id, std::string_view request, uint64_t unix_ms) {
  begin();
  bind_text(insert_, 1, job_id);
  bind_blob(insert_, 2, request);
  sqlite3_bind_int64(insert_, 3, static_cast<sqlite3_int64>(unix_ms));
  sqlite3_bind_int64(insert_, 4, row_sum(job_id, kRequestDomain, request));
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
  sqlite3_bind_int64(st, 5, row_sum(job_id, command, body));
  if (row > 0) sqlite3_bind_int64(st, 6, row);
  step_reset(st, "store answer");
}

void Journal::remember_files() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) db_file_ = {st.st_dev, st.st_ino, true};
  if (::stat((path_ + "-wal").c_str(), &st) == 0) wal_file_ = {st.st_dev, st.st_ino, true};
  if (lock_fd_ >= 0 && ::fstat(lock_fd_, &st) == 0) lock_file_ = {st.st_dev, st.st_ino, true};
  next_file_check_ = std::chrono::steady_clock::now() + kFileCheckInterval;
}

std::string Journal::check_files() {
  if (!broken_.empty()) return broken_;
  next_file_check_ = std::chrono::steady_clock::now() + kFileCheckInterval;
  // "" if `path` is still the file `id` names (or `id` is not known yet: the -wal before the
  // first write); else what became of it.
  auto changed = [](const std::string& path, FileId& id) -> std::string {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (!id.known) return "";
      return errno == ENOENT ? "was removed or renamed"
                             : std::string("cannot be seen: ") + std::strerror(errno);
    }
    if (!id.known) {
      id = {st.st_dev, st.st_ino, true};
      return "";
    }
    return st.st_dev == id.dev && st.st_ino == id.ino ? "" : "was replaced by another file";
  };
  const std::string wal_path = path_ + "-wal";
  const std::string lock_path = path_ + ".lock";
  const std::string db = changed(path_, db_file_);
  const std::string wal = changed(wal_path, wal_file_);
  const std::string lock = lock_file_.known ? changed(lock_path, lock_file_) : "";
  if (db.empty() && wal.empty() && lock.empty()) return "";
  std::string what;
  if (!db.empty()) {
    what = path_ + " " + db +
           " while the broker ran: what it committed since is in a file "
           "nobody will read";
  } else if (!wal.empty()) {
    // The connection still has the -wal it opened: copy what it holds into the database file
    // (still the one opened), so that the next start finds every job committed.
    sqlite3_stmt* st = nullptr;
    bool saved = false;
    if (sqlite3_prepare_v2(db_, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      saved =
          sqlite3_column_int(st, 0) == 0 && sqlite3_column_int(st, 1) == sqlite3_column_int(st, 2);
    }
    sqlite3_finalize(st);
    what = wal_path + " " + wal + " while the broker ran; " +
           (saved ? "what it held was checkpointed into " + path_ +
                        " first, so every job committed is kept for the next start"
                  : "checkpointing what it held into " + path_ + " failed (" + message_of(db_) +
                        "): jobs committed since the last checkpoint are lost");
  } else {
    what = lock_path + " " + lock +
           " while the broker ran: a second broker could open this "
           "journal beside this one";
  }
  broken_ = what +
            "; stopping (keep other programs and cleanup jobs out of the broker's state "
            "directory)";
  return broken_;
}

base::Status Journal::commit() {
  std::string why;
  if (in_transaction_) {
    const bool ok = write_error_.empty() && broken_.empty() && exec(db_, "COMMIT").ok();
    if (!ok) {
      if (!write_error_.empty()) {
        why = write_error_;
      } else if (!broken_.empty()) {
        why = broken_;
      } else {
        failed_statement("commit");
        why = write_error_;
      }
      (void)exec(db_, "ROLLBACK");
    }
    in_transaction_ = false;
    // After a commit that wrote: were those writes made into the files the next start reads?
    if (ok) why = check_files();
  } else if (!write_error_.empty()) {
    why = write_error_;
  } else if (!broken_.empty() || std::chrono::steady_clock::now() >= next_file_check_) {
    why = check_files();
  }
  write_error_.clear();
  if (why.empty()) return {};
  return base::fail("journal " + path_ + ": " + why);
}

std::vector<Journal::Pending> Journal::pending() {
  std::vector<Pending> out;
  struct Damaged {
    int64_t row;
    std::string job_id;
    uint32_t attempt;
    Damage what;
  };
  std::vector<Damaged> damaged;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT job_id, request, attempt, dispatched, accepted_ms, cancelled, "
                         "rowid, request_sum, answer_sum FROM jobs "
                         "WHERE answer IS NULL ORDER BY accepted_ms, rowid",
                         -1, &st, nullptr) != SQLITE_OK) {
    failed_statement("read pending jobs");
    spdlog::error("journal {}: reading pending jobs: {}", path_, message_of(db_));
    return out;
  }
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    Pending p;
    p.job_id = column_text(st, 0);
    p.request = column_blob(st, 1);
    p.attempt = static_cast<uint32_t>(sqlite3_column_int64(st, 2));
    p.dispatched = sqlite3_column_int(st, 3) != 0;
    p.accepted_unix_ms = static_cast<uint64_t>(sqlite3_column_int64(st, 4));
    p.cancel_requested = sqlite3_column_int(st, 5) != 0;
    p.row = sqlite3_column_int64(st, 6);
    if (!sum_ok(st, 7, p.job_id, kRequestDomain, p.request)) {
      damaged.push_back({p.row, std::move(p.job_id), p.attempt, Damage::kRequest});
    } else if (sums_ && sqlite3_column_type(st, 8) != SQLITE_NULL) {
      // An answer's checksum without its answer: the answer column itself was damaged.
      damaged.push_back({p.row, std::move(p.job_id), p.attempt, Damage::kAnswer});
    } else {
      out.push_back(std::move(p));
    }
  }
  if (rc != SQLITE_DONE) failed_statement("read pending jobs");
  sqlite3_finalize(st);
  for (const auto& d : damaged) (void)quarantine(d.row, d.job_id, d.attempt, d.what);
  return out;
}

std::optional<Journal::Answer> Journal::answer_of(std::string_view job_id) {
  bind_text(answer_, 1, job_id);
  std::optional<Answer> a;
  int64_t row = 0;
  uint32_t attempt = 0;
  bool damaged = false;
  const int rc = sqlite3_step(answer_);
  if (rc == SQLITE_ROW) {
    a = Answer{static_cast<uint8_t>(sqlite3_column_int(answer_, 0)), column_blob(answer_, 1)};
    damaged = !sum_ok(answer_, 2, job_id, a->command, a->body);
    row = sqlite3_column_int64(answer_, 3);
    attempt = static_cast<uint32_t>(sqlite3_column_int64(answer_, 4));
  } else if (rc != SQLITE_DONE) {
    failed_statement("read a stored answer");
  }
  sqlite3_reset(answer_);
  sqlite3_clear_bindings(answer_);
  if (damaged) a = quarantine(row, job_id, attempt, Damage::kAnswer);
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
  const std::string sql = std::string("SELECT job_id, answer, finished_ms, ") +
                          (sums_ ? "answer_sum" : "NULL") +
                          " FROM jobs WHERE answer_cmd = 8 "
                          "ORDER BY finished_ms DESC, rowid DESC LIMIT ?1";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return out;
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(limit));
  while (sqlite3_step(st) == SQLITE_ROW) {
    Failed f{column_text(st, 0), column_blob(st, 1),
             static_cast<uint64_t>(sqlite3_column_int64(st, 2))};
    if (!sum_ok(st, 3, f.job_id, static_cast<uint8_t>(sc::Command::kError), f.body)) {
      spdlog::warn("journal {}: job '{}': its stored answer failed its checksum; left out", path_,
                   f.job_id);
      continue;
    }
    out.push_back(std::move(f));
  }
  sqlite3_finalize(st);
  return out;
}

std::optional<Journal::Stored> Journal::stored(std::string_view job_id) {
  sqlite3_stmt* st = nullptr;
  const std::string sql = std::string(
                              "SELECT request, accepted_ms, attempt, dispatched, "
                              "answer_cmd, answer, finished_ms, ") +
                          (sums_ ? "request_sum, answer_sum" : "NULL, NULL") +
                          " FROM jobs WHERE job_id = ?1";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return std::nullopt;
  bind_text(st, 1, job_id);
  std::optional<Stored> out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    Stored s;
    s.request = column_blob(st, 0);
    s.accepted_unix_ms = static_cast<uint64_t>(sqlite3_column_int64(st, 1));
    s.attempt = static_cast<uint32_t>(sqlite3_column_int64(st, 2));
    s.dispatched = sqlite3_column_int(st, 3) != 0;
    if (!sum_ok(st, 7, job_id, kRequestDomain, s.request)) {
      spdlog::warn("journal {}: job '{}': its stored request failed its checksum", path_, job_id);
      s.request.clear();
    }
    if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
      Answer a{static_cast<uint8_t>(sqlite3_column_int(st, 4)), column_blob(st, 5)};
      if (sum_ok(st, 8, job_id, a.command, a.body)) {
        s.answer = std::move(a);
        s.finished_unix_ms = static_cast<uint64_t>(sqlite3_column_int64(st, 6));
      } else {
        spdlog::warn("journal {}: job '{}': its stored answer failed its checksum", path_, job_id);
      }
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
