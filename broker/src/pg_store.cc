#include "pg_store.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "answers.h"
#include "tenancy.h"

namespace paddock::broker {

namespace {

// 2: job_id holds the job's key, "<tenant>/<job_id>" (broker/src/tenancy.h); version 1's rows
//    become the local tenant's ("local/<job_id>").
// 3: the tenant in a column of its own, for claims per tenant and the tenants' global limits.
constexpr int kSchemaVersion = 3;
// Held while the schema is created or checked: brokers that start together do not race on it.
constexpr const char* kSchemaLock = "SELECT pg_advisory_xact_lock(7410051)";

// state: 0 queued, 1 claimed (by `owner`), 2 answered.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS paddock_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS paddock_jobs (
  job_id      text PRIMARY KEY,
  seq         bigint GENERATED ALWAYS AS IDENTITY,
  image       text NOT NULL,
  priority    integer NOT NULL,
  deadline_ms bigint NOT NULL,
  request     bytea NOT NULL,
  accepted_ms bigint NOT NULL,
  attempt     integer NOT NULL DEFAULT 1,
  state       smallint NOT NULL DEFAULT 0,
  owner       text,
  dispatched  boolean NOT NULL DEFAULT false,
  cancelled   boolean NOT NULL DEFAULT false,
  answer_cmd  smallint,
  answer      bytea,
  finished_ms bigint
);
ALTER TABLE paddock_jobs ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';
DROP INDEX IF EXISTS paddock_jobs_queued;
CREATE INDEX IF NOT EXISTS paddock_jobs_tenant_queued
  ON paddock_jobs (image, tenant, priority DESC, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS paddock_jobs_tenant_open ON paddock_jobs (tenant, state)
  WHERE state <> 2;
CREATE INDEX IF NOT EXISTS paddock_jobs_claimed ON paddock_jobs (owner) WHERE state = 1;
CREATE INDEX IF NOT EXISTS paddock_jobs_answered ON paddock_jobs (finished_ms) WHERE state = 2;
CREATE INDEX IF NOT EXISTS paddock_jobs_deadline ON paddock_jobs (deadline_ms)
  WHERE state = 0 AND deadline_ms <> 0;
CREATE TABLE IF NOT EXISTS paddock_brokers (
  broker_id   text PRIMARY KEY,
  started     timestamptz NOT NULL DEFAULT now(),
  lease_until timestamptz NOT NULL,
  images      text[] NOT NULL DEFAULT '{}'
);
CREATE OR REPLACE FUNCTION paddock_notify_answered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('paddock_answered', NEW.job_id);
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION paddock_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('paddock_queued', '');
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS paddock_answered ON paddock_jobs;
CREATE TRIGGER paddock_answered AFTER UPDATE OF state ON paddock_jobs
  FOR EACH ROW WHEN (NEW.state = 2 AND OLD.state <> 2) EXECUTE FUNCTION paddock_notify_answered();
DROP TRIGGER IF EXISTS paddock_queued_insert ON paddock_jobs;
CREATE TRIGGER paddock_queued_insert AFTER INSERT ON paddock_jobs
  FOR EACH ROW EXECUTE FUNCTION paddock_notify_queued();
DROP TRIGGER IF EXISTS paddock_queued_again ON paddock_jobs;
CREATE TRIGGER paddock_queued_again AFTER UPDATE OF state ON paddock_jobs
  FOR EACH ROW WHEN (NEW.state = 0 AND OLD.state <> 0) EXECUTE FUNCTION paddock_notify_queued();
)sql";

// Prepared statements: name, SQL.
struct Statement {
  const char* name;
  const char* sql;
};
constexpr Statement kStatements[] = {
    {"known", "SELECT state, answer_cmd, answer FROM paddock_jobs WHERE job_id = $1"},
    {"claim",
     "UPDATE paddock_jobs j SET state = 1, owner = $1, dispatched = true FROM ("
     "  SELECT job_id FROM paddock_jobs WHERE state = 0 AND image = $2 AND tenant = $3"
     "  ORDER BY priority DESC, seq LIMIT $4 FOR UPDATE SKIP LOCKED) c "
     "WHERE j.job_id = c.job_id "
     "RETURNING j.job_id, j.request, j.attempt, j.cancelled, j.accepted_ms, j.priority, j.seq"},
    // The tenants with queued jobs of an image: one index probe per tenant (a loose index scan;
    // a GROUP BY would read every queued job).
    {"queued_tenants",
     "WITH RECURSIVE t(tenant) AS ("
     "  (SELECT tenant FROM paddock_jobs WHERE state = 0 AND image = $1 ORDER BY tenant LIMIT 1)"
     "  UNION ALL"
     "  SELECT (SELECT q.tenant FROM paddock_jobs q WHERE q.state = 0 AND q.image = $1"
     "          AND q.tenant > t.tenant ORDER BY q.tenant LIMIT 1)"
     "  FROM t WHERE t.tenant IS NOT NULL) "
     "SELECT tenant FROM t WHERE tenant IS NOT NULL LIMIT $2"},
    // Held while a broker counts a tenant's jobs against one of its limits and acts on the count
    // (until the commit): brokers checking one tenant take turns. Two tenants of one hash share a
    // lock, which only makes them wait on each other.
    {"lock_tenant", "SELECT pg_advisory_xact_lock(7410052, hashtext($1))"},
    // A tenant's jobs in a state, counted up to a cap (a limit's count costs at most the limit).
    {"count_tenant",
     "SELECT count(*) FROM (SELECT 1 FROM paddock_jobs WHERE tenant = $1 AND state = $2 "
     "LIMIT $3) x"},
    {"claim_expired",
     "UPDATE paddock_jobs j SET state = 1, owner = $1 FROM ("
     "  SELECT job_id FROM paddock_jobs WHERE state = 0 AND deadline_ms <> 0 AND deadline_ms <= $2"
     "  LIMIT $3 FOR UPDATE SKIP LOCKED) c "
     "WHERE j.job_id = c.job_id "
     "RETURNING j.job_id, j.request, j.attempt, j.cancelled, j.accepted_ms, j.priority, j.seq"},
    {"claim_unknown_image",
     "UPDATE paddock_jobs j SET state = 1, owner = $1 FROM ("
     "  SELECT q.job_id FROM paddock_jobs q WHERE q.state = 0 AND q.accepted_ms <= $2"
     "  AND EXISTS (SELECT 1 FROM paddock_brokers b WHERE b.lease_until >= now()"
     "              AND cardinality(b.images) > 0)"
     "  AND NOT EXISTS (SELECT 1 FROM paddock_brokers b WHERE b.lease_until >= now()"
     "                  AND q.image = ANY(b.images))"
     "  LIMIT $3 FOR UPDATE SKIP LOCKED) c "
     "WHERE j.job_id = c.job_id "
     "RETURNING j.job_id, j.request, j.attempt, j.cancelled, j.accepted_ms, j.priority, j.seq"},
    {"dispatched",
     "UPDATE paddock_jobs SET attempt = $2, dispatched = true WHERE job_id = $1 AND state = 1 "
     "AND owner = $3"},
    {"cancel_requested",
     "UPDATE paddock_jobs SET cancelled = true WHERE job_id = $1 AND state <> 2"},
    {"finish",
     "UPDATE paddock_jobs SET state = 2, owner = NULL, answer_cmd = $2, answer = $3, "
     "finished_ms = $4 WHERE job_id = $1 AND state <> 2"},
    {"answer", "SELECT answer_cmd, answer FROM paddock_jobs WHERE job_id = $1 AND state = 2"},
    {"cancel_queued",
     "UPDATE paddock_jobs SET state = 2, answer_cmd = $2, answer = $3, finished_ms = $4, "
     "cancelled = true WHERE job_id = $1 AND state = 0"},
    {"cancel_claimed",
     "UPDATE paddock_jobs SET cancelled = true WHERE job_id = $1 AND state = 1 "
     "RETURNING pg_notify('paddock_cancel', job_id)"},
    {"expire", "DELETE FROM paddock_jobs WHERE state = 2 AND finished_ms < $1"},
    {"renew",
     "UPDATE paddock_brokers SET lease_until = now() + $2 * interval '1 millisecond', images = $3 "
     "WHERE broker_id = $1 AND lease_until >= now()"},
    {"reap",
     "UPDATE paddock_jobs j SET state = 0, owner = NULL, dispatched = false, "
     "attempt = attempt + CASE WHEN dispatched THEN 1 ELSE 0 END "
     "WHERE state = 1 AND NOT EXISTS (SELECT 1 FROM paddock_brokers b "
     "  WHERE b.broker_id = j.owner AND b.lease_until >= now())"},
    {"forget_dead", "DELETE FROM paddock_brokers WHERE lease_until < now()"},
    {"release",
     "UPDATE paddock_jobs SET state = 0, owner = NULL, dispatched = false, "
     "attempt = attempt + CASE WHEN dispatched THEN 1 ELSE 0 END "
     "WHERE state = 1 AND owner = $1"},
    {"unanswered", "SELECT count(*) FROM paddock_jobs WHERE state <> 2"},
};

// Parameters of one statement: text and bytea in binary format (bytes as they are), integers as
// decimal text (libpq converts them on the server).
class Params {
 public:
  Params& text(std::string_view v) { return add(std::string(v), 1); }
  Params& bytes(std::string_view v) { return add(std::string(v), 1); }
  Params& num(int64_t v) { return add(std::to_string(v), 0); }
  Params& text_array(const std::vector<std::string>& items) {
    // A text[] literal: {"a","b"}; image names are [A-Za-z0-9._-] (schemas), quoted anyway.
    std::string lit = "{";
    for (const auto& i : items) {
      if (lit.size() > 1) lit += ',';
      lit += '"';
      for (char c : i) {
        if (c == '"' || c == '\\') lit += '\\';
        lit += c;
      }
      lit += '"';
    }
    lit += '}';
    return add(std::move(lit), 0);
  }
  int size() const { return static_cast<int>(values_.size()); }
  const char* const* values() {
    ptrs_.clear();
    for (const auto& v : values_) ptrs_.push_back(v.c_str());
    return ptrs_.data();
  }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  Params& add(std::string v, int format) {
    lengths_.push_back(static_cast<int>(v.size()));
    formats_.push_back(format);
    values_.push_back(std::move(v));
    return *this;
  }
  std::vector<std::string> values_;
  std::vector<const char*> ptrs_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// `sql` with `p` for $1…, unprepared (batches vary in their text), results in binary.
Result exec(pg_conn* conn, const std::string& sql, Params& p) {
  return Result(
      PQexecParams(conn, sql.c_str(), p.size(), nullptr, p.values(), p.lengths(), p.formats(), 1));
}

// "$1,$2,…,$n": the placeholders of an IN list of n parameters.
std::string placeholders(size_t n) {
  std::string out;
  for (size_t k = 1; k <= n; ++k) out += (k > 1 ? ",$" : "$") + std::to_string(k);
  return out;
}

// Results in binary format: integers big-endian, text and bytea as bytes.
std::string bytes_at(const PGresult* r, int row, int col) {
  return std::string(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}
int64_t int_at(const PGresult* r, int row, int col) {
  const char* p = PQgetvalue(r, row, col);
  const int n = PQgetlength(r, row, col);
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  if (n == 2) return static_cast<int16_t>(v);
  if (n == 4) return static_cast<int32_t>(v);
  return static_cast<int64_t>(v);
}
bool bool_at(const PGresult* r, int row, int col) { return PQgetvalue(r, row, col)[0] != 0; }

std::string message_of(pg_conn* c) {
  std::string m = c ? PQerrorMessage(c) : "out of memory";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  for (auto& ch : m) {
    if (ch == '\n') ch = ' ';
  }
  return m;
}

// The server as an operator would name it, without a password: "host=… port=… dbname=… user=…".
std::string server_of(pg_conn* c) {
  if (c == nullptr) return "?";
  std::string s = std::string("host=") + (PQhost(c) ? PQhost(c) : "?") +
                  " port=" + (PQport(c) ? PQport(c) : "?") +
                  " dbname=" + (PQdb(c) ? PQdb(c) : "?") + " user=" + (PQuser(c) ? PQuser(c) : "?");
  return s;
}

std::string random_suffix() {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 8; ++i) s += kHex[rd() % 16];
  return s;
}

}  // namespace

base::Expected<std::unique_ptr<PgStore>> PgStore::open(Settings settings) {
  std::unique_ptr<PgStore> s(new PgStore(std::move(settings)));
  if (auto st = s->connect(); !st) return std::move(st).error();
  if (auto st = s->register_broker(); !st) return std::move(st).error();
  return s;
}

base::Expected<std::unique_ptr<PgStore>> PgStore::open_reader(const std::string& conninfo) {
  Settings settings;
  settings.conninfo = conninfo;
  std::unique_ptr<PgStore> s(new PgStore(std::move(settings)));
  if (auto st = s->connect(/*reader=*/true); !st) return std::move(st).error();
  return s;
}

PgStore::~PgStore() {
  if (conn_ != nullptr) PQfinish(conn_);
}

std::string PgStore::describe() const { return "postgresql " + server_of(conn_); }

base::Status PgStore::connect(bool reader) {
  std::string error;
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  // connect_timeout only applies where the conninfo does not set one.
  const char* keys[] = {"dbname", "connect_timeout", "application_name", nullptr};
  const std::string timeout = std::to_string(settings_.connect_timeout_s);
  const char* values[] = {settings_.conninfo.c_str(), timeout.c_str(), "paddock-broker", nullptr};
  conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    error = "postgresql: cannot connect (" + message_of(conn_) + ")";
    if (conn_ != nullptr) {
      PQfinish(conn_);
      conn_ = nullptr;
    }
    return base::fail(std::move(error));
  }
  const std::string where = "postgresql " + server_of(conn_) + ": ";
  auto exec = [&](const char* sql) {
    Result r(PQexec(conn_, sql));
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      error = where + message_of(conn_);
      return Result();
    }
    return r;
  };
  // Quiet: CREATE … IF NOT EXISTS notices are not news.
  if (!exec("SET client_min_messages = warning")) return base::fail(std::move(error));
  if (reader) {
    Result v = exec("SELECT to_regclass('paddock_jobs') IS NOT NULL");
    if (!v) return base::fail(std::move(error));
    if (PQgetvalue(v.get(), 0, 0)[0] != 't') {
      error = where + "no shared queue here (no paddock_jobs table): is this the brokers' --store?";
      return base::fail(std::move(error));
    }
    return {};
  }
  if (!exec("BEGIN") || !exec(kSchemaLock) || !exec(kSchema)) {
    error += " (creating the schema)";
    Result(PQexec(conn_, "ROLLBACK"));
    return base::fail(std::move(error));
  }
  {
    Result v = exec("SELECT max(version) FROM paddock_schema");
    if (!v) return base::fail(std::move(error));
    const int version = PQgetisnull(v.get(), 0, 0) ? 0 : std::atoi(PQgetvalue(v.get(), 0, 0));
    if (version > kSchemaVersion) {
      error = where + "schema version " + std::to_string(version) +
              " is newer than this broker's (" + std::to_string(kSchemaVersion) + ")";
      Result(PQexec(conn_, "ROLLBACK"));
      return base::fail(std::move(error));
    }
    if (version == 1) {
      // Before tenants: every job was the local tenant's (brokers upgrade together: an older one
      // refuses this schema at its start).
      if (!exec("UPDATE paddock_jobs SET job_id = 'local/' || job_id "
                "WHERE position('/' in job_id) = 0")) {
        error += " (upgrading the schema to version 2)";
        Result(PQexec(conn_, "ROLLBACK"));
        return base::fail(std::move(error));
      }
      spdlog::info("{}upgraded from schema version 1 to {}: its jobs are tenant 'local''s", where,
                   kSchemaVersion);
    }
    if (version >= 1 && version < 3) {
      // Before the tenant column: the tenant is the key's part before its first '/'.
      if (!exec("UPDATE paddock_jobs SET tenant = split_part(job_id, '/', 1) WHERE tenant = ''")) {
        error += " (upgrading the schema to version 3)";
        Result(PQexec(conn_, "ROLLBACK"));
        return base::fail(std::move(error));
      }
      spdlog::info("{}upgraded from schema version {} to {}: jobs carry their tenant", where,
                   version, kSchemaVersion);
    }
    if (version < kSchemaVersion &&
        !exec(("INSERT INTO paddock_schema VALUES (" + std::to_string(kSchemaVersion) + ")")
                  .c_str())) {
      return base::fail(std::move(error));
    }
  }
  if (!exec("COMMIT")) return base::fail(std::move(error));
  for (const auto& st : kStatements) {
    Result r(PQprepare(conn_, st.name, st.sql, 0, nullptr));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      error = where + "prepare " + st.name + ": " + message_of(conn_);
      return base::fail(std::move(error));
    }
  }
  if (!exec("LISTEN paddock_answered") || !exec("LISTEN paddock_queued") ||
      !exec("LISTEN paddock_cancel")) {
    return base::fail(std::move(error));
  }
  if (PQsetnonblocking(conn_, 0) != 0) {
    error = where + "cannot use the connection in blocking mode";
    return base::fail(std::move(error));
  }
  return {};
}

