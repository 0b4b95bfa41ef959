// paddock-worker: the worker daemon. A thin shell over paddock::worker::Worker.
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "paddock/runtime/backends.h"
#include "paddock/runtime/qemu_provider.h"
#include "paddock/worker/worker.h"

namespace {

// Set by SIGTERM/SIGINT. Handlers are installed first thing, so a signal that arrives while the
// worker is still starting is not lost (nor fatal): the worker drains as soon as it runs.
std::atomic<bool> g_drain_requested{false};
std::atomic<paddock::worker::Worker*> g_worker{nullptr};

extern "C" void on_signal(int) {
  g_drain_requested.store(true);
  if (auto* w = g_worker.load()) w->request_drain();
}

std::string default_worker_id() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  paddock::worker::Options opt;
  std::string backend = "memory";
  paddock::runtime::BackendConfig backend_config;
  auto& qemu = backend_config.qemu;
  uint32_t boot_timeout_ms = 60'000;
  std::string log_level = "info";
  std::string warm = "on";
  uint32_t warm_max_age_s = 300;
  CLI::App app{"paddock-worker: runs Paddock jobs from one or more brokers"};
  app.add_option("--broker", opt.brokers, "broker worker endpoint (repeat for several brokers)")
      ->required();
  app.add_option("--worker-id", opt.worker_id, "this worker's name (default: host-pid)");
  app.add_option("--slots", opt.slots, "jobs run at once")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--backend", backend,
                 "VM backend: memory (in-memory TEST DOUBLE: executes nothing), qemu, firecracker")
      ->capture_default_str();
  app.add_option(
      "--image-dir", qemu.image_dir,
      "qemu: guest image directory (vmlinuz, initramfs), from tools/build-guest-image.sh");
  app.add_option("--qemu-binary", qemu.qemu_binary, "qemu: the QEMU binary")->capture_default_str();
  app.add_option("--accel", qemu.accel, "qemu: auto, kvm or tcg")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}))
      ->capture_default_str();
  app.add_option(
      "--run-dir", qemu.run_dir,
      "qemu: per-VM sockets, pidfiles and RAM files; swept at start (default "
      "<tmpfs>/paddock/<worker-id>, <tmpfs> being /run or /dev/shm, whichever is a tmpfs)");
  app.add_option("--snapshot-dir", qemu.snapshot_dir,
                 "qemu: template snapshots, kept across restarts as a cache; one worker per "
                 "directory (default <tmpfs>/paddock-snapshots/<worker-id>)");
  app.add_option("--boot-timeout-ms", boot_timeout_ms, "qemu: agent must answer within this")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", opt.heartbeat_ms, "heartbeat period")
      ->check(CLI::Range(10u, 600'000u))
      ->capture_default_str();
  app.add_option("--liveness", opt.liveness, "broker heartbeats missed before reconnecting")
      ->check(CLI::Range(1u, 100u))
      ->capture_default_str();
  app.add_option("--drain-timeout-ms", opt.drain_timeout_ms,
                 "on SIGTERM, how long jobs in flight may take to finish")
      ->capture_default_str();
  app.add_option("--warm", warm,
                 "warm starts: jobs run in clones restored from a template snapshot (on), or every "
                 "job cold-boots its VM (off)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--warm-min", opt.warm_pool.min_ready,
                 "warm: ready clones kept per VM spec at all times")
      ->check(CLI::Range(size_t{0}, size_t{64}))
      ->capture_default_str();
  app.add_option("--warm-max", opt.warm_pool.max_ready,
                 "warm: most ready clones per VM spec (demand grows the pool from min up to this)")
      ->check(CLI::Range(size_t{0}, size_t{64}))
      ->capture_default_str();
  app.add_option("--warm-max-age-s", warm_max_age_s,
                 "warm: a ready clone older than this is destroyed and replaced")
      ->check(CLI::Range(1u, 86'400u))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (opt.warm_pool.max_ready < opt.warm_pool.min_ready) {
    std::fprintf(stderr, "--warm-max (%zu) must be at least --warm-min (%zu)\n",
                 opt.warm_pool.max_ready, opt.warm_pool.min_ready);
    return 2;
  }
  opt.warm = warm == "on";
  opt.warm_pool.max_age = std::chrono::seconds(warm_max_age_s);
  if (opt.worker_id.empty()) opt.worker_id = default_worker_id();
  qemu.boot_timeout = std::chrono::milliseconds(boot_timeout_ms);
  {
    std::string safe;
    for (char c : opt.worker_id) safe += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    safe = safe.substr(0, 40);
    // Guest RAM files live in these directories: on a tmpfs they never touch a disk.
    std::string tmpfs = paddock::runtime::QemuProvider::tmpfs_dir();
    if (tmpfs.empty()) tmpfs = "/run";
    if (qemu.run_dir == paddock::runtime::QemuConfig{}.run_dir) {
      qemu.run_dir = tmpfs + "/paddock/" + safe;
    }
    if (qemu.snapshot_dir.empty()) qemu.snapshot_dir = tmpfs + "/paddock-snapshots/" + safe;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("paddock"));  // logs go to stderr
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ worker " + opt.worker_id + ": %v");
  auto provider = paddock::runtime::make_provider(backend, backend_config);
  if (!provider) {
    spdlog::error("{} (code {}: {})", provider.error().message(), provider.error().code(),
                  provider.error().name());
    return 2;
  }
  if (backend == "memory") {
    spdlog::warn(
        "backend 'memory' is the in-memory test double: jobs are interpreted as scripts "
        "and nothing is executed in a VM");
  }
  try {
    paddock::worker::Worker worker(opt, std::move(provider.value()));
    g_worker.store(&worker);
    if (g_drain_requested.load()) worker.request_drain();
    const int code = worker.run();
    g_worker.store(nullptr);
    return code;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
