// The dashboard's HTTP routes (broker/README.md, "Dashboard" documents them): the pages (the
// embedded assets) and the JSON API, rendered on the HTTP server's threads from the latest
// Snapshot; a job not among the recent ones is looked up in the broker's store when it has one
// (the embedded journal or the shared PostgreSQL queue, read-only, on a connection of its own).
// Every route goes through Access first.
//
// Thread-safety: the render functions are pure; the routes run concurrently on the server's
// threads and share only the SnapshotBox and the store reader (behind a mutex).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "dashboard/access.h"
#include "dashboard/snapshot.h"
#include "paddock/metrics/http_server.h"
#include "store.h"

namespace paddock::broker::dashboard {

using Json = nlohmann::ordered_json;

constexpr int kApiVersion = 1;
constexpr size_t kDefaultJobsLimit = 100;

Json overview_json(const Snapshot& s);
Json workers_json(const Snapshot& s);
// The recent (finished) jobs, newest first, at most `limit`; `status` "" for all, else one of
// status_name()'s. Also the running jobs (at most `limit`).
Json jobs_json(const Snapshot& s, size_t limit, const std::string& status);
// One job in full; `source`: "recent", "running", "journal" or "shared-queue".
Json job_json(const JobRecord& r, const char* source);

// A job as the store kept it, or nullopt if its request cannot be decoded: kHeld without an
// answer, else its answer's status.
std::optional<JobRecord> record_from_store(const std::string& job_id, const Store::Stored& stored);

// Where the job lookup reads jobs that left the ring: `open` makes a read-only Store (or says why
// it cannot; called at the first lookup and again after the store broke), `source` is
// what job_json says a job found there came from. No `open`: the broker keeps nothing.
struct StoreLookup {
  std::function<base::Expected<std::unique_ptr<Store>>()> open;
  std::string source;  // "journal" or "shared-queue"
};

// Adds the dashboard's routes to `server`. REQUIRES: before server.start(); `box` and `access`
// outlive the server's threads.
// A job is found by its key, "<tenant>/<job_id>" (broker/src/tenancy.h); an id without a tenant
// is `local_tenant`'s.
void serve_dashboard(metrics::HttpServer& server, const SnapshotBox& box, const Access& access,
                     StoreLookup lookup, std::string local_tenant);

}  // namespace paddock::broker::dashboard