base::Status PgStore::register_broker() {
  std::string error;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  ++generation_;
  broker_id_ = (settings_.broker_name.empty() ? std::string(host) : settings_.broker_name) + "-" +
               std::to_string(::getpid()) + "-" + random_suffix() + "-" +
               std::to_string(generation_);
  Params p;
  p.text(broker_id_).num(settings_.lease_ms);
  Result r = exec(conn_,
                  "INSERT INTO paddock_brokers (broker_id, lease_until) "
                  "VALUES ($1, now() + $2 * interval '1 millisecond')",
                  p);
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    error = "postgresql " + server_of(conn_) + ": register broker: " + message_of(conn_);
    return base::fail(std::move(error));
  }
  healthy_ = true;
  return {};
}

void PgStore::fail(const std::string& what) {
  if (write_error_.empty()) write_error_ = what + ": " + message_of(conn_);
  healthy_ = false;
}

void PgStore::begin() {
  if (in_transaction_ || !healthy_) return;
  Result r(PQexec(conn_, "BEGIN"));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    fail("begin");
    return;
  }
  in_transaction_ = true;
}

namespace {
Result run(pg_conn* conn, const char* name, Params& p) {
  return Result(PQexecPrepared(conn, name, p.size(), p.values(), p.lengths(), p.formats(), 1));
}
bool ok(const Result& r) {
  const auto st = PQresultStatus(r.get());
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}
}  // namespace

