#include "job_store.h"

#include <spdlog/spdlog.h>

#include "embedded_store.h"
#include "journal.h"
#include "pg_store.h"
#include "shared_store.h"

namespace paddock::broker {

base::Expected<OpenedStorage> open_storage(const Options& options) {
  OpenedStorage storage;
  if (!options.store_url.empty()) {
    if (!options.journal_path.empty()) {
      return base::fail("a journal and a shared store exclude each other");
    }
    PgStore::Settings s;
    s.conninfo = options.store_url;
    s.broker_name = options.broker_name;
    s.lease_ms = options.lease_ms;
    auto queue = PgStore::open(std::move(s));
    if (!queue) return std::move(queue).error();
    spdlog::info("{}: shared queue, this broker is {} (lease {} ms)", (*queue)->describe(),
                 (*queue)->broker_id(), options.lease_ms);
    storage.queue = std::move(queue).value();
  } else if (!options.journal_path.empty()) {
    auto journal = Journal::open(options.journal_path);
    if (!journal) return std::move(journal).error();
    storage.journal = std::move(journal).value();
  }
  return storage;
}

std::unique_ptr<JobStore> make_job_store(OpenedStorage storage, LoopHost& host) {
  if (storage.queue) return std::make_unique<SharedStore>(host, std::move(storage.queue));
  return std::make_unique<EmbeddedStore>(host, std::move(storage.journal));
}

}  // namespace paddock::broker
