// paddock-bench-vm: in one run, the cold-boot time of a QEMU microVM (spawn to agent ready), the
// restore time of a clone from a template snapshot (spawn to agent ready, i.e. restored, resumed
// and refreshed), their ratio, and the end-to-end latency of a `true` job through a real broker and
// worker on the qemu backend with and without warm pools. With --jail both (the default), the
// cold boots and restores run unjailed and jailed (through paddock-jailer) in the same process,
// alternating, and the jail's added cost is printed. With --image NAME=DIR every VM boots that
// image (say python, from tools/build-image.sh) and the end-to-end jobs run the command after `--`
// (say python3 -c 'print(1)') in it. Prints text and, with --json FILE, writes the figures as
// JSON. A benchmark, not a test: it asserts nothing.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "paddock/client/client.h"
#include "paddock/runtime/network_timing.h"
#include "paddock/runtime/qemu_provider.h"

namespace bp = boost::process;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Summary {
  std::vector<double> ms;
  nlohmann::json json() const {
    auto s = ms;
    std::sort(s.begin(), s.end());
    const double median = median_of(s);
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

// `what` padded to `width` characters (labels hold multi-byte arrows: printf pads bytes).
std::string pad(std::string what, size_t width) {
  size_t cols = 0;
  for (unsigned char ch : what) cols += (ch & 0xC0) != 0x80;
  what.append(cols < width ? width - cols : 0, ' ');
  return what;
}

std::string describe(const char* what, const nlohmann::json& j) {
  char line[256];
  std::snprintf(line, sizeof line,
                "%s median %8.1f ms   p99 %8.1f   min %8.1f   max %8.1f   (n=%d)",
                pad(what, 34).c_str(), j["median_ms"].get<double>(), j["p99_ms"].get<double>(),
                j["min_ms"].get<double>(), j["max_ms"].get<double>(), j["runs"].get<int>());
  return line;
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
  double cpu_ms_per_vm = 0;  // this process's threads and its commands, all four phases
};

// Network setup and teardown of a VM with egress, without the VM: the kernel work per job. The
// host side is a namespace made here, so the machine's own firewall is never touched.
NetworkFigures bench_network(int runs) {
  const std::string host = "pbench" + std::to_string(::getpid() % 100000);
  if (std::system(("ip netns add " + host).c_str()) != 0) {
    throw std::runtime_error("ip netns add " + host + " failed");
  }
  NetworkFigures f;
  paddock::runtime::net::NetworkSettings s;
  s.host_netns = host;
  s.prefix = "b" + std::to_string(::getpid() % 10000);
  s.pool = "10.214.0.0/24";
  auto t =
      paddock::runtime::net::time_vm_networks(s, runs, {{"198.18.0.0/15", "tcp", {{443, 443}}}});
  if (!t) {
    (void)std::system(("ip netns delete " + host).c_str());
    throw std::runtime_error(t.error().message());
  }
  f.create.ms = t.value().create_ms;
  f.egress.ms = t.value().egress_ms;
  f.usage.ms = t.value().usage_ms;
  f.teardown.ms = t.value().teardown_ms;
  f.commands_per_vm = t.value().commands_per_vm;
  f.cpu_ms_per_vm = t.value().cpu_ms_per_vm;
  (void)std::system(("ip netns delete " + host).c_str());
  return f;
}

// A process's memory from /proc/<pid>/smaps_rollup, in KiB: what it maps (Rss), its proportional
// share (Pss: a page mapped by n processes counts 1/n to each), and its private dirty pages (what
// it alone made: for a clone, the pages it wrote since its restore).
struct Memory {
  double rss = 0, pss = 0, private_dirty = 0, shared = 0;
};

Memory memory_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!in) throw std::runtime_error("cannot read smaps_rollup of pid " + std::to_string(pid));
  Memory m;
  for (std::string line; std::getline(in, line);) {  // the first line names the range: skipped
    std::istringstream fields(line);
    std::string key;
    double kib = 0;
    if (!(fields >> key >> kib)) continue;
    if (key == "Rss:") m.rss = kib;
    if (key == "Pss:") m.pss = kib;
    if (key == "Private_Dirty:") m.private_dirty = kib;
    if (key == "Shared_Clean:" || key == "Shared_Dirty:") m.shared += kib;
  }
  return m;
}