bool PgStore::submit_all(const std::vector<Submission>& submissions, uint64_t unix_ms,
                         std::vector<Submitted>& outcome,
                         std::vector<std::optional<Answer>>& answers) {
  outcome.assign(submissions.size(), Submitted::kFailed);
  answers.assign(submissions.size(), std::nullopt);
  begin();
  if (!healthy_) return false;
  // Statements of at most this many rows (7 parameters each; PostgreSQL allows 65535).
  constexpr size_t kRows = 1000;
  std::unordered_map<std::string_view, std::vector<size_t>> index;
  for (size_t i = 0; i < submissions.size(); ++i) {
    index[submissions[i].request->job_id].push_back(i);
  }
  // Rows go in job_id order: brokers inserting overlapping jobs (a submitter that failed over)
  // wait on each other's rows in one order, never in a cycle.
  std::vector<size_t> order(submissions.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return submissions[a].request->job_id < submissions[b].request->job_id;
  });
  std::unordered_set<std::string> fresh;
  for (size_t start = 0; start < submissions.size(); start += kRows) {
    const size_t end = std::min(submissions.size(), start + kRows);
    std::string sql =
        "INSERT INTO paddock_jobs (job_id, image, priority, deadline_ms, request, accepted_ms, "
        "tenant) VALUES ";
    Params p;
    for (size_t o = start; o < end; ++o) {
      const size_t i = order[o];
      const auto& r = *submissions[i].request;
      const int k = static_cast<int>((o - start) * 7);
      if (o > start) sql += ',';
      sql += "($" + std::to_string(k + 1) + ",$" + std::to_string(k + 2) + ",$" +
             std::to_string(k + 3) + "::integer,$" + std::to_string(k + 4) + "::bigint,$" +
             std::to_string(k + 5) + "::bytea,$" + std::to_string(k + 6) + "::bigint,$" +
             std::to_string(k + 7) + ")";
      p.text(r.job_id)
          .text(r.image)
          .num(r.priority)
          .num(static_cast<int64_t>(r.deadline_ms))
          .bytes(submissions[i].body)
          .num(static_cast<int64_t>(unix_ms))
          .text(key_tenant(r.job_id));
    }
    sql += " ON CONFLICT (job_id) DO NOTHING RETURNING job_id";
    Result r = exec(conn_, sql, p);
    if (!ok(r)) {
      fail("store " + std::to_string(end - start) + " jobs");
      return false;
    }
    for (int row = 0; row < PQntuples(r.get()); ++row) fresh.insert(bytes_at(r.get(), row, 0));
  }
  std::vector<size_t> known;
  for (size_t i = 0; i < submissions.size(); ++i) {
    const std::string& id = submissions[i].request->job_id;
    // Stored now: the first of its id in this batch is new, any repeat of it is held (or a
    // conflict, if it is another request).
    if (fresh.count(id) != 0 && index[id].front() == i) {
      outcome[i] = Submitted::kNew;
    } else if (fresh.count(id) != 0) {
      const auto& first = submissions[index[id].front()];
      outcome[i] = same_request(submissions[i].body, *submissions[i].request, first.body)
                       ? Submitted::kHeld
                       : Submitted::kConflict;
    } else {
      known.push_back(i);
    }
  }
  for (size_t start = 0; start < known.size(); start += kRows) {
    const size_t end = std::min(known.size(), start + kRows);
    const std::string sql =
        "SELECT job_id, state, answer_cmd, answer, request FROM paddock_jobs WHERE job_id IN (" +
        placeholders(end - start) + ")";
    Params p;
    for (size_t k = start; k < end; ++k) p.text(submissions[known[k]].request->job_id);
    Result r = exec(conn_, sql, p);
    if (!ok(r)) {
      fail("look up " + std::to_string(end - start) + " jobs");
      return false;
    }
    for (int row = 0; row < PQntuples(r.get()); ++row) {
      const std::string id = bytes_at(r.get(), row, 0);
      const bool answered = int_at(r.get(), row, 1) == 2;
      const std::string stored_request = bytes_at(r.get(), row, 4);
      for (size_t i : index[id]) {
        if (!same_request(submissions[i].body, *submissions[i].request, stored_request)) {
          outcome[i] = Submitted::kConflict;  // the job_id names another request
        } else if (answered) {
          outcome[i] = Submitted::kAnswered;
          answers[i] =
              Answer{static_cast<uint8_t>(int_at(r.get(), row, 2)), bytes_at(r.get(), row, 3)};
        } else if (outcome[i] == Submitted::kFailed) {
          outcome[i] = Submitted::kHeld;
        }
      }
    }
  }
  // A job neither inserted nor found expired between the two statements: held as far as the
  // submitter can tell (it was there); its FETCH says UnknownJob.
  for (auto& o : outcome) {
    if (o == Submitted::kFailed) o = Submitted::kHeld;
  }
  return true;
}

