#include "paddock/broker/dead_letters.h"

#include <memory>

#include "journal.h"
#include "pg_store.h"
#include "tenancy.h"

namespace paddock::broker {

base::Expected<std::vector<DeadLetter>> read_dead_letters(const DeadLetterSource& source,
                                                          size_t limit) {
  std::unique_ptr<Store> store;
  if (!source.store_uri.empty()) {
    auto queue = PgStore::open_reader(source.store_uri);
    if (!queue) return std::move(queue).error();
    store = std::move(queue).value();
  } else {
    auto journal = Journal::open(source.journal_path, /*read_only=*/true);
    if (!journal) return std::move(journal).error();
    store = std::move(journal).value();
  }
  std::vector<DeadLetter> out;
  for (auto& f : store->failed(limit)) {
    // The store keeps the job's key, "<tenant>/<job_id>".
    out.push_back(DeadLetter{std::string(key_tenant(f.job_id)), std::string(key_job_id(f.job_id)),
                             std::move(f.body), f.finished_unix_ms});
  }
  return out;
}

}  // namespace paddock::broker
