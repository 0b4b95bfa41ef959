// The broker's dead letters, read from outside a broker (the CLI's `paddock dead-letters`): the
// jobs whose stored final answer is an ERROR frame, newest first, from an embedded journal file
// or from the shared PostgreSQL queue. Read only: a broker may be running on the same store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "paddock/base/expected.h"

namespace paddock::broker {

struct DeadLetter {
  std::string tenant;  // whose job it is (broker/README.md, "Tenants")
  std::string job_id;  // the submitter's
  std::string body;    // the encoded JobError (schemas::decode_job_error)
  uint64_t finished_unix_ms = 0;
};

// Where to read: exactly one of a journal file (a broker's --journal) or a PostgreSQL URI (the
// brokers' --store).
struct DeadLetterSource {
  std::string journal_path;
  std::string store_uri;
};

// At most `limit` dead letters, newest first; a Failure when the store cannot be opened or read
// (a missing file, a damaged journal, an unreachable database).
base::Expected<std::vector<DeadLetter>> read_dead_letters(const DeadLetterSource& source,
                                                          size_t limit);

}  // namespace paddock::broker