namespace {
std::vector<PgStore::Claimed> claimed_rows(const PGresult* r) {
  struct Row {
    int32_t priority;
    int64_t seq;
    PgStore::Claimed c;
  };
  std::vector<Row> rows;
  for (int i = 0; i < PQntuples(r); ++i) {
    Row row;
    row.c.job_id = bytes_at(r, i, 0);
    row.c.request = bytes_at(r, i, 1);
    row.c.attempt = static_cast<uint32_t>(int_at(r, i, 2));
    row.c.cancelled = bool_at(r, i, 3);
    row.c.accepted_unix_ms = static_cast<uint64_t>(int_at(r, i, 4));
    row.priority = static_cast<int32_t>(int_at(r, i, 5));
    row.seq = int_at(r, i, 6);
    rows.push_back(std::move(row));
  }
  // UPDATE … RETURNING has no order: best first, as the queue would give them.
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.seq < b.seq;
  });
  std::vector<PgStore::Claimed> out;
  out.reserve(rows.size());
  for (auto& row : rows) out.push_back(std::move(row.c));
  return out;
}
}  // namespace

std::vector<PgStore::Claimed> PgStore::claim(std::string_view image, std::string_view tenant,
                                             size_t n) {
  begin();
  if (!healthy_ || n == 0) return {};
  Params p;
  p.text(broker_id_).text(image).text(tenant).num(static_cast<int64_t>(n));
  Result r = run(conn_, "claim", p);
  if (!ok(r)) {
    fail("claim jobs of tenant '" + std::string(tenant) + "' and image '" + std::string(image) +
         "'");
    return {};
  }
  return claimed_rows(r.get());
}