// An anonymous mapping named by its size ("anon 1024 MiB": QEMU's TCG translation buffer, sized by
// tb-size) or "anon small" (allocator arenas, thread stacks and every mapping under 4 MiB).
std::string anon_kind(const std::string& range) {
  const auto dash = range.find('-');
  const auto size = std::stoull(range.substr(dash + 1), nullptr, 16) -
                    std::stoull(range.substr(0, dash), nullptr, 16);
  const auto mib = size >> 20;
  return mib < 4 ? "anon small" : "anon " + std::to_string(mib) + " MiB";
}

// Where a process's PSS lies, from /proc/<pid>/smaps: KiB per mapping kind, largest first. Kinds:
// a file's base name, "[heap]", "[stack]", or anon_kind() for an anonymous mapping.
std::vector<std::pair<std::string, double>> pss_by_mapping(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  if (!in) throw std::runtime_error("cannot read smaps of pid " + std::to_string(pid));
  std::map<std::string, double> kinds;
  std::string current = "anon";
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string first;
    fields >> first;
    if (!first.empty() &&
        first.back() != ':') {  // a mapping's header: range perms off dev inode [path]
      std::string perms, off, dev, inode, path;
      fields >> perms >> off >> dev >> inode;
      std::getline(fields >> std::ws, path);
      current = !path.empty() ? (path.front() == '[' ? path : fs::path(path).filename().string())
                              : anon_kind(first);
      continue;
    }
    double kib = 0;
    if (first == "Pss:" && (fields >> kib)) kinds[current] += kib;
  }
  std::vector<std::pair<std::string, double>> out(kinds.begin(), kinds.end());
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

