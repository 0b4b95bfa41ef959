#include "paddock/broker/dead_letters.h"

#include <memory>

#include "journal.h"
#include "pg_store.h"

namespace paddock::broker {

std::optional<std::vector<DeadLetter>> read_dead_letters(const DeadLetterSource& source,
                                                         size_t limit, std::string& error) {
  std::unique_ptr<Store> store;
  if (!source.store_uri.empty()) {
    store = PgStore::open_reader(source.store_uri, error);
  } else {
    store = Journal::open(source.journal_path, error, /*read_only=*/true);
  }
  if (!store) return std::nullopt;
  std::vector<DeadLetter> out;
  for (auto& f : store->failed(limit)) {
    out.push_back(DeadLetter{std::move(f.job_id), std::move(f.body), f.finished_unix_ms});
  }
  return out;
}

}  // namespace paddock::broker
