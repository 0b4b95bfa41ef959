// The broker's journal (issue 7; broker/README.md "Journal"): every accepted job, its dispatches
// and its final answer, in an SQLite file in WAL mode. Writes are buffered in one transaction per
// loop turn (group commit); the loop sends ACCEPTED and answers only after commit() returned, so
// nothing a submitter was told is lost to a crash.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

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
  // wrong, a file that is not an SQLite database, fails its integrity check, or has a newer schema.
  // A writable journal is locked for its owner's lifetime (flock on `<path>.lock`, which holds the
  // owner's pid): a second broker given the same file is refused with a message naming the first
  // one's pid, before SQLite opens it. The kernel drops the lock when its process dies, so a
  // crashed broker leaves no stale lock.
  // read_only: for tools that look at a live broker's journal (the CLI's dead-letters); nothing is
  // created or written or locked, and the file must exist.
  static std::unique_ptr<Journal> open(const std::string& path, std::string& error,
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
  void finished(std::string_view job_id, uint8_t command, std::string_view body,
                uint64_t unix_ms, int64_t row = 0) override;
  // Commits what the turn wrote. false (and `error`) if it could not: the broker then must not
  // send what depended on it.
  bool commit(std::string& error) override;
  bool dirty() const override { return in_transaction_; }

  // Every accepted job without an answer, in acceptance order.
  std::vector<Pending> pending();
  // The stored answer of a finished job.
  std::optional<Answer> answer_of(std::string_view job_id) override;
  // Forgets answers stored before `cutoff_unix_ms`. Returns how many.
  uint64_t expire(uint64_t cutoff_unix_ms) override;
  // Jobs held: accepted and not expired.
  uint64_t size() override;
  // Jobs whose final answer is an ERROR frame, newest first (the dead-letter list's raw rows).
  std::vector<Failed> failed(size_t limit) override;
  std::optional<Stored> stored(std::string_view job_id) override;
  std::string describe() const override { return "journal " + path_; }

 private:
  Journal() = default;
  bool prepare(std::string& error);
  void begin();
  void step_reset(sqlite3_stmt* st, const char* what);

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
  std::string write_error_;  // the first write that failed in this transaction
};

}  // namespace paddock::broker