// Blocks a file really holds (a RAM file on tmpfs is memory), in KiB.
double allocated_kib(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<double>(st.st_blocks) * 512 / 1024 : 0;
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

void check(const paddock::runtime::Status& st, const std::string& what) {
  if (!st.ok()) throw std::runtime_error(what + ": " + st.error().message());
}

// One provider, unjailed or jailed, and its figures. Each has its own run and snapshot directory
// below the benchmark's, on the same tmpfs (jails hard-link their inputs: same filesystem).
struct Variant {
  std::string name;  // "unjailed" | "jailed"
  std::unique_ptr<paddock::runtime::QemuProvider> p;
  paddock::runtime::VmSpec spec;  // of every VM (its image: --image)
  Summary cold_boot;              // spawn -> agent ready
  Summary cold_destroy;           // destroy of a cold-booted VM (with a jail: its teardown too)
  RestoreFigures r;
  int clones = 0;

  void cold_boot_once(int i) {
    const std::string id = "bench-" + std::to_string(i);
    check(p->create(id, spec), name + ": create");
    check(p->start(id), name + ": start");
    cold_boot.ms.push_back(static_cast<double>(p->boot_us(id)) / 1000.0);
    const auto td = Clock::now();
    check(p->destroy(id), name + ": destroy");
    cold_destroy.ms.push_back(ms_since(td));
    std::fprintf(stderr, "  boot %d (%s): %.1f ms, destroy %.1f ms\n", i + 1, name.c_str(),
                 cold_boot.ms.back(), cold_destroy.ms.back());
  }

  void make_template() {
    check(p->create("tpl", spec), name + ": create template");
    check(p->start("tpl"), name + ": boot template");
    check(p->stop("tpl"), name + ": pause template");
    const auto ts = Clock::now();
    auto snap = p->snapshot("tpl", "template");
    if (!snap) throw std::runtime_error(name + ": snapshot: " + snap.error().message());
    r.snapshot_ms = ms_since(ts);
    check(p->destroy("tpl"), name + ": destroy template");
  }

  void restore_once() {
    paddock::runtime::ExecRequest t;
    t.argv = {"true"};
    const std::string id = "clone-" + std::to_string(clones++);
    const auto t0 = Clock::now();
    check(p->restore("tpl", "template", id), name + ": restore");
    r.to_paused.ms.push_back(ms_since(t0));
    const auto t1 = Clock::now();
    check(p->resume(id), name + ": resume");
    r.to_agent.ms.push_back(ms_since(t1));
    r.restore.ms.push_back(ms_since(t0));
    for (Summary* s : {&r.first_exec, &r.second_exec}) {
      const auto te = Clock::now();
      auto x = p->exec(id, t, {});
      if (!x) throw std::runtime_error(name + ": exec: " + x.error().message());
      s->ms.push_back(ms_since(te));
    }
    const auto td = Clock::now();
    check(p->destroy(id), name + ": destroy");
    r.destroy.ms.push_back(ms_since(td));
    std::fprintf(stderr,
                 "  restore %d (%s): %.1f ms (paused %.1f, agent %.1f), first true %.1f ms\n",
                 clones, name.c_str(), r.restore.ms.back(), r.to_paused.ms.back(),
                 r.to_agent.ms.back(), r.first_exec.ms.back());
  }

  // Memory of idle VMs: one cold-booted VM, and `n` clones of the template (restored, resumed,
  // refreshed, one `true` run), all alive at once and idle for a second. The template's RAM file
  // (on tmpfs: memory too) is counted apart. Call after make_template().
  nlohmann::json idle_memory(int n, const std::string& snapshot_dir) {
    paddock::runtime::ExecRequest t;
    t.argv = {"true"};
    check(p->create("idle-cold", spec), name + ": create");
    check(p->start("idle-cold"), name + ": start");
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      ids.push_back("idle-clone-" + std::to_string(i));
      check(p->restore("tpl", "template", ids.back()), name + ": restore");
      check(p->resume(ids.back()), name + ": resume");
      if (!p->exec(ids.back(), t, {})) throw std::runtime_error(name + ": exec in idle clone");
    }
    std::this_thread::sleep_for(1s);
    const Memory cold = memory_of(p->vmm_pid("idle-cold"));
    std::vector<double> pss, rss, dirty;
    double pss_sum = 0;
    for (const auto& id : ids) {
      const Memory m = memory_of(p->vmm_pid(id));
      pss.push_back(m.pss);
      rss.push_back(m.rss);
      dirty.push_back(m.private_dirty);
      pss_sum += m.pss;
    }
    nlohmann::json breakdown = nlohmann::json::array();  // [[kind, MiB], ...], largest first
    int listed = 0;
    for (const auto& [kind, kib] : pss_by_mapping(p->vmm_pid(ids.front()))) {
      if (listed++ == 8) break;
      breakdown.push_back({kind, kib / 1024});
      std::fprintf(stderr, "  idle clone PSS by mapping: %-24s %7.1f MiB\n", kind.c_str(),
                   kib / 1024);
    }
    double template_ram_kib = 0;
    for (const auto& e : fs::recursive_directory_iterator(snapshot_dir)) {
      if (e.is_regular_file()) template_ram_kib += allocated_kib(e.path());
    }
    for (const auto& id : ids) check(p->destroy(id), name + ": destroy");
    check(p->destroy("idle-cold"), name + ": destroy");
    std::fprintf(stderr,
                 "  idle memory (%s): cold VM pss %.1f MiB rss %.1f MiB; clone median pss %.1f "
                 "MiB rss %.1f MiB private dirty %.1f MiB (n=%d); template files %.1f MiB\n",
                 name.c_str(), cold.pss / 1024, cold.rss / 1024, median_of(pss) / 1024,
                 median_of(rss) / 1024, median_of(dirty) / 1024, n, template_ram_kib / 1024);
    return {{"clones", n},
            {"cold_vm_pss_mib", cold.pss / 1024},
            {"cold_vm_rss_mib", cold.rss / 1024},
            {"cold_vm_private_dirty_mib", cold.private_dirty / 1024},
            {"clone_pss_median_mib", median_of(pss) / 1024},
            {"clone_rss_median_mib", median_of(rss) / 1024},
            {"clone_private_dirty_median_mib", median_of(dirty) / 1024},
            {"clones_pss_sum_mib", pss_sum / 1024},
            {"template_files_mib", template_ram_kib / 1024},
            {"clone_pss_by_mapping_mib", breakdown},
            {"clone_pss_samples_mib", [&] {
               std::vector<double> v;
               for (double k : pss) v.push_back(k / 1024);
               return v;
             }()}};
  }

  // The figures under the benchmark's existing JSON names.
  nlohmann::json json() const {
    nlohmann::json j;
    j["cold_boot"] = cold_boot.json();
    j["cold_destroy"] = cold_destroy.json();
    j["snapshot_ms"] = r.snapshot_ms;
    j["restore"] = r.restore.json();
    j["restore_to_paused"] = r.to_paused.json();
    j["restore_cont_to_agent"] = r.to_agent.json();
    j["clone_first_exec"] = r.first_exec.json();
    j["clone_second_exec"] = r.second_exec.json();
    j["clone_destroy"] = r.destroy.json();
    j["cold_restore_ratio"] =
        j["cold_boot"]["median_ms"].get<double>() / j["restore"]["median_ms"].get<double>();
    return j;
  }
};

