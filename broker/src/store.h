// What the broker keeps of its jobs beyond memory: one interface, two engines (broker/README.md,
// "Stores"). The embedded journal (journal.h, SQLite: one broker per file, the default) and the
// shared PostgreSQL queue (pg_store.h: several brokers, one queue). Both store a job before the
// broker says ACCEPTED, are idempotent by job_id, keep the first answer of a job until it expires,
// and list the jobs whose answer is an ERROR (the dead letters).
//
// Writes are buffered in one transaction per loop turn (group commit); the loop sends what depends
// on them only after commit() returned true.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/base/expected.h"

namespace paddock::broker {

class Store {
 public:
  // A stored final answer: the frame's command byte and its body.
  struct Answer {
    uint8_t command = 0;
    std::string body;
  };
  // A job whose final answer is an ERROR frame (a dead letter).
  struct Failed {
    std::string job_id;
    std::string body;  // the encoded JobError
    uint64_t finished_unix_ms = 0;
  };
  // One job as stored, whether answered or not (the dashboard's lookup by id).
  struct Stored {
    std::string request;  // the encoded JobRequest
    uint64_t accepted_unix_ms = 0;
    uint32_t attempt = 1;
    bool dispatched = false;
    std::optional<Answer> answer;
    uint64_t finished_unix_ms = 0;
  };

  virtual ~Store() = default;

  // "journal /var/lib/paddock/broker/journal.db", "postgresql host=… dbname=…" (no password).
  virtual std::string describe() const = 0;

  // Buffered in the current transaction (begun on the first write after a commit). `row`: the
  // embedded journal's row id of the job, when known (0: found by job_id); the shared queue has
  // no use for it.
  virtual void dispatched(std::string_view job_id, uint32_t attempt, int64_t row = 0) = 0;
  // A CANCEL of a running job: a restarted broker answers Cancelled instead of running it again.
  virtual void cancel_requested(std::string_view job_id) = 0;
  // The first answer stored for a job wins; a second one (a duplicate result) is ignored.
  virtual void finished(std::string_view job_id, uint8_t command, std::string_view body,
                        uint64_t unix_ms, int64_t row = 0) = 0;
  // Commits what the turn wrote, or says why it could not: the broker then must not send what
  // depended on it.
  virtual base::Status commit() = 0;
  virtual bool dirty() const = 0;

  // The stored answer of a finished job.
  virtual std::optional<Answer> answer_of(std::string_view job_id) = 0;
  // Forgets answers stored before `cutoff_unix_ms`. Returns how many.
  virtual uint64_t expire(uint64_t cutoff_unix_ms) = 0;
  // Jobs held: accepted and not expired.
  virtual uint64_t size() = 0;
  // Dead letters, newest first.
  virtual std::vector<Failed> failed(size_t limit) = 0;
  virtual std::optional<Stored> stored(std::string_view job_id) = 0;
  // false once the engine lost its connection (the shared queue; the journal never does): a
  // reader then opens a new one.
  virtual bool healthy() const { return true; }
};

}  // namespace paddock::broker