std::vector<std::string> PgStore::queued_tenants(std::string_view image, size_t limit) {
  begin();
  if (!healthy_) return {};
  Params p;
  p.text(image).num(static_cast<int64_t>(limit));
  Result r = run(conn_, "queued_tenants", p);
  if (!ok(r)) {
    fail("list the tenants with queued jobs of image '" + std::string(image) + "'");
    return {};
  }
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(PQntuples(r.get())));
  for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(bytes_at(r.get(), i, 0));
  return out;
}

void PgStore::lock_tenants(std::vector<std::string> tenants) {
  begin();
  if (!healthy_) return;
  // In one order on every broker: two brokers locking overlapping sets never wait in a cycle.
  std::sort(tenants.begin(), tenants.end());
  tenants.erase(std::unique(tenants.begin(), tenants.end()), tenants.end());
  for (const auto& t : tenants) {
    Params p;
    p.text(t);
    if (!ok(run(conn_, "lock_tenant", p))) {
      fail("lock tenant '" + t + "'");
      return;
    }
  }
}

std::optional<uint64_t> PgStore::count_of_tenant(std::string_view tenant, JobState state,
                                                 uint64_t cap) {
  begin();
  if (!healthy_) return std::nullopt;
  Params p;
  p.text(tenant)
      .num(static_cast<int64_t>(state))
      .num(static_cast<int64_t>(std::min<uint64_t>(cap, INT64_MAX)));
  Result r = run(conn_, "count_tenant", p);
  if (!ok(r) || PQntuples(r.get()) != 1) {
    fail("count the jobs of tenant '" + std::string(tenant) + "'");
    return std::nullopt;
  }
  return static_cast<uint64_t>(int_at(r.get(), 0, 0));
}

