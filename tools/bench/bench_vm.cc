// paddock-bench-vm: in one run, the cold-boot time of a QEMU microVM (spawn to agent ready), the
// restore time of a clone from a template snapshot (spawn to agent ready, i.e. restored, resumed
// and refreshed), their ratio, and the end-to-end latency of a `true` job through a real broker and
// worker on the qemu backend with and without warm pools. Prints text and, with --json FILE,
// writes the figures as JSON. A benchmark, not a test: it asserts nothing.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "net/vm_network.h"
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
    const double median =
        s.empty() ? 0
                  : (s.size() % 2 ? s[s.size() / 2] : (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2);
    // Nearest-rank p99: with fewer than 100 samples it is the maximum.
    const double p99 =
        s.empty() ? 0
                  : s[std::min(s.size() - 1, static_cast<size_t>(std::ceil(0.99 * s.size())) - 1)];
    return {{"runs", s.size()},
            {"median_ms", median},
            {"p99_ms", p99},
            {"min_ms", s.empty() ? 0 : s.front()},
            {"max_ms", s.empty() ? 0 : s.back()},
            {"samples_ms", ms}};
  }
};

std::string describe(const char* what, const nlohmann::json& j) {
  char line[256];
  std::snprintf(line, sizeof line,
                "%-34s median %8.1f ms   p99 %8.1f   min %8.1f   max %8.1f   (n=%d)", what,
                j["median_ms"].get<double>(), j["p99_ms"].get<double>(), j["min_ms"].get<double>(),
                j["max_ms"].get<double>(), j["runs"].get<int>());
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

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct NetworkFigures {
  Summary create;    // namespace, TAP, addresses, default-deny firewall
  Summary egress;    // veth pair, routes, host NAT and forward rules, the VM's firewall
  Summary usage;     // counters
  Summary teardown;  // host rules, namespace (veth and TAP with it), lease
  uint64_t commands_per_vm = 0;
};

// Network setup and teardown of a VM with egress, without the VM: the kernel work per job. The
// host side is a namespace made here, so the machine's own firewall is never touched.
NetworkFigures bench_network(int runs) {
  const std::string host = "pbench" + std::to_string(::getpid() % 100000);
  if (std::system(("ip netns add " + host).c_str()) != 0) {
    throw std::runtime_error("ip netns add " + host + " failed");
  }
  NetworkFigures f;
  try {
    paddock::runtime::net::NetworkSettings s;
    s.host_netns = host;
    s.prefix = "b" + std::to_string(::getpid() % 10000);
    s.pool = "10.214.0.0/24";
    auto m = paddock::runtime::net::NetworkManager::open(s);
    if (!m) throw std::runtime_error(m.error().message());
    auto& manager = *m.value();
    const uint64_t before = manager.commands_run();
    for (int i = 0; i < runs; ++i) {
      auto t0 = Clock::now();
      auto net = manager.create("bench-" + std::to_string(i));
      if (!net) throw std::runtime_error(net.error().message());
      f.create.ms.push_back(ms_since(t0));
      t0 = Clock::now();
      auto st = net.value()->allow_egress({{"198.18.0.0/15", "tcp", {{443, 443}}}});
      if (!st.ok()) throw std::runtime_error(st.error().message());
      f.egress.ms.push_back(ms_since(t0));
      t0 = Clock::now();
      if (!net.value()->usage()) throw std::runtime_error("usage failed");
      f.usage.ms.push_back(ms_since(t0));
      t0 = Clock::now();
      st = net.value()->teardown();
      if (!st.ok()) throw std::runtime_error(st.error().message());
      f.teardown.ms.push_back(ms_since(t0));
    }
    f.commands_per_vm =
        (manager.commands_run() - before) / static_cast<uint64_t>(std::max(runs, 1));
  } catch (...) {
    (void)std::system(("ip netns delete " + host).c_str());
    throw;
  }
  (void)std::system(("ip netns delete " + host).c_str());
  return f;
}

struct RestoreFigures {
  Summary restore;      // spawn -> agent ready (restore + resume with its refresh)
  Summary to_paused;    // spawn -> state loaded, paused
  Summary to_agent;     // cont -> the agent's refresh answered
  Summary first_exec;   // the first `true` in a fresh clone
  Summary second_exec;  // the second one
  Summary destroy;
  double snapshot_ms = 0;
};

RestoreFigures bench_restore(const paddock::runtime::QemuConfig& config, int runs) {
  auto opened = paddock::runtime::QemuProvider::open(config);
  if (!opened) throw std::runtime_error(opened.error().message());
  auto& p = *opened.value();
  auto check = [](const paddock::runtime::Status& st, const char* what) {
    if (!st.ok()) throw std::runtime_error(std::string(what) + ": " + st.error().message());
  };
  RestoreFigures f;
  check(p.create("tpl", {}), "create template");
  check(p.start("tpl"), "boot template");
  check(p.stop("tpl"), "pause template");
  const auto ts = Clock::now();
  auto snap = p.snapshot("tpl", "template");
  if (!snap) throw std::runtime_error("snapshot: " + snap.error().message());
  f.snapshot_ms = ms_since(ts);
  check(p.destroy("tpl"), "destroy template");
  paddock::runtime::ExecRequest t;
  t.argv = {"true"};
  for (int i = 0; i < runs; ++i) {
    const std::string id = "clone-" + std::to_string(i);
    const auto t0 = Clock::now();
    check(p.restore("tpl", "template", id), "restore");
    f.to_paused.ms.push_back(ms_since(t0));
    const auto t1 = Clock::now();
    check(p.resume(id), "resume");
    f.to_agent.ms.push_back(ms_since(t1));
    f.restore.ms.push_back(ms_since(t0));
    for (Summary* s : {&f.first_exec, &f.second_exec}) {
      const auto te = Clock::now();
      auto x = p.exec(id, t, {});
      if (!x) throw std::runtime_error("exec: " + x.error().message());
      s->ms.push_back(ms_since(te));
    }
    const auto td = Clock::now();
    check(p.destroy(id), "destroy");
    f.destroy.ms.push_back(ms_since(td));
    std::fprintf(stderr, "  restore %d: %.1f ms (paused %.1f, agent %.1f), first true %.1f ms\n",
                 i + 1, f.restore.ms.back(), f.to_paused.ms.back(), f.to_agent.ms.back(),
                 f.first_exec.ms.back());
  }
  check(p.delete_snapshot("tpl", "template"), "delete snapshot");
  return f;
}

Summary bench_end_to_end(const std::string& image_dir, const std::string& run_dir, int runs,
                         bool warm) {
  const std::string ready = run_dir + (warm ? "/broker-warm.ready" : "/broker-cold.ready");
  fs::remove(ready);
  bp::child broker(PADDOCK_BROKER_BIN, "--client-endpoint", "tcp://127.0.0.1:*",
                   "--worker-endpoint", "tcp://127.0.0.1:*", "--ready-file", ready, "--log-level",
                   "warn");
  const auto deadline = Clock::now() + 10s;
  while (!fs::exists(ready) && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  auto eps = nlohmann::json::parse(std::ifstream(ready));
  // The VMs' host side lives in a namespace made here: the machine's firewall is never touched.
  const std::string host_ns = "pbenchw" + std::to_string(::getpid() % 100000);
  (void)std::system(("ip netns add " + host_ns).c_str());
  struct DropNetns {
    std::string name;
    ~DropNetns() { (void)std::system(("ip netns delete " + name + " 2>/dev/null").c_str()); }
  } drop_netns{host_ns};
  bp::child worker(PADDOCK_WORKER_BIN, "--broker", eps["worker"].get<std::string>(),
                   "--net-host-netns", host_ns, "--backend", "qemu", "--image-dir", image_dir,
                   "--run-dir", run_dir + "/worker", "--snapshot-dir", run_dir + "/snapshots",
                   "--slots", "1", "--worker-id", "bench", "--warm", warm ? "on" : "off",
                   "--warm-min", "1", "--warm-max", "2", "--log-level", "warn");
  paddock::client::Client c(eps["client"].get<std::string>());
  Summary s;
  int n = 0;
  // Returns the job's latency and whether it ran warm.
  auto run = [&]() -> std::pair<double, bool> {
    paddock::schemas::JobRequest job;
    job.job_id = std::string("bench-true-") + (warm ? "warm-" : "cold-") + std::to_string(n++);
    job.argv = {"true"};
    const auto t0 = Clock::now();
    c.submit(job);
    while (true) {
      auto ev = c.next(120s);
      if (!ev) throw std::runtime_error("no answer within 120 s");
      if (ev->kind == paddock::client::Event::Kind::kResult) {
        return {ms_since(t0), ev->result.warm};
      }
      if (ev->kind == paddock::client::Event::Kind::kError) {
        throw std::runtime_error("job failed: " + ev->error.message);
      }
    }
  };
  if (warm) {
    // The template is built in the background after the worker starts: wait until a job runs warm,
    // then give the pool a moment to refill.
    const auto deadline = Clock::now() + 180s;
    while (!run().second) {
      if (Clock::now() > deadline) throw std::runtime_error("no warm job within 180 s");
    }
    std::this_thread::sleep_for(2s);
  }
  for (int i = 0; i < runs; ++i) {
    auto [ms, was_warm] = run();
    if (was_warm != warm)
      throw std::runtime_error("a job ran " + std::string(was_warm ? "warm" : "cold"));
    s.ms.push_back(ms);
    std::fprintf(stderr, "  true job %d (%s): %.1f ms\n", i + 1, warm ? "warm" : "cold", ms);
    // One job at a time, as a submitter with no backlog would send them; the pool refills between.
    if (warm) std::this_thread::sleep_for(300ms);
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
  int restore_runs = 30;
  int warm_runs = 20;
  int network_runs = 50;
  std::string json_path;
  CLI::App app{
      "paddock-bench-vm: cold boot, snapshot restore and end-to-end latency of QEMU "
      "microVM jobs"};
  app.add_option("--image-dir", config.image_dir, "guest image (tools/build-guest-image.sh)")
      ->required();
  app.add_option("--accel", config.accel, "auto, kvm or tcg")->capture_default_str();
  app.add_option("--runs", runs, "cold boots, and cold end-to-end jobs")->capture_default_str();
  app.add_option("--restore-runs", restore_runs, "clone restores")->capture_default_str();
  app.add_option("--warm-runs", warm_runs, "warm end-to-end jobs")->capture_default_str();
  app.add_option("--network-runs", network_runs, "network setups and teardowns")
      ->capture_default_str();
  app.add_option("--json", json_path, "also write the figures to this file");
  CLI11_PARSE(app, argc, argv);

  // On a tmpfs where there is one: guest RAM files live here.
  std::string base = paddock::runtime::QemuProvider::tmpfs_dir();
  if (base.empty()) base = "/run";
  const std::string run_dir = base + "/paddock-bench-" + std::to_string(::getpid());
  config.run_dir = run_dir + "/vms";
  config.snapshot_dir = run_dir + "/snapshots-provider";
  std::string accel;
  nlohmann::json out;
  try {
    std::fprintf(stderr, "network setup and teardown of a VM with egress (no VM):\n");
    NetworkFigures nf = bench_network(network_runs);
    out["network_create"] = nf.create.json();
    out["network_allow_egress"] = nf.egress.json();
    out["network_usage"] = nf.usage.json();
    out["network_teardown"] = nf.teardown.json();
    out["network_commands_per_vm"] = nf.commands_per_vm;
    std::fprintf(stderr, "cold boot, spawn to agent ready:\n");
    out["cold_boot"] = bench_cold_boot(config, runs, accel).json();
    std::fprintf(stderr, "clone restore from a template, spawn to agent ready:\n");
    RestoreFigures r = bench_restore(config, restore_runs);
    out["snapshot_ms"] = r.snapshot_ms;
    out["restore"] = r.restore.json();
    out["restore_to_paused"] = r.to_paused.json();
    out["restore_cont_to_agent"] = r.to_agent.json();
    out["clone_first_exec"] = r.first_exec.json();
    out["clone_second_exec"] = r.second_exec.json();
    out["clone_destroy"] = r.destroy.json();
    out["cold_restore_ratio"] =
        out["cold_boot"]["median_ms"].get<double>() / out["restore"]["median_ms"].get<double>();
    std::fprintf(stderr, "`true` job through broker and worker, warm pool:\n");
    out["end_to_end_true_job_warm"] =
        bench_end_to_end(config.image_dir, run_dir, warm_runs, true).json();
    std::fprintf(stderr, "`true` job through broker and worker, cold VM per job (--warm off):\n");
    out["end_to_end_true_job_cold"] =
        bench_end_to_end(config.image_dir, run_dir, runs, false).json();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paddock-bench-vm: %s\n", e.what());
    fs::remove_all(run_dir);
    return 1;
  }
  fs::remove_all(run_dir);
  out["accel"] = accel;
  out["host_cores"] = std::thread::hardware_concurrency();
  std::printf("%s\n%s\n%s\n%s\n%s\n%s\n%s\n",
              describe("cold boot (spawn→agent)", out["cold_boot"]).c_str(),
              describe("restore (spawn→agent)", out["restore"]).c_str(),
              describe("  restore: spawn→paused", out["restore_to_paused"]).c_str(),
              describe("  restore: cont→agent", out["restore_cont_to_agent"]).c_str(),
              describe("  clone: first `true`", out["clone_first_exec"]).c_str(),
              describe("true job e2e, warm pool", out["end_to_end_true_job_warm"]).c_str(),
              describe("true job e2e, cold", out["end_to_end_true_job_cold"]).c_str());
  std::printf("%s\n%s\n%s\n%s\n%s\n",
              describe("network: namespace+TAP+firewall", out["network_create"]).c_str(),
              describe("network: egress (veth, NAT, rules)", out["network_allow_egress"]).c_str(),
              describe("network: counters", out["network_usage"]).c_str(),
              describe("network: teardown", out["network_teardown"]).c_str(),
              ("network: commands per VM with egress: " +
               std::to_string(out["network_commands_per_vm"].get<uint64_t>()))
                  .c_str());
  std::printf(
      "cold/restore ratio (medians): %.0fx   snapshot of the template: %.0f ms   accel: %s\n",
      out["cold_restore_ratio"].get<double>(), out["snapshot_ms"].get<double>(), accel.c_str());
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
