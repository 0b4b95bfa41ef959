#include "postgres_server.h"

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace fs = std::filesystem;

namespace paddock::testing {

namespace {

// PADDOCK_PG_BINDIR, else the newest /usr/lib/postgresql/<version>/bin with initdb in it.
std::string find_bindir() {
  if (const char* env = std::getenv("PADDOCK_PG_BINDIR")) return env;
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const auto bin = e.path() / "bin";
    if (fs::exists(bin / "initdb") && fs::exists(bin / "pg_ctl")) {
      found.emplace_back(std::atoi(e.path().filename().c_str()), bin.string());
    }
  }
  if (found.empty()) return "";
  std::sort(found.begin(), found.end());
  return found.back().second;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port");
  }
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

std::string capture(const std::string& command, int& status) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("popen failed: " + command);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  status = ::pclose(p);
  return out;
}

}  // namespace

std::unique_ptr<PostgresServer> PostgresServer::start(std::string& why) {
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  s->bindir_ = find_bindir();
  if (s->bindir_.empty()) {
    why =
        "PostgreSQL's server is not installed (/usr/lib/postgresql/*/bin/initdb): apt install "
        "postgresql (tools/install-deps.sh does)";
    return nullptr;
  }
  s->as_postgres_ = ::geteuid() == 0;
  if (s->as_postgres_) {
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
      why =
          "running as root, and there is no 'postgres' user to run the server as (Debian's "
          "postgresql package makes it)";
      return nullptr;
    }
    if (::chown(s->dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      throw std::runtime_error("chown " + s->dir_.path() + " to postgres failed");
    }
  }
  s->run(s->bindir_ + "/initdb -D " + s->dir_.path() +
         "/data -U paddock -A trust -E UTF8 --no-sync --no-instructions > " + s->dir_.path() +
         "/initdb.log 2>&1");
  // free_port() closes the port it found before the server binds it: another test's process may
  // take it meanwhile (ctest runs two at once). A start that fails is tried on a new port.
  for (int attempt = 1;; ++attempt) {
    s->port_ = free_port();
    try {
      s->start_again();
      return s;
    } catch (const std::exception&) {
      s->run_quietly(s->bindir_ + "/pg_ctl -D " + s->dir_.path() +
                     "/data -m immediate -w stop >/dev/null 2>&1");
      s->running_ = false;
      if (attempt == 3) throw;
    }
  }
}

PostgresServer::~PostgresServer() {
  try {
    if (running_) {
      run(bindir_ + "/pg_ctl -D " + dir_.path() + "/data -m immediate -w stop >/dev/null 2>&1");
    }
  } catch (...) {
    // The TempDir goes anyway; a server left running is the leak check's to report.
  }
}

std::string PostgresServer::as_owner(const std::string& command) const {
  if (!as_postgres_) return command;
  std::string quoted;
  for (char c : command) {
    if (c == '\'')
      quoted += "'\\''";
    else
      quoted += c;
  }
  return "runuser -u postgres -- sh -c '" + quoted + "'";
}

void PostgresServer::run_quietly(const std::string& command) const {
  (void)std::system(as_owner(command).c_str());
}

void PostgresServer::run(const std::string& command) const {
  const int rc = std::system(as_owner(command).c_str());
  if (rc != 0) {
    throw std::runtime_error("failed (" + std::to_string(rc) + "): " + command + "\n" + log());
  }
}

void PostgresServer::start_again() {
  // Marked running before pg_ctl returns: a start that timed out may still leave a server up,
  // and the destructor's stop (which ignores "not running") must then take it down.
  running_ = true;
  // Small settings: tests start several servers over a run.
  run(bindir_ + "/pg_ctl -D " + dir_.path() + "/data -l " + dir_.path() +
      "/server.log -w -t 60 -o \"-c listen_addresses=127.0.0.1 -p " + std::to_string(port_) +
      " -k " + dir_.path() + " -c shared_buffers=32MB -c max_connections=50\" start >/dev/null");
}

void PostgresServer::stop() {
  run(bindir_ + "/pg_ctl -D " + dir_.path() + "/data -m fast -w stop >/dev/null");
  running_ = false;
}

void PostgresServer::restart() {
  stop();
  start_again();
}

std::string PostgresServer::url() const {
  return "postgresql://paddock@127.0.0.1:" + std::to_string(port_) + "/postgres";
}

std::string PostgresServer::socket_url() const {
  return "postgresql://paddock@/postgres?host=" + dir_.path() + "&port=" + std::to_string(port_);
}

std::string PostgresServer::sql(const std::string& statement) const {
  std::string quoted;
  for (char c : statement) {
    if (c == '\'')
      quoted += "'\\''";
    else
      quoted += c;
  }
  int status = 0;
  const std::string out = capture(
      "psql -X -q -A -t -v ON_ERROR_STOP=1 '" + url() + "' -c '" + quoted + "' 2>&1", status);
  if (status != 0) throw std::runtime_error("psql failed: " + statement + ": " + out);
  return out;
}

std::string PostgresServer::log() const { return slurp(dir_.path() + "/server.log"); }

}  // namespace paddock::testing