std::vector<PgStore::Claimed> PgStore::claim_expired(uint64_t now_unix_ms, size_t limit) {
  begin();
  if (!healthy_) return {};
  Params p;
  p.text(broker_id_).num(static_cast<int64_t>(now_unix_ms)).num(static_cast<int64_t>(limit));
  Result r = run(conn_, "claim_expired", p);
  if (!ok(r)) {
    fail("claim expired jobs");
    return {};
  }
  return claimed_rows(r.get());
}

std::vector<PgStore::Claimed> PgStore::claim_unknown_image(uint64_t accepted_before_unix_ms,
                                                           size_t limit) {
  begin();
  if (!healthy_) return {};
  Params p;
  p.text(broker_id_)
      .num(static_cast<int64_t>(accepted_before_unix_ms))
      .num(static_cast<int64_t>(limit));
  Result r = run(conn_, "claim_unknown_image", p);
  if (!ok(r)) {
    fail("claim jobs of images no broker's workers have");
    return {};
  }
  return claimed_rows(r.get());
}

void PgStore::dispatched(std::string_view job_id, uint32_t attempt, int64_t /*row*/) {
  // The claim marked the first dispatch; later ones (after a lost worker or a retry) count here.
  if (attempt <= 1) return;
  begin();
  if (!healthy_) return;
  Params p;
  p.text(job_id).num(attempt).text(broker_id_);
  if (!ok(run(conn_, "dispatched", p))) fail("store dispatch of '" + std::string(job_id) + "'");
}

void PgStore::cancel_requested(std::string_view job_id) {
  begin();
  if (!healthy_) return;
  Params p;
  p.text(job_id);
  if (!ok(run(conn_, "cancel_requested", p))) fail("store cancel of '" + std::string(job_id) + "'");
}

void PgStore::finished(std::string_view job_id, uint8_t command, std::string_view body,
                       uint64_t unix_ms, int64_t /*row*/) {
  (void)finish_first(job_id, command, body, unix_ms);
}

bool PgStore::finish_all(const std::vector<Finish>& answers, uint64_t unix_ms,
                         std::vector<bool>& won) {
  won.assign(answers.size(), false);
  begin();
  if (!healthy_) return false;
  constexpr size_t kRows = 1000;  // 3 parameters each
  std::vector<size_t> order(answers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return answers[a].job_id < answers[b].job_id; });
  std::unordered_map<std::string, std::vector<size_t>> index;
  for (size_t i = 0; i < answers.size(); ++i) index[std::string(answers[i].job_id)].push_back(i);
  for (size_t start = 0; start < order.size(); start += kRows) {
    const size_t end = std::min(order.size(), start + kRows);
    std::string values;
    Params p;
    for (size_t k = start; k < end; ++k) {
      const auto& a = answers[order[k]];
      const int n = static_cast<int>((k - start) * 3);
      if (k > start) values += ',';
      values += "($" + std::to_string(n + 1) + "::text,$" + std::to_string(n + 2) + "::smallint,$" +
                std::to_string(n + 3) + "::bytea)";
      p.text(a.job_id).num(a.command).bytes(a.body);
    }
    const int when = static_cast<int>((end - start) * 3 + 1);
    p.num(static_cast<int64_t>(unix_ms));
    // DISTINCT ON: a job answered twice in one turn keeps its first answer here.
    const std::string sql =
        "WITH v AS (SELECT DISTINCT ON (job_id) * FROM (VALUES " + values +
        ") AS x(job_id, cmd, body)), "
        "locked AS (SELECT j.job_id FROM paddock_jobs j JOIN v ON j.job_id = v.job_id "
        "  WHERE j.state <> 2 ORDER BY j.job_id FOR UPDATE OF j) "
        "UPDATE paddock_jobs j SET state = 2, owner = NULL, answer_cmd = v.cmd, answer = v.body, "
        "finished_ms = $" +
        std::to_string(when) +
        "::bigint FROM v, locked "
        "WHERE j.job_id = v.job_id AND j.job_id = locked.job_id AND j.state <> 2 "
        "RETURNING j.job_id";
    Result r = exec(conn_, sql, p);
    if (!ok(r)) {
      fail("store " + std::to_string(end - start) + " answers");
      return false;
    }
    for (int row = 0; row < PQntuples(r.get()); ++row) {
      auto it = index.find(bytes_at(r.get(), row, 0));
      if (it != index.end()) won[it->second.front()] = true;
    }
  }
  return true;
}

bool PgStore::finish_first(std::string_view job_id, uint8_t command, std::string_view body,
                           uint64_t unix_ms) {
  begin();
  if (!healthy_) return false;
  Params p;
  p.text(job_id).num(command).bytes(body).num(static_cast<int64_t>(unix_ms));
  Result r = run(conn_, "finish", p);
  if (!ok(r)) {
    fail("store answer of '" + std::string(job_id) + "'");
    return false;
  }
  return std::string_view(PQcmdTuples(r.get())) == "1";
}

