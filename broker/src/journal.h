// The broker's journal (issue 7; broker/README.md "Journal"): every accepted job, its dispatches
// and its final answer, in an SQLite file in WAL mode. Writes are buffered in one transaction per
// loop turn (group commit); the loop sends ACCEPTED and answers only after commit() returned, so
// nothing a submitter was told is lost to a crash.
//
// Integrity (issue 20): each row's request and answer carry an XXH3-64 checksum, written with
// them and checked on every read. A row that fails its checksum is quarantined (copied into the
// `quarantine` table) and becomes a job answered ERROR 107 JournalDamaged: never run altered, and
// its submitter hears why. Damage SQLite itself reports (SQLITE_CORRUPT, at open from a full
// integrity_check, or from any statement later) and journal files removed or replaced under a
// running broker fail commit(): the broker stops, naming the file and what to do.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace paddock::broker {

class Journal final : public Store {
 public:
  // A job accepted and not yet answered, as a restarted broker re-queues it.
  struct Pending {
    std::string job_id;
    std::string request;  // the encoded JobRequest, as the submitter sent it
    uint32_t attempt = 1;
    bool dispatched = false;  // it was on a worker when the broker stopped
    uint64_t accepted_unix_ms = 0;
    bool cancel_requested = false;  // CANCELled while running; its worker had not answered
    int64_t row = 0;                // its row id, for dispatched() and finished()
  };

  // Opens (or creates) the journal at `path`. Refuses, with a message naming the file and what is
  // wrong and what to do, a file that is not an SQLite database, fails SQLite's full
  // integrity_check (it reads every page and checks every index against its table: about as long
  // as quick_check, 0.45 s against 0.41 s for 280 MB of journal, warm cache), or has a newer
  // schema. An older schema is upgraded in place in one transaction; rows of a journal older than
  // version 3 get their checksums then, from their bytes as they are (damage done before the
  // upgrade cannot be told; damage after it can).
  // A writable journal is locked for its owner's lifetime (flock on `<path>.lock`, which holds the
  // owner's pid): a second broker given the same file is refused with a message naming the first
  // one's pid, before SQLite opens it. The kernel drops the lock when its process dies, so a
  // crashed broker leaves no stale lock.
  // read_only: for tools that look at a live broker's journal (the CLI's dead-letters); nothing is
  // created or written or locked, and the file must exist.
  static base::Expected<std::unique_ptr<Journal>> open(const std::string& path,
                                                       bool read_only = false);
  ~Journal() override;
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Buffered in the current transaction (begun on the first write after a commit).
  // Returns the job's row id, with which dispatched() and finished() reach its row directly
  // rather than through the index of job ids; 0 if the job_id had a row already (or the write
  // failed).
  int64_t accepted(std::string_view job_id, std::string_view request, uint64_t unix_ms);
  // `row`: what accepted() or pending() gave for this job; 0 finds the row by job_id. A row that
  // is not this job's is left alone.
  void dispatched(std::string_view job_id, uint32_t attempt, int64_t row = 0) override;
  // A CANCEL of a running job: a restarted broker answers Cancelled instead of running it again.
  void cancel_requested(std::string_view job_id) override;
  // The first answer stored for a job wins; a second one (a duplicate result) is ignored.
  void finished(std::string_view job_id, uint8_t command, std::string_view body, uint64_t unix_ms,
                int64_t row = 0) override;
  // Commits what the turn wrote, or says why it could not: the broker then must not send what
  // depended on it, and stops. Also false once anything of this turn read or wrote hit
  // damage SQLite reported (SQLITE_CORRUPT, SQLITE_NOTADB), and when the journal's files are not
  // the ones it opened: the database file, its `-wal` or its `.lock` removed, renamed or replaced
  // (checked after every commit that wrote, and by a commit() with nothing to write once
  // kFileCheckInterval has passed since the last check: the loop calls it every turn). A
  // `-wal` removed while the database file is still in place is first checkpointed into it, so
  // what was committed stays in the journal for the next start. Every call after such a failure
  // fails the same way.
  base::Status commit() override;
  bool dirty() const override { return in_transaction_; }