// Runs step(variant, i) for i < runs over every variant, alternating the order (ABBA): on a noisy
// machine neither variant always goes first or always follows the other.
template <typename Step>
void interleaved(std::vector<std::unique_ptr<Variant>>& vs, int runs, Step step) {
  for (int i = 0; i < runs; ++i) {
    for (size_t k = 0; k < vs.size(); ++k) step(*vs[i % 2 == 0 ? k : vs.size() - 1 - k], i);
  }
}

// The image of the end-to-end jobs ("default": --image-dir) and their command.
struct E2eJob {
  std::string image = "default";
  std::string image_dir;  // of `image` when not "default"
  std::vector<std::string> argv{"true"};
};

Summary bench_end_to_end(const std::string& image_dir, const std::string& run_dir, int runs,
                         bool warm, bool jailed, const E2eJob& spec) {
  const std::string ready = run_dir + (warm ? "/broker-warm.ready" : "/broker-cold.ready");
  fs::remove(ready);
  bp::child broker(PADDOCK_BROKER_BIN, "--client-endpoint", "tcp://127.0.0.1:*",
                   "--worker-endpoint", "tcp://127.0.0.1:*", "--no-journal", "--ready-file", ready,
                   "--log-level", "warn");
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
  std::vector<std::string> worker_args = {"--broker",         eps["worker"].get<std::string>(),
                                          "--net-host-netns", host_ns,
                                          "--backend",        "qemu",
                                          "--image-dir",      image_dir,
                                          "--run-dir",        run_dir + "/worker",
                                          "--snapshot-dir",   run_dir + "/snapshots",
                                          "--slots",          "1",
                                          "--worker-id",      "bench",
                                          "--warm",           warm ? "on" : "off",
                                          "--warm-min",       "1",
                                          "--warm-max",       "2",
                                          "--jail",           jailed ? "on" : "off",
                                          "--log-level",      "warn",
                                          "--warm-images",    spec.image};
  if (spec.image != "default") {
    worker_args.insert(worker_args.end(), {"--image", spec.image + "=" + spec.image_dir});
  }
  bp::child worker(PADDOCK_WORKER_BIN, bp::args(worker_args));
  paddock::client::Client c(eps["client"].get<std::string>());
  Summary s;
  int n = 0;
  // Returns the job's latency and whether it ran warm.
  auto run = [&]() -> std::pair<double, bool> {
    paddock::schemas::JobRequest job;
    job.job_id = std::string("bench-e2e-") + (warm ? "warm-" : "cold-") + std::to_string(n++);
    job.argv = spec.argv;
    job.image = spec.image;
    const auto t0 = Clock::now();
    c.submit(job);
    while (true) {
      auto ev = c.next(120s);
      if (!ev) throw std::runtime_error("no answer within 120 s");
      if (ev->kind == paddock::client::Event::Kind::kResult) {
        if (ev->result.exit_code != 0) {
          throw std::runtime_error("the job exited " + std::to_string(ev->result.exit_code) + ": " +
                                   ev->result.stderr_data);
        }
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
    std::fprintf(stderr, "  job %d (%s): %.1f ms\n", i + 1, warm ? "warm" : "cold", ms);
    // One job at a time, as a submitter with no backlog would send them; the pool refills between.
    if (warm) std::this_thread::sleep_for(300ms);
  }
  ::kill(worker.id(), SIGTERM);
  worker.wait();
  ::kill(broker.id(), SIGTERM);
  broker.wait();
  return s;
}

// One figure of both variants: medians, p99s, the jail's added time and the ratio of the medians.
nlohmann::json added(const nlohmann::json& off, const nlohmann::json& on) {
  const double m0 = off["median_ms"].get<double>(), m1 = on["median_ms"].get<double>();
  return {{"unjailed_median_ms", m0},
          {"jailed_median_ms", m1},
          {"unjailed_p99_ms", off["p99_ms"]},
          {"jailed_p99_ms", on["p99_ms"]},
          {"added_median_ms", m1 - m0},
          {"added_p99_ms", on["p99_ms"].get<double>() - off["p99_ms"].get<double>()},
          {"ratio_median", m0 > 0 ? m1 / m0 : 0.0}};
}

}  // namespace

int main(int argc, char** argv) {
  paddock::runtime::QemuConfig config;
  int runs = 5;
  int restore_runs = 30;
  int warm_runs = 20;
  int cold_e2e_runs = -1;
  int network_runs = 50;
  int idle_clones = 8;
  std::string jail_mode = "both";
  std::string json_path;
  std::string image_flag;
  E2eJob e2e;
  CLI::App app{
      "paddock-bench-vm: cold boot, snapshot restore and end-to-end latency of QEMU "
      "microVM jobs"};
  app.add_option("--image-dir", config.image_dir, "guest image (tools/build-guest-image.sh)")
      ->required();
  app.add_option("--accel", config.accel, "auto, kvm or tcg")->capture_default_str();
  app.add_option("--runs", runs, "cold boots (per jail variant), and cold end-to-end jobs")
      ->capture_default_str();
  app.add_option("--restore-runs", restore_runs, "clone restores (per jail variant)")
      ->capture_default_str();
  app.add_option("--warm-runs", warm_runs, "warm end-to-end jobs (0: no warm end-to-end part)")
      ->capture_default_str();
  app.add_option("--cold-e2e-runs", cold_e2e_runs,
                 "cold end-to-end jobs (default: --runs; 0: no cold end-to-end part)");
  app.add_option("--network-runs", network_runs,
                 "network setups and teardowns (0: no network part)")
      ->capture_default_str();
  app.add_option("--idle-clones", idle_clones,
                 "memory per idle VM: this many clones alive at once, and one cold VM (0: no "
                 "memory part)")
      ->capture_default_str();
  app.add_option("--jail", jail_mode,
                 "cold boots and restores unjailed (off), jailed through paddock-jailer (on, needs "
                 "root), or both, alternating, with the jail's added cost; the end-to-end worker "
                 "runs jailed unless off")
      ->check(CLI::IsMember({"on", "off", "both"}))
      ->capture_default_str();
  app.add_option("--image", image_flag,
                 "NAME=DIR: every VM boots this image (DIR from tools/build-image.sh NAME), and "
                 "the end-to-end jobs run in it (default: the --image-dir image, 'default')");
  app.add_option("e2e-argv", e2e.argv,
                 "the end-to-end jobs' command, after -- (default: true; e.g. -- python3 -c "
                 "'print(1)' with --image python=DIR)");
  app.add_option("--json", json_path, "also write the figures to this file");
  CLI11_PARSE(app, argc, argv);
  if (!image_flag.empty()) {
    const size_t eq = image_flag.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == image_flag.size()) {
      std::fprintf(stderr, "paddock-bench-vm: --image %s: not NAME=DIR\n", image_flag.c_str());
      return 2;
    }
    e2e.image = image_flag.substr(0, eq);
    e2e.image_dir = image_flag.substr(eq + 1);
    if (e2e.image != "default")
      config.images[e2e.image] = e2e.image_dir;
    else
      config.image_dir = e2e.image_dir;
  }
  const bool true_job = e2e.argv == std::vector<std::string>{"true"};
  const std::string e2e_key = true_job ? "end_to_end_true_job_" : "end_to_end_job_";
  if (cold_e2e_runs < 0) cold_e2e_runs = runs;
  if (jail_mode != "off" && ::geteuid() != 0) {
    std::fprintf(stderr, "paddock-bench-vm: --jail %s needs root (use --jail off)\n",
                 jail_mode.c_str());
    return 2;
  }

  // On a tmpfs where there is one (as the worker's): guest RAM files live here, and a jail
  // hard-links its inputs from the same filesystem.
  std::string base = paddock::runtime::QemuProvider::tmpfs_dir();
  if (base.empty()) base = "/run";
  const std::string run_dir = base + "/paddock-bench-" + std::to_string(::getpid());
  std::string accel;
  nlohmann::json out;
  try {
    if (network_runs > 0) {
      std::fprintf(stderr, "network setup and teardown of a VM with egress (no VM):\n");
      NetworkFigures nf = bench_network(network_runs);
      out["network_create"] = nf.create.json();
      out["network_allow_egress"] = nf.egress.json();
      out["network_usage"] = nf.usage.json();
      out["network_teardown"] = nf.teardown.json();
      out["network_commands_per_vm"] = nf.commands_per_vm;
      out["network_cpu_ms_per_vm"] = nf.cpu_ms_per_vm;
    }
    {
      // Unjailed first, so that with both it is variant 0: ABBA starts with it.
      std::vector<std::unique_ptr<Variant>> vs;
      for (const bool jailed : {false, true}) {
        if ((jailed && jail_mode == "off") || (!jailed && jail_mode == "on")) continue;
        auto v = std::make_unique<Variant>();
        v->name = jailed ? "jailed" : "unjailed";
        paddock::runtime::QemuConfig c = config;
        c.run_dir = run_dir + "/" + v->name + "/vms";
        c.snapshot_dir = run_dir + "/" + v->name + "/snapshots";
        if (jailed) c.jail = paddock::runtime::JailConfig{};
        auto opened = paddock::runtime::QemuProvider::open(c);
        if (!opened) throw std::runtime_error(v->name + ": " + opened.error().message());
        v->p = std::move(opened.value());
        v->spec.image = e2e.image;
        accel = v->p->accel();
        vs.push_back(std::move(v));
      }
      std::fprintf(stderr, "cold boot, spawn to agent ready (%s):\n", jail_mode.c_str());
      interleaved(vs, runs, [](Variant& v, int i) { v.cold_boot_once(i); });
      std::fprintf(stderr, "clone restore from a template, spawn to agent ready (%s):\n",
                   jail_mode.c_str());
      for (auto& v : vs) v->make_template();
      interleaved(vs, restore_runs, [](Variant& v, int) { v.restore_once(); });
      if (idle_clones > 0) {
        std::fprintf(stderr, "memory of idle VMs (%s):\n", vs.back()->name.c_str());
        out["idle_memory"] =
            vs.back()->idle_memory(idle_clones, run_dir + "/" + vs.back()->name + "/snapshots");
        out["idle_memory"]["vms"] = vs.back()->name;
      }
      for (auto& v : vs) check(v->p->delete_snapshot("tpl", "template"), v->name + ": delete");
      // The existing fields hold the figures of the VMs as the worker runs them: jailed, unless
      // --jail off. The "jail" section holds each variant's and, with both, the added cost.
      nlohmann::json jail{{"mode", jail_mode}, {"top_level_figures", vs.back()->name}};
      for (auto& v : vs) jail[v->name] = v->json();
      const nlohmann::json top = vs.back()->json();
      for (const auto& [k, val] : top.items()) out[k] = val;
      if (vs.size() == 2) {
        const auto &off = jail["unjailed"], &on = jail["jailed"];
        for (const char* k :
             {"cold_boot", "restore", "restore_to_paused", "restore_cont_to_agent",
              "clone_first_exec", "clone_second_exec", "clone_destroy", "cold_destroy"}) {
          jail["added"][k] = added(off[k], on[k]);
        }
        jail["added"]["snapshot_ms"] =
            on["snapshot_ms"].get<double>() - off["snapshot_ms"].get<double>();
      }
      out["jail"] = jail;
    }  // the providers close here: their VMs are gone, and a jailed one removes its cgroup parent
    const bool e2e_jailed = jail_mode != "off";
    if (warm_runs > 0) {
      std::fprintf(stderr, "job through broker and worker, warm pool:\n");
      out[e2e_key + "warm"] =
          bench_end_to_end(config.image_dir, run_dir, warm_runs, true, e2e_jailed, e2e).json();
    }
    if (cold_e2e_runs > 0) {
      std::fprintf(stderr, "job through broker and worker, cold VM per job (--warm off):\n");
      out[e2e_key + "cold"] =
          bench_end_to_end(config.image_dir, run_dir, cold_e2e_runs, false, e2e_jailed, e2e).json();
    }
    if (warm_runs > 0 || cold_e2e_runs > 0) {
      out["end_to_end_jailed"] = e2e_jailed;
      out["end_to_end_argv"] = e2e.argv;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paddock-bench-vm: %s\n", e.what());
    fs::remove_all(run_dir);
    return 1;
  }
  fs::remove_all(run_dir);
  out["accel"] = accel;
  out["image"] = e2e.image;
  out["host_cores"] = std::thread::hardware_concurrency();
  auto line = [&](const char* what, const char* key) {
    if (out.contains(key)) std::printf("%s\n", describe(what, out[key]).c_str());
  };
  std::printf("VMs %s (--jail %s), image %s%s%s:\n",
              out["jail"]["top_level_figures"].get<std::string>().c_str(), jail_mode.c_str(),
              e2e.image.c_str(), true_job ? "" : ", end-to-end job: ",
              true_job ? "" : out.value("end_to_end_argv", nlohmann::json::array()).dump().c_str());
  line("cold boot (spawn→agent)", "cold_boot");
  line("restore (spawn→agent)", "restore");
  line("  restore: spawn→paused", "restore_to_paused");
  line("  restore: cont→agent", "restore_cont_to_agent");
  line("  clone: first `true`", "clone_first_exec");
  line("  clone: destroy", "clone_destroy");
  line("true job e2e, warm pool", "end_to_end_true_job_warm");
  line("true job e2e, cold", "end_to_end_true_job_cold");
  line("job e2e, warm pool", "end_to_end_job_warm");
  line("job e2e, cold", "end_to_end_job_cold");
  line("network: namespace+TAP+firewall", "network_create");
  line("network: egress (veth, NAT, rules)", "network_allow_egress");
  line("network: counters", "network_usage");
  line("network: teardown", "network_teardown");
  if (out.contains("idle_memory")) {
    const auto& m = out["idle_memory"];
    std::printf(
        "idle VM memory (%s): cold VM PSS %.1f MiB (RSS %.1f); %d clones: PSS median %.1f MiB "
        "(RSS %.1f, private dirty %.1f), PSS sum %.1f MiB; template files on tmpfs %.1f MiB\n",
        m["vms"].get<std::string>().c_str(), m["cold_vm_pss_mib"].get<double>(),
        m["cold_vm_rss_mib"].get<double>(), m["clones"].get<int>(),
        m["clone_pss_median_mib"].get<double>(), m["clone_rss_median_mib"].get<double>(),
        m["clone_private_dirty_median_mib"].get<double>(), m["clones_pss_sum_mib"].get<double>(),
        m["template_files_mib"].get<double>());
  }
  if (out.contains("network_commands_per_vm")) {
    std::printf("network: commands per VM with egress: %llu; CPU per VM: %.1f ms\n",
                static_cast<unsigned long long>(out["network_commands_per_vm"].get<uint64_t>()),
                out["network_cpu_ms_per_vm"].get<double>());
  }
  std::printf(
      "cold/restore ratio (medians): %.0fx   snapshot of the template: %.0f ms   accel: %s\n",
      out["cold_restore_ratio"].get<double>(), out["snapshot_ms"].get<double>(), accel.c_str());
  if (out["jail"].contains("added")) {
    std::printf("\njail cost (alternating runs; ms; ratio = jailed median / unjailed median):\n");
    std::printf("%-28s %10s %10s %10s %7s   %10s %10s\n", "", "unjailed", "jailed", "added",
                "ratio", "p99 unj.", "p99 jail");
    for (const auto& [k, label] : std::vector<std::pair<const char*, const char*>>{
             {"cold_boot", "cold boot (spawn→agent)"},
             {"restore", "restore (spawn→agent)"},
             {"restore_to_paused", "  restore: spawn→paused"},
             {"restore_cont_to_agent", "  restore: cont→agent"},
             {"clone_first_exec", "  clone: first `true`"},
             {"clone_second_exec", "  clone: second `true`"},
             {"clone_destroy", "  clone: destroy"},
             {"cold_destroy", "cold VM: destroy"}}) {
      const auto& a = out["jail"]["added"][k];
      std::printf("%s %10.1f %10.1f %+10.1f %6.2fx   %10.1f %10.1f\n", pad(label, 28).c_str(),
                  a["unjailed_median_ms"].get<double>(), a["jailed_median_ms"].get<double>(),
                  a["added_median_ms"].get<double>(), a["ratio_median"].get<double>(),
                  a["unjailed_p99_ms"].get<double>(), a["jailed_p99_ms"].get<double>());
    }
    std::printf("snapshot of the template: unjailed %.0f ms, jailed %.0f ms (one each)\n",
                out["jail"]["unjailed"]["snapshot_ms"].get<double>(),
                out["jail"]["jailed"]["snapshot_ms"].get<double>());
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
