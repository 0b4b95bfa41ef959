// Runs the FAKE Firecracker (tests/firecracker/fake_firecracker.py, a test double of Firecracker's
// API server that checks every request against tests/firecracker/reference/firecracker-api.yaml) in
// a temporary directory, and reads back the requests it logged. The process is killed and reaped,
// and the directory removed, when the FakeFirecracker goes.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace paddock::test {

// What the fake is started with: its knobs (FAKE_FIRECRACKER_* environment variables).
using FakeKnobs = std::map<std::string, std::string>;

inline std::filesystem::path fresh_temp_dir(const std::string& prefix) {
  std::random_device rd;
  // Short: unix socket paths are limited to 108 bytes.
  auto dir = std::filesystem::temp_directory_path() / (prefix + std::to_string(rd() % 1000000));
  std::filesystem::create_directories(dir);
  return dir;
}

inline bool spec_available() { return std::filesystem::exists(PADDOCK_FIRECRACKER_SPEC); }

// The environment a fake is started with: this process's, plus its knobs and the spec.
inline std::vector<std::string> fake_environment(const std::filesystem::path& dir,
                                                 const FakeKnobs& knobs) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (std::string(*e).rfind("FAKE_FIRECRACKER_", 0) != 0) env.emplace_back(*e);
  }
  env.push_back("FAKE_FIRECRACKER_SPEC=" PADDOCK_FIRECRACKER_SPEC);
  env.push_back("FAKE_FIRECRACKER_LOG=" + (dir / "requests.jsonl").string());
  for (const auto& [k, v] : knobs) env.push_back(k + "=" + v);
  return env;
}

class FakeFirecracker {
 public:
  explicit FakeFirecracker(FakeKnobs knobs = {}) : dir_(fresh_temp_dir("fakefc-")) {
    const auto env = fake_environment(dir_, knobs);
    const std::string sock = socket_path();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> envp;
      for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
      envp.push_back(nullptr);
      const char* argv[] = {PADDOCK_PYTHON3, PADDOCK_FAKE_FIRECRACKER, "--api-sock", sock.c_str(),
                            nullptr};
      ::execve(argv[0], const_cast<char**>(argv), envp.data());
      ::_exit(127);
    }
  }
  ~FakeFirecracker() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  FakeFirecracker(const FakeFirecracker&) = delete;
  FakeFirecracker& operator=(const FakeFirecracker&) = delete;

  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  std::string socket_path() const { return (dir_ / "api.sock").string(); }
  const std::filesystem::path& dir() const { return dir_; }

  // Every request the fake received, in order.
  std::vector<nlohmann::json> requests() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_ / "requests.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  // "PUT /machine-config", ... in order.
  std::vector<std::string> sequence() const {
    std::vector<std::string> out;
    for (const auto& r : requests()) {
      out.push_back(r["method"].get<std::string>() + " " + r["path"].get<std::string>());
    }
    return out;
  }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

}  // namespace paddock::test