  // Every accepted job without an answer, in acceptance order. A row whose request fails its
  // checksum is not among them: it is quarantined and answered JournalDamaged (107), in the
  // current transaction.
  std::vector<Pending> pending();
  // The stored answer of a finished job. An answer that fails its checksum is quarantined and
  // replaced (in the current transaction) by an ERROR JournalDamaged (107), which is returned.
  std::optional<Answer> answer_of(std::string_view job_id) override;
  // Forgets answers stored before `cutoff_unix_ms`. Returns how many.
  uint64_t expire(uint64_t cutoff_unix_ms) override;
  // Jobs held: accepted and not expired.
  uint64_t size() override;
  // Jobs whose final answer is an ERROR frame, newest first (the dead-letter list's raw rows).
  // Answers that fail their checksum are left out (and logged).
  std::vector<Failed> failed(size_t limit) override;
  // A request that fails its checksum reads as empty, an answer that fails its as none.
  std::optional<Stored> stored(std::string_view job_id) override;
  std::string describe() const override { return "journal " + path_; }

  // Rows quarantined since open (the metric paddock_broker_journal_quarantined_total).
  uint64_t quarantined() const { return quarantined_; }

  // How often, at most, commit() with nothing written checks the files are the ones opened.
  static constexpr auto kFileCheckInterval = std::chrono::milliseconds(100);

 private:
  // A file's identity as opened: a path that names another one (or none) was replaced (removed).
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    bool known = false;
  };
  enum class Damage { kRequest, kAnswer };

  Journal() = default;
  base::Status prepare();
  void begin();
  void step_reset(sqlite3_stmt* st, const char* what);
  // Notes that a statement failed (`what`), for this turn's commit() to report; damage SQLite
  // reports is sticky (broken_), with what the operator should do.
  void failed_statement(const char* what);
  // Whether column `col` of `st` holds row_sum(job_id, domain, body); true on a journal too old to
  // have checksums (read-only tools only: a writable one is upgraded at open).
  bool sum_ok(sqlite3_stmt* st, int col, std::string_view job_id, uint64_t domain,
              std::string_view body) const;
  // Copies row `row` into the quarantine table and makes it a job answered ERROR JournalDamaged,
  // whose answer it returns; in the current transaction.
  Answer quarantine(int64_t row, std::string_view job_id, uint32_t attempt, Damage what);
  // Empty if the database file, its -wal (once it exists) and the lock file are still the ones
  // opened; else what is wrong (also kept in broken_).
  std::string check_files();
  void remember_files();

  sqlite3* db_ = nullptr;
  int lock_fd_ = -1;  // the flock on <path>.lock; -1 when read-only
  std::string path_;
  bool in_transaction_ = false;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* dispatch_ = nullptr;
  sqlite3_stmt* dispatch_row_ = nullptr;
  sqlite3_stmt* cancel_ = nullptr;
  sqlite3_stmt* finish_ = nullptr;
  sqlite3_stmt* finish_row_ = nullptr;
  sqlite3_stmt* answer_ = nullptr;
  sqlite3_stmt* expire_ = nullptr;
  sqlite3_stmt* quarantine_copy_ = nullptr;
  sqlite3_stmt* quarantine_mark_ = nullptr;
  bool sums_ = true;         // the schema has request_sum and answer_sum (version 3 and later)
  std::string write_error_;  // the first statement that failed in this transaction
  std::string broken_;       // damage or files gone: every commit() fails with this from now on
  uint64_t quarantined_ = 0;
  FileId db_file_, wal_file_, lock_file_;
  std::chrono::steady_clock::time_point next_file_check_{};
};

}  // namespace paddock::broker
