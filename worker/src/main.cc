// paddock-worker: the worker daemon. A thin shell over paddock::worker::Worker.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "paddock/runtime/backends.h"
#include "paddock/runtime/qemu_provider.h"
#include "paddock/schemas/codec.h"
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

// A network prefix that is this worker's across restarts (so its sweep finds what it left) and
// differs between workers on a host: "p" and 5 hex digits of FNV-1a of the worker id.
std::string derived_net_prefix(const std::string& worker_id) {
  uint32_t h = 2166136261u;
  for (unsigned char c : worker_id) h = (h ^ c) * 16777619u;
  char buf[8];
  std::snprintf(buf, sizeof buf, "p%05x", h & 0xfffffu);
  return buf;
}

// CIDR[,PROTOCOL[,PORT|FIRST-LAST...]]; checked again, with the rest, when the provider opens.
std::optional<paddock::runtime::net::EgressRule> parse_policy_rule(const std::string& text,
                                                                   std::string& error) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (true) {
    const size_t comma = text.find(',', at);
    parts.push_back(text.substr(at, comma - at));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  paddock::runtime::net::EgressRule rule{parts[0], parts.size() > 1 ? parts[1] : "any", {}};
  for (size_t i = 2; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    const size_t dash = p.find('-');
    try {
      const unsigned long first = std::stoul(p.substr(0, dash));
      const unsigned long last = dash == std::string::npos ? first : std::stoul(p.substr(dash + 1));
      if (first > 65535 || last > 65535) throw std::out_of_range("port");
      rule.ports.push_back({static_cast<uint16_t>(first), static_cast<uint16_t>(last)});
    } catch (const std::exception&) {
      error = "'" + p + "' is not a port or FIRST-LAST range";
      return std::nullopt;
    }
  }
  return rule;
}

// The IPv4 addresses of a tcp:// broker endpoint (none for ipc:// or a wildcard).
std::vector<std::string> broker_addresses(const std::string& endpoint) {
  const std::string scheme = "tcp://";
  if (endpoint.rfind(scheme, 0) != 0) return {};
  std::string host = endpoint.substr(scheme.size());
  host = host.substr(0, host.rfind(':'));
  if (host.empty() || host == "*") return {};
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::vector<std::string> out;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return out;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char buf[INET_ADDRSTRLEN];
    const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
    if (::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf)) out.push_back(buf);
  }
  ::freeaddrinfo(found);
  return out;
}