PgStore::Cancel PgStore::cancel(std::string_view job_id, uint8_t command, std::string_view answer,
                                uint64_t unix_ms) {
  begin();
  if (!healthy_) return Cancel::kFailed;
  Params p;
  p.text(job_id).num(command).bytes(answer).num(static_cast<int64_t>(unix_ms));
  Result q = run(conn_, "cancel_queued", p);
  if (!ok(q)) {
    fail("cancel '" + std::string(job_id) + "'");
    return Cancel::kFailed;
  }
  if (std::string_view(PQcmdTuples(q.get())) == "1") return Cancel::kQueued;
  Params c;
  c.text(job_id);
  Result claimed = run(conn_, "cancel_claimed", c);
  if (!ok(claimed)) {
    fail("cancel '" + std::string(job_id) + "'");
    return Cancel::kFailed;
  }
  if (PQntuples(claimed.get()) == 1) return Cancel::kRunning;
  Result known = run(conn_, "known", c);
  if (!ok(known)) {
    fail("look up job '" + std::string(job_id) + "'");
    return Cancel::kFailed;
  }
  return PQntuples(known.get()) == 1 ? Cancel::kAnswered : Cancel::kUnknown;
}

base::Status PgStore::commit() {
  std::string error;
  if (!in_transaction_) {
    if (write_error_.empty()) return {};
    error = "postgresql " + server_of(conn_) + ": " + write_error_;
    write_error_.clear();
    return base::fail(std::move(error));
  }
  in_transaction_ = false;
  if (write_error_.empty()) {
    Result r(PQexec(conn_, "COMMIT"));
    if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) return {};
    fail("commit");
  }
  error = "postgresql " + server_of(conn_) + ": " + write_error_;
  write_error_.clear();
  if (PQstatus(conn_) == CONNECTION_OK) Result(PQexec(conn_, "ROLLBACK"));
  healthy_ = false;
  return base::fail(std::move(error));
}

std::optional<Store::Answer> PgStore::answer_of(std::string_view job_id) {
  if (!healthy_) return std::nullopt;
  Params p;
  p.text(job_id);
  Result r = run(conn_, "answer", p);
  if (!ok(r)) {
    fail("read answer of '" + std::string(job_id) + "'");
    return std::nullopt;
  }
  if (PQntuples(r.get()) != 1) return std::nullopt;
  return Answer{static_cast<uint8_t>(int_at(r.get(), 0, 0)), bytes_at(r.get(), 0, 1)};
}

std::vector<std::pair<std::string, Store::Answer>> PgStore::answers_of(
    const std::vector<std::string>& job_ids, std::vector<std::string>* missing) {
  std::vector<std::pair<std::string, Answer>> out;
  if (!healthy_) return out;
  std::unordered_set<std::string> found;
  constexpr size_t kIds = 1000;
  for (size_t start = 0; start < job_ids.size(); start += kIds) {
    const size_t end = std::min(job_ids.size(), start + kIds);
    // Unanswered rows too, when the caller asks what is missing (they have answer_cmd NULL).
    const std::string sql =
        std::string("SELECT job_id, answer_cmd, answer, state FROM paddock_jobs WHERE ") +
        (missing != nullptr ? "" : "state = 2 AND ") + "job_id IN (" + placeholders(end - start) +
        ")";
    Params p;
    for (size_t i = start; i < end; ++i) p.text(job_ids[i]);
    Result r = exec(conn_, sql, p);
    if (!ok(r)) {
      fail("read " + std::to_string(end - start) + " answers");
      return out;
    }
    for (int row = 0; row < PQntuples(r.get()); ++row) {
      if (missing != nullptr) found.insert(bytes_at(r.get(), row, 0));
      if (int_at(r.get(), row, 3) != 2) continue;
      out.emplace_back(
          bytes_at(r.get(), row, 0),
          Answer{static_cast<uint8_t>(int_at(r.get(), row, 1)), bytes_at(r.get(), row, 2)});
    }
  }
  if (missing != nullptr) {
    for (const auto& id : job_ids) {
      if (found.count(id) == 0) missing->push_back(id);
    }
  }
  return out;
}

uint64_t PgStore::expire(uint64_t cutoff_unix_ms) {
  begin();
  if (!healthy_) return 0;
  Params p;
  p.num(static_cast<int64_t>(cutoff_unix_ms));
  Result r = run(conn_, "expire", p);
  if (!ok(r)) {
    fail("expire answers");
    return 0;
  }
  return std::strtoull(PQcmdTuples(r.get()), nullptr, 10);
}

uint64_t PgStore::size() {
  if (!healthy_) return 0;
  Result r(PQexecParams(conn_, "SELECT count(*) FROM paddock_jobs", 0, nullptr, nullptr, nullptr,
                        nullptr, 1));
  return ok(r) && PQntuples(r.get()) == 1 ? static_cast<uint64_t>(int_at(r.get(), 0, 0)) : 0;
}

uint64_t PgStore::unanswered() {
  if (!healthy_) return 0;
  Params p;
  Result r = run(conn_, "unanswered", p);
  return ok(r) && PQntuples(r.get()) == 1 ? static_cast<uint64_t>(int_at(r.get(), 0, 0)) : 0;
}

