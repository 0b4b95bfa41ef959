// A PostgreSQL server of a test's own (issue 11): Debian's `postgresql` package, `initdb` in a
// temporary directory, listening on 127.0.0.1 on a free port and on a Unix socket in that
// directory; stopped and removed with the object. As root (CI) the server runs as the `postgres`
// user, since PostgreSQL refuses to run as root.
#pragma once

#include <memory>
#include <string>

#include "harness.h"

namespace paddock::testing {

class PostgresServer {
 public:
  // Empty when the server binaries are missing: `why` says what to install.
  static std::unique_ptr<PostgresServer> start(std::string& why);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // postgresql://paddock@127.0.0.1:PORT/postgres
  std::string url() const;
  // The same server through its Unix socket (reachable from any network namespace).
  std::string socket_url() const;
  int port() const { return port_; }
  // pg_ctl stop -m fast, then start again on the same port and data (the queue survives).
  void restart();
  void stop();
  void start_again();
  // Runs SQL through psql; returns its output (unaligned, tuples only). Throws on failure.
  std::string sql(const std::string& statement) const;
  std::string log() const;

 private:
  PostgresServer() = default;
  std::string as_owner(const std::string& command) const;
  void run(const std::string& command) const;
  void run_quietly(const std::string& command) const;  // its status ignored
  TempDir dir_;
  std::string bindir_;
  int port_ = 0;
  bool running_ = false;
  bool as_postgres_ = false;
};

}  // namespace paddock::testing
