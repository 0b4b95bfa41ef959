// paddock-bench-vm: cold-boot time of a QEMU microVM (spawn to agent ready) and end-to-end latency
// of a `true` job through a real broker and worker on the qemu backend. Prints text and, with
// --json FILE, writes the figures as JSON. A benchmark, not a test: it asserts nothing.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "paddock/client/client.h"
#include "paddock/runtime/qemu_provider.h"

namespace bp = boost::process;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct Summary {
  std::vector<double> ms;
  nlohmann::json json() const {
    auto s = ms;
    std::sort(s.begin(), s.end());
    const double median = s.empty() ? 0 : (s.size() % 2 ? s[s.size() / 2]
                                                       : (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2);
    return {{"runs", s.size()}, {"median_ms", median}, {"min_ms", s.empty() ? 0 : s.front()},
            {"max_ms", s.empty() ? 0 : s.back()}, {"samples_ms", ms}};
  }
};

std::string describe(const char* what, const nlohmann::json& j) {
  char line[256];
  std::snprintf(line, sizeof line, "%-28s median %8.1f ms   min %8.1f   max %8.1f   (n=%d)", what,
                j["median_ms"].get<double>(), j["min_ms"].get<double>(), j["max_ms"].get<double>(),
                j["runs"].get<int>());
  return line;
}

Summary bench_cold_boot(const paddock::runtime::QemuConfig& config, int runs, std::string& accel) {
  Summary s;
  auto opened = paddock::runtime::QemuProvider::open(config);
  if (!opened) throw std::runtime_error(opened.error().message());
  auto& p = *opened.value();
  accel = p.accel();
  for (int i = 0; i < runs; ++i) {
    const std::string id = "bench-" + std::to_string(i);
    if (!p.create(id, {}).ok()) throw std::runtime_error("create failed");
    auto st = p.start(id);
    if (!st.ok()) throw std::runtime_error(st.error().message());
    s.ms.push_back(static_cast<double>(p.boot_us(id)) / 1000.0);
    std::fprintf(stderr, "  boot %d: %.1f ms\n", i + 1, s.ms.back());
    (void)p.destroy(id);
  }
  return s;
}

Summary bench_end_to_end(const std::string& image_dir, const std::string& run_dir, int runs) {
  const std::string ready = run_dir + "/broker.ready";
  bp::child broker(PADDOCK_BROKER_BIN, "--client-endpoint", "tcp://127.0.0.1:*",
                   "--worker-endpoint", "tcp://127.0.0.1:*", "--ready-file", ready,
                   "--log-level", "warn");
  const auto deadline = Clock::now() + 10s;
  while (!fs::exists(ready) && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  auto eps = nlohmann::json::parse(std::ifstream(ready));
  bp::child worker(PADDOCK_WORKER_BIN, "--broker", eps["worker"].get<std::string>(),
                   "--backend", "qemu", "--image-dir", image_dir, "--run-dir",
                   run_dir + "/worker", "--slots", "1", "--worker-id", "bench",
                   "--log-level", "warn");
  paddock::client::Client c(eps["client"].get<std::string>());
  Summary s;
  for (int i = 0; i < runs; ++i) {
    paddock::schemas::JobRequest job;
    job.job_id = "bench-true-" + std::to_string(i);
    job.argv = {"true"};
    const auto t0 = Clock::now();
    c.submit(job);
    bool done = false;
    while (!done) {
      auto ev = c.next(120s);
      if (!ev) throw std::runtime_error("no answer within 120 s");
      if (ev->kind == paddock::client::Event::Kind::kResult) done = true;
      if (ev->kind == paddock::client::Event::Kind::kError) {
        throw std::runtime_error("job failed: " + ev->error.message);
      }
    }
    s.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    std::fprintf(stderr, "  true job %d: %.1f ms\n", i + 1, s.ms.back());
  }
  ::kill(worker.id(), SIGTERM);
  worker.wait();
  ::kill(broker.id(), SIGTERM);
  broker.wait();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  paddock::runtime::QemuConfig config;
  int runs = 5;
  std::string json_path;
  CLI::App app{"paddock-bench-vm: cold boot and end-to-end latency of QEMU microVM jobs"};
  app.add_option("--image-dir", config.image_dir, "guest image (tools/build-guest-image.sh)")
      ->required();
  app.add_option("--accel", config.accel, "auto, kvm or tcg")->capture_default_str();
  app.add_option("--runs", runs, "runs of each measurement")->capture_default_str();
  app.add_option("--json", json_path, "also write the figures to this file");
  CLI11_PARSE(app, argc, argv);

  const std::string run_dir = "/run/paddock-bench-" + std::to_string(::getpid());
  config.run_dir = run_dir + "/vms";
  std::string accel;
  nlohmann::json out;
  try {
    std::fprintf(stderr, "cold boot, spawn to agent ready:\n");
    out["cold_boot"] = bench_cold_boot(config, runs, accel).json();
    std::fprintf(stderr, "`true` job through broker and worker (cold VM per job):\n");
    out["end_to_end_true_job"] = bench_end_to_end(config.image_dir, run_dir, runs).json();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paddock-bench-vm: %s\n", e.what());
    fs::remove_all(run_dir);
    return 1;
  }
  fs::remove_all(run_dir);
  out["accel"] = accel;
  out["host_cores"] = std::thread::hardware_concurrency();
  std::printf("%s\n%s\naccel: %s\n", describe("cold boot (spawn→agent)", out["cold_boot"]).c_str(),
              describe("true job end to end", out["end_to_end_true_job"]).c_str(), accel.c_str());
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
