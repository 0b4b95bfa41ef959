#include "job_store.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "embedded_store.h"
#include "journal.h"
#include "pg_store.h"
#include "shared_store.h"

namespace paddock::broker {

std::unique_ptr<JobStore> make_job_store(const Options& options, LoopHost& host) {
  if (!options.store_url.empty()) {
    if (!options.journal_path.empty()) {
      throw std::runtime_error("a journal and a shared store exclude each other");
    }
    std::string error;
    PgStore::Settings s;
    s.conninfo = options.store_url;
    s.broker_name = options.broker_name;
    s.lease_ms = options.lease_ms;
    auto queue = PgStore::open(std::move(s), error);
    if (!queue) throw std::runtime_error(error);
    spdlog::info("{}: shared queue, this broker is {} (lease {} ms)", queue->describe(),
                 queue->broker_id(), options.lease_ms);
    return std::make_unique<SharedStore>(host, std::move(queue));
  }
  std::unique_ptr<Journal> journal;
  if (!options.journal_path.empty()) {
    std::string error;
    journal = Journal::open(options.journal_path, error);
    if (!journal) throw std::runtime_error(error);
  }
  return std::make_unique<EmbeddedStore>(host, std::move(journal));
}

}  // namespace paddock::broker