std::vector<Store::Failed> PgStore::failed(size_t limit) {
  std::vector<Failed> out;
  if (!healthy_) return out;
  Params p;
  p.num(static_cast<int64_t>(limit));
  Result r = exec(conn_,
                  "SELECT job_id, answer, finished_ms FROM paddock_jobs WHERE state = 2 AND "
                  "answer_cmd = 8 ORDER BY finished_ms DESC, seq DESC LIMIT $1",
                  p);
  if (!ok(r)) return out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    out.push_back(Failed{bytes_at(r.get(), i, 0), bytes_at(r.get(), i, 1),
                         static_cast<uint64_t>(int_at(r.get(), i, 2))});
  }
  return out;
}

std::optional<Store::Stored> PgStore::stored(std::string_view job_id) {
  if (!healthy_) return std::nullopt;
  Params p;
  p.text(job_id);
  Result r = exec(conn_,
                  "SELECT request, accepted_ms, attempt, dispatched, state, answer_cmd, "
                  "answer, finished_ms FROM paddock_jobs WHERE job_id = $1",
                  p);
  if (!ok(r)) {
    fail("look up job '" + std::string(job_id) + "'");
    return std::nullopt;
  }
  if (PQntuples(r.get()) != 1) return std::nullopt;
  const PGresult* x = r.get();
  Stored s;
  s.request = bytes_at(x, 0, 0);
  s.accepted_unix_ms = static_cast<uint64_t>(int_at(x, 0, 1));
  s.attempt = static_cast<uint32_t>(int_at(x, 0, 2));
  s.dispatched = bool_at(x, 0, 3);
  if (int_at(x, 0, 4) == 2) {
    s.answer = Answer{static_cast<uint8_t>(int_at(x, 0, 5)), bytes_at(x, 0, 6)};
    s.finished_unix_ms = static_cast<uint64_t>(int_at(x, 0, 7));
  }
  return s;
}

bool PgStore::renew(const std::vector<std::string>& images) {
  begin();
  if (!healthy_) return true;  // the turn fails at commit; rejoin follows
  Params p;
  p.text(broker_id_).num(settings_.lease_ms).text_array(images);
  Result r = run(conn_, "renew", p);
  if (!ok(r)) {
    fail("renew lease");
    return true;
  }
  return std::string_view(PQcmdTuples(r.get())) == "1";
}

uint64_t PgStore::reap() {
  begin();
  if (!healthy_) return 0;
  Params p;
  Result r = run(conn_, "reap", p);
  if (!ok(r)) {
    fail("return dead brokers' jobs to the queue");
    return 0;
  }
  Result f = run(conn_, "forget_dead", p);
  if (!ok(f)) fail("forget dead brokers");
  return std::strtoull(PQcmdTuples(r.get()), nullptr, 10);
}

PgStore::Events PgStore::take_events() {
  Events ev;
  if (conn_ == nullptr || in_transaction_) return ev;
  if (PQconsumeInput(conn_) == 0) {
    healthy_ = false;
    if (write_error_.empty()) write_error_ = "connection: " + message_of(conn_);
    return ev;
  }
  while (PGnotify* n = PQnotifies(conn_)) {
    const std::string_view channel = n->relname;
    if (channel == "paddock_answered") {
      ev.answered.emplace_back(n->extra);
    } else if (channel == "paddock_cancel") {
      ev.cancelled.emplace_back(n->extra);
    } else if (channel == "paddock_queued") {
      ev.queued = true;
    }
    PQfreemem(n);
  }
  return ev;
}

int PgStore::socket() const { return conn_ != nullptr ? PQsocket(conn_) : -1; }

base::Status PgStore::rejoin() {
  std::string error;
  const std::string old_id = broker_id_;
  healthy_ = false;  // until registered again
  in_transaction_ = false;
  write_error_.clear();
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    if (auto st = connect(); !st) return st;
  } else {
    Result(PQexec(conn_, "ROLLBACK"));
  }
  if (auto st = register_broker(); !st) return st;
  // What the old id held goes back to the queue now rather than when its lease lapses.
  const auto released = release(old_id);
  if (!released) {
    error = "postgresql " + server_of(conn_) + ": release the claims of " + old_id + ": " +
            message_of(conn_);
    healthy_ = false;
    return base::fail(std::move(error));
  }
  spdlog::warn("postgresql: re-joined as {}; {} job(s) claimed as {} went back to the queue",
               broker_id_, *released, old_id);
  return {};
}

std::optional<uint64_t> PgStore::release(const std::string& id) {
  Params p;
  p.text(id);
  Result r = run(conn_, "release", p);
  Result d = exec(conn_, "DELETE FROM paddock_brokers WHERE broker_id = $1", p);
  if (!ok(r) || !ok(d)) return std::nullopt;
  return std::strtoull(PQcmdTuples(r.get()), nullptr, 10);
}

void PgStore::leave() {
  if (!healthy_ || conn_ == nullptr) return;
  if (in_transaction_) (void)commit();
  if (const auto released = release(broker_id_)) {
    spdlog::info("postgresql: {} left; {} claimed job(s) went back to the queue", broker_id_,
                 *released);
  }
}

}  // namespace paddock::broker
