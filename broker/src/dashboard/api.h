// The dashboard's HTTP routes (broker/README.md, "Dashboard" documents them): the pages (the
// embedded assets) and the JSON API, rendered on the HTTP server's threads from the latest
// Snapshot; a job not among the recent ones is looked up in the journal (read-only, its own
// SQLite connection) when there is one. Every route goes through Access first.
//
// Thread-safety: the render functions are pure; the routes run concurrently on the server's
// threads and share only the SnapshotBox and the journal reader (behind a mutex).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "dashboard/access.h"
#include "dashboard/snapshot.h"
#include "journal.h"
#include "paddock/metrics/http_server.h"

namespace paddock::broker::dashboard {

using Json = nlohmann::ordered_json;

constexpr int kApiVersion = 1;
constexpr size_t kDefaultJobsLimit = 100;

Json overview_json(const Snapshot& s);
Json workers_json(const Snapshot& s);
// The recent (finished) jobs, newest first, at most `limit`; `status` "" for all, else one of
// status_name()'s. Also the running jobs (at most `limit`).
Json jobs_json(const Snapshot& s, size_t limit, const std::string& status);
// One job in full; `source`: "recent", "running" or "journal".
Json job_json(const JobRecord& r, const char* source);

// A job as the journal stored it, or nullopt if its request cannot be decoded: kHeld without an
// answer, else its answer's status.
std::optional<JobRecord> record_from_journal(const std::string& job_id,
                                             const Journal::Stored& stored);

// Adds the dashboard's routes to `server`. REQUIRES: before server.start(); `box` and `access`
// outlive the server's threads. `journal_path` "": no journal.
void serve_dashboard(metrics::HttpServer& server, const SnapshotBox& box, const Access& access,
                     std::string journal_path);

}  // namespace paddock::broker::dashboard