// Writes what a script needs to find this worker as JSON, atomically (a temp file, then rename).
void write_ready_file(const std::string& path, const paddock::worker::Worker& worker) {
  nlohmann::json j = {{"pid", static_cast<int>(getpid())}};
  if (!worker.metrics_address().empty()) j["metrics"] = worker.metrics_address();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << "\n";
    if (!out) throw std::runtime_error("write " + tmp + " failed");
  }
  std::filesystem::rename(tmp, path);
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
  std::string broker_public_key;
  std::string curve_key;
  app.add_option("--broker-public-key", broker_public_key,
                 "CURVE: the brokers' public key (a NAME.pub file or the Z85 text); with "
                 "--curve-key")
      ->envname("PADDOCK_BROKER_KEY");
  app.add_option("--curve-key", curve_key,
                 "CURVE: this worker's secret key file (NAME.key, mode 0600); its public key must "
                 "be in the brokers' --worker-allow lists")
      ->envname("PADDOCK_CURVE_KEY");
  app.add_option("--slots", opt.slots, "jobs run at once")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--backend", backend,
                 "VM backend: memory (in-memory TEST DOUBLE: executes nothing), qemu, firecracker")
      ->capture_default_str();
  app.add_option(
      "--image-dir", qemu.image_dir,
      "qemu: guest image directory (vmlinuz, initramfs), from tools/build-guest-image.sh");
  std::vector<std::string> image_flags;
  app.add_option("--image", image_flags,
                 "qemu: another image, repeatable: NAME=DIR, DIR from tools/build-image.sh (a "
                 "rootfs image's directory); jobs choose it with their 'image' field");
  app.add_option("--image-root", qemu.image_root,
                 "qemu: an image cache (tools/build-image.sh --cache-dir, e.g. "
                 "/var/cache/paddock/images): each of its by-name/<NAME> links is an image too");
  std::vector<std::string> memory_images;
  app.add_option("--memory-images", memory_images,
                 "memory (TEST DOUBLE): the image names to advertise, comma-separated (default "
                 "'default'); nothing is booted, so any name runs the same scripts")
      ->delimiter(',');
  app.add_option("--warm-images", opt.warm_images,
                 "warm: images whose template is built (or found) at start, comma-separated "
                 "(default 'default'); the others' on their first job")
      ->delimiter(',');
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
  std::string jail = "on";
  paddock::runtime::JailConfig jail_config;
  std::string jail_uids;
  app.add_option("--jail", jail,
                 "qemu: start every QEMU through paddock-jailer (chroot, namespaces, cgroups, its "
                 "own uid, seccomp; needs root), or unjailed (off: development only)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option(
      "--jailer", jail_config.jailer_binary,
      "qemu: the paddock-jailer binary (default: next to this worker, else the build's)");
  app.add_option("--jail-uids", jail_uids,
                 "qemu: FIRST-LAST, the uids (and gids) VMMs run as, one per live VM (default: "
                 "4096 from 1000000 + 4096 * (hash of the run dir % 4096))");
  app.add_option("--jail-cgroup-parent", jail_config.cgroup_parent,
                 "qemu: VMM cgroups go below this, relative to /sys/fs/cgroup (default "
                 "paddock/<hash of the run dir>); swept at start");
  app.add_option("--jail-vmm-allowance-mib", jail_config.vmm_allowance_mib,
                 "qemu: a VMM's memory limit is its guest's memory plus this")
      ->check(CLI::Range(16u, 65536u))
      ->capture_default_str();
  std::string network = "on";
  paddock::runtime::net::NetworkSettings net;
  std::vector<std::string> egress_allow, egress_deny;
  app.add_option("--network", network,
                 "qemu: per-VM network namespaces with a default-deny egress firewall (on), or "
                 "VMs without a network device (off)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--net-pool", net.pool, "qemu: one /30 per VM with egress comes from this CIDR")
      ->capture_default_str();
  app.add_option("--net-prefix", net.prefix,
                 "qemu: names of this worker's namespaces, links and rules start with it; the "
                 "startup sweep removes them (default: derived from the worker id)");
  app.add_option("--net-host-netns", net.host_netns,
                 "qemu: the network namespace that plays the host for VM egress (default: the "
                 "worker's own)");
  app.add_option("--egress-allow", egress_allow,
                 "qemu: operator policy, repeatable: CIDR[,PROTOCOL[,PORT|FIRST-LAST...]]; a job's "
                 "rules are narrowed to these (default 0.0.0.0/0,any)");
  app.add_option("--egress-deny", egress_deny,
                 "qemu: CIDRs no job may reach, repeatable (the brokers' addresses are always "
                 "added)");
  app.add_flag("--egress-allow-link-local", net.policy.allow_link_local,
               "qemu: let jobs reach 169.254.0.0/16 (the metadata address) if their rules say so");
  app.add_flag("--egress-allow-host", net.policy.allow_host,
               "qemu: let jobs reach the host itself (any of its addresses, services behind its "
               "DNAT) if their rules say so");
  app.add_option(
      "--metrics-address", opt.metrics_address,
      "serve Prometheus metrics at http://HOST:PORT/metrics (':PORT' is loopback, port 0 "
      "an ephemeral one; no authentication: keep it on loopback or a trusted network)");
  std::string ready_file;
  app.add_option("--ready-file", ready_file,
                 "once started, write {\"pid\"} (and \"metrics\", the metrics server's HOST:PORT, "
                 "if any) as JSON to this file");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    opt.curve = paddock::curve::load_client_keys(broker_public_key, curve_key);
  } catch (const paddock::curve::KeyError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  if (opt.warm_pool.max_ready < opt.warm_pool.min_ready) {
    std::fprintf(stderr, "--warm-max (%zu) must be at least --warm-min (%zu)\n",
                 opt.warm_pool.max_ready, opt.warm_pool.min_ready);
    return 2;
  }
  for (const auto& flag : image_flags) {
    const size_t eq = flag.find('=');
    const std::string name = flag.substr(0, eq);
    if (eq == std::string::npos || !paddock::schemas::valid_image_name(name) ||
        eq + 1 == flag.size()) {
      std::fprintf(stderr, "--image %s: not NAME=DIR with NAME 1-64 of [a-z0-9._-]\n",
                   flag.c_str());
      return 2;
    }
    qemu.images[name] = flag.substr(eq + 1);
  }
  for (const auto& name : memory_images) {
    if (!paddock::schemas::valid_image_name(name)) {
      std::fprintf(stderr, "--memory-images: '%s' is not 1-64 of [a-z0-9._-]\n", name.c_str());
      return 2;
    }
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
  if (jail == "on") {
    if (!jail_uids.empty()) {
      unsigned long first = 0, last = 0;
      char dash = 0;
      std::istringstream in(jail_uids);
      if (!(in >> first >> dash >> last) || dash != '-' || !in.eof() || first == 0 ||
          last < first || last > 0xfffffffeUL) {
        std::fprintf(stderr, "--jail-uids %s: not FIRST-LAST with 0 < FIRST <= LAST\n",
                     jail_uids.c_str());
        return 2;
      }
      jail_config.uid_base = static_cast<uint32_t>(first);
      jail_config.uid_count = static_cast<uint32_t>(last - first + 1);
    }
    qemu.jail = jail_config;
  }
  if (network == "on") {
    if (net.prefix == paddock::runtime::net::NetworkSettings{}.prefix) {
      net.prefix = derived_net_prefix(opt.worker_id);
    }
    if (!egress_allow.empty()) {
      net.policy.allow.clear();
      for (const auto& text : egress_allow) {
        std::string error;
        auto rule = parse_policy_rule(text, error);
        if (!rule) {
          std::fprintf(stderr, "--egress-allow %s: %s\n", text.c_str(), error.c_str());
          return 2;
        }
        net.policy.allow.push_back(*rule);
      }
    }
    net.policy.deny = egress_deny;
    for (const auto& b : opt.brokers) {
      for (const auto& address : broker_addresses(b)) net.policy.deny.push_back(address + "/32");
    }
    qemu.network = net;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("paddock"));  // logs go to stderr
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ worker " + opt.worker_id + ": %v");
  // The firecracker backend boots the same image directory (it needs a vmlinux there) and keeps
  // snapshots where the qemu backend would.
  backend_config.firecracker.image_dir = qemu.image_dir;
  backend_config.firecracker.snapshot_dir = qemu.snapshot_dir;
  // Its VMs' directories (its jail prefix is a hash of it: per worker), its networks (the same
  // settings as qemu's) and, with --jail on, Firecracker's own jailer (`jailer` on PATH).
  backend_config.firecracker.run_dir = qemu.run_dir + "/firecracker";
  backend_config.firecracker.network = qemu.network;
  if (qemu.jail) {
    paddock::runtime::FirecrackerJailConfig fc_jail;
    if (!jail_uids.empty()) {
      fc_jail.uid_base = qemu.jail->uid_base;
      fc_jail.uid_count = qemu.jail->uid_count;
    }
    fc_jail.parent_cgroup = qemu.jail->cgroup_parent;  // empty: derived from the run dir
    fc_jail.vmm_allowance_mib = qemu.jail->vmm_allowance_mib;
    backend_config.firecracker.jail = fc_jail;
  }
  auto provider = paddock::runtime::make_provider(backend, backend_config);
  if (!provider) {
    spdlog::error("{} (code {}: {})", provider.error().message(), provider.error().code(),
                  provider.error().name());
    return 2;
  }
  if (backend == "qemu" && !qemu.jail) {
    spdlog::warn(
        "--jail off: QEMU runs unjailed, as this worker's user, in its namespaces; a guest that "
        "escapes into QEMU owns the worker. For development only");
  }
  if (backend == "memory") {
    spdlog::warn(
        "backend 'memory' is the in-memory test double: jobs are interpreted as scripts "
        "and nothing is executed in a VM");
    opt.images = memory_images;
  } else if (!memory_images.empty()) {
    spdlog::error(
        "--memory-images is for the memory test double only; qemu images come from "
        "--image-dir, --image and --image-root");
    return 2;
  }
  if (auto* q = dynamic_cast<paddock::runtime::QemuProvider*>(provider.value().get())) {
    opt.images = q->images();  // what it really has (an image that did not load is not there)
  }
  if (opt.images.size() > 63) {  // READY carries at most 64 capabilities, one is the backend
    spdlog::error("{} images; a worker advertises at most 63", opt.images.size());
    return 2;
  }
  const auto advertised = opt.images.empty() ? std::vector<std::string>{"default"} : opt.images;
  for (const auto& image : opt.warm_images) {
    if (std::find(advertised.begin(), advertised.end(), image) == advertised.end()) {
      std::string names;
      for (const auto& i : advertised) names += (names.empty() ? "" : ", ") + i;
      spdlog::error("--warm-images: this worker has no image '{}' (images: {})", image, names);
      return 2;
    }
  }
  try {
    paddock::worker::Worker worker(opt, std::move(provider.value()));
    g_worker.store(&worker);
    if (g_drain_requested.load()) worker.request_drain();
    if (!ready_file.empty()) write_ready_file(ready_file, worker);
    const int code = worker.run();
    g_worker.store(nullptr);
    return code;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
