#include "worker_config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>

#include "paddock/runtime/qemu_provider.h"
#include "paddock/schemas/codec.h"

namespace paddock::worker {
namespace {

std::string default_worker_id() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

// CIDR[,PROTOCOL[,PORT|FIRST-LAST...]]; checked again, with the rest, when the provider opens.
base::Expected<runtime::net::EgressRule> parse_policy_rule(const std::string& text) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (true) {
    const size_t comma = text.find(',', at);
    parts.push_back(text.substr(at, comma - at));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  runtime::net::EgressRule rule{parts[0], parts.size() > 1 ? parts[1] : "any", {}};
  for (size_t i = 2; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    const size_t dash = p.find('-');
    try {
      const unsigned long first = std::stoul(p.substr(0, dash));
      const unsigned long last = dash == std::string::npos ? first : std::stoul(p.substr(dash + 1));
      if (first > 65535 || last > 65535) throw std::out_of_range("port");
      rule.ports.push_back({static_cast<uint16_t>(first), static_cast<uint16_t>(last)});
    } catch (const std::exception&) {
      return base::fail("'" + p + "' is not a port or FIRST-LAST range");
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

daemon::ConfigError usage(std::string message) { return {daemon::kExitUsage, std::move(message)}; }

// What the command line gives before it is checked and turned into a WorkerConfig: the flags
// whose text is parsed further (images, uids, rules) or that only choose between settings.
struct Flags {
  WorkerConfig config;
  std::string broker_public_key, curve_key;
  std::vector<std::string> image_flags;
  uint32_t boot_timeout_ms = 60'000;
  uint32_t warm_max_age_s = 300;
  uint32_t warm_template_wait_s = 120;
  std::string warm = "on", jail = "on", network = "on";
  runtime::JailConfig jail_config;
  std::string jail_uids;
  runtime::net::NetworkSettings net;
  std::vector<std::string> egress_allow, egress_deny;
};

void add_options(CLI::App& app, Flags& f) {
  auto& opt = f.config.options;
  auto& qemu = f.config.backend_config.qemu;
  app.add_option("--broker", opt.brokers, "broker worker endpoint (repeat for several brokers)")
      ->required();
  app.add_option("--worker-id", opt.worker_id, "this worker's name (default: host-pid)");
  app.add_option("--broker-public-key", f.broker_public_key,
                 "CURVE: the brokers' public key (a NAME.pub file or the Z85 text); with "
                 "--curve-key")
      ->envname("PADDOCK_BROKER_KEY");
  app.add_option("--curve-key", f.curve_key,
                 "CURVE: this worker's secret key file (NAME.key, mode 0600); its public key must "
                 "be in the brokers' --worker-allow lists")
      ->envname("PADDOCK_CURVE_KEY");
  app.add_option("--slots", opt.slots, "jobs run at once")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--capacity-vcpus", opt.capacity_vcpus,
                 "guest vCPUs committed at once, at most: brokers place jobs within it (default: "
                 "4 per host CPU, at least --slots)")
      ->check(CLI::Range(0u, 1u << 20));
  app.add_option("--capacity-mem-mib", opt.capacity_mem_mib,
                 "guest memory committed at once, MiB, at most: brokers place jobs within it "
                 "(default: 3/4 of the host's memory, at least 128 per slot)")
      ->check(CLI::Range(0u, 1u << 30));
  app.add_option("--backend", f.config.backend,
                 "VM backend: qemu, firecracker, or memory (in-memory TEST DOUBLE: executes "
                 "nothing; only when asked for)")
      ->check(CLI::IsMember({"qemu", "firecracker", "memory"}))
      ->capture_default_str();
  app.add_option(
      "--image-dir", qemu.image_dir,
      "qemu: guest image directory (vmlinuz, initramfs), from tools/build-guest-image.sh");
  app.add_option("--image", f.image_flags,
                 "qemu: another image, repeatable: NAME=DIR, DIR from tools/build-image.sh (a "
                 "rootfs image's directory); jobs choose it with their 'image' field");
  app.add_option("--image-root", qemu.image_root,
                 "qemu: an image cache (tools/build-image.sh --cache-dir, e.g. "
                 "/var/cache/paddock/images): each of its by-name/<NAME> links is an image too");
  app.add_option("--memory-images", f.config.memory_images,
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
  app.add_option("--boot-timeout-ms", f.boot_timeout_ms, "qemu: agent must answer within this")
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
  app.add_option("--warm", f.warm,
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
  app.add_option("--warm-pools-per-tenant", opt.warm_pools_per_tenant,
                 "warm: pools (one per image, vCPUs and memory) made for one tenant's jobs, at "
                 "most; its jobs of further shapes boot cold")
      ->check(CLI::Range(0u, 8u))
      ->capture_default_str();
  app.add_option("--warm-max-age-s", f.warm_max_age_s,
                 "warm: a ready clone older than this is destroyed and replaced")
      ->check(CLI::Range(1u, 86'400u))
      ->capture_default_str();
  app.add_option("--warm-template-wait-s", f.warm_template_wait_s,
                 "warm: a job that finds its VM spec's template being built waits this long for "
                 "it instead of booting cold beside the build (0: boot cold at once)")
      ->check(CLI::Range(0u, 3'600u))
      ->capture_default_str();
  app.add_option("--jail", f.jail,
                 "qemu: start every QEMU through paddock-jailer (chroot, namespaces, cgroups, its "
                 "own uid, seccomp; needs root), or unjailed (off: development only)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option(
      "--jailer", f.jail_config.jailer_binary,
      "qemu: the paddock-jailer binary (default: next to this worker, else the build's)");
  app.add_option("--jail-uids", f.jail_uids,
                 "qemu: FIRST-LAST, the uids (and gids) VMMs run as, one per live VM (default: "
                 "4096 from 1000000 + 4096 * (hash of the run dir % 4096))");
  app.add_option("--jail-cgroup-parent", f.jail_config.cgroup_parent,
                 "qemu: VMM cgroups go below this, relative to /sys/fs/cgroup (default "
                 "paddock/<hash of the run dir>); swept at start");
  app.add_option("--jail-vmm-allowance-mib", f.jail_config.vmm_allowance_mib,
                 "qemu: a VMM's memory limit is its guest's memory plus this")
      ->check(CLI::Range(16u, 65536u))
      ->capture_default_str();
  app.add_option("--network", f.network,
                 "qemu: per-VM network namespaces with a default-deny egress firewall (on), or "
                 "VMs without a network device (off)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--net-pool", f.net.pool, "qemu: one /30 per VM with egress comes from this CIDR")
      ->capture_default_str();
  app.add_option("--net-prefix", f.net.prefix,
                 "qemu: names of this worker's namespaces, links and rules start with it; the "
                 "startup sweep removes them (default: derived from the worker id)");
  app.add_option("--net-host-netns", f.net.host_netns,
                 "qemu: the network namespace that plays the host for VM egress (default: the "
                 "worker's own)");
  app.add_option("--egress-allow", f.egress_allow,
                 "qemu: operator policy, repeatable: CIDR[,PROTOCOL[,PORT|FIRST-LAST...]]; a job's "
                 "rules are narrowed to these (default 0.0.0.0/0,any)");
  app.add_option("--egress-deny", f.egress_deny,
                 "qemu: CIDRs no job may reach, repeatable (the brokers' addresses are always "
                 "added)");
  app.add_flag("--egress-allow-link-local", f.net.policy.allow_link_local,
               "qemu: let jobs reach 169.254.0.0/16 (the metadata address) if their rules say so");
  app.add_flag("--egress-allow-host", f.net.policy.allow_host,
               "qemu: let jobs reach the host itself (any of its addresses, services behind its "
               "DNAT) if their rules say so");
  app.add_option(
      "--metrics-address", opt.metrics_address,
      "serve Prometheus metrics at http://HOST:PORT/metrics (':PORT' is loopback, port 0 "
      "an ephemeral one; no authentication: keep it on loopback or a trusted network)");
  app.add_option("--ready-file", f.config.ready_file,
                 "once started, write {\"pid\"} (and \"metrics\", the metrics server's HOST:PORT, "
                 "if any) as JSON to this file");
  app.add_option("--log-level", f.config.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
}

// Guest RAM files live in the run and snapshot directories: on a tmpfs they never touch a disk.
void derive_directories(WorkerConfig& c) {
  auto& qemu = c.backend_config.qemu;
  std::string safe;
  for (char ch : c.options.worker_id) {
    safe += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  }
  safe = safe.substr(0, 40);
  std::string tmpfs = runtime::QemuProvider::tmpfs_dir();
  if (tmpfs.empty()) tmpfs = "/run";
  if (qemu.run_dir == runtime::QemuConfig{}.run_dir) qemu.run_dir = tmpfs + "/paddock/" + safe;
  if (qemu.snapshot_dir.empty()) qemu.snapshot_dir = tmpfs + "/paddock-snapshots/" + safe;
}

daemon::Parsed<void> apply_jail(Flags& f) {
  if (f.jail != "on") return {};
  if (!f.jail_uids.empty()) {
    unsigned long first = 0, last = 0;
    char dash = 0;
    std::istringstream in(f.jail_uids);
    if (!(in >> first >> dash >> last) || dash != '-' || !in.eof() || first == 0 || last < first ||
        last > 0xfffffffeUL) {
      return usage("--jail-uids " + f.jail_uids + ": not FIRST-LAST with 0 < FIRST <= LAST");
    }
    f.jail_config.uid_base = static_cast<uint32_t>(first);
    f.jail_config.uid_count = static_cast<uint32_t>(last - first + 1);
  }
  f.config.backend_config.qemu.jail = f.jail_config;
  return {};
}

daemon::Parsed<void> apply_network(Flags& f) {
  if (f.network != "on") return {};
  auto& net = f.net;
  if (net.prefix == runtime::net::NetworkSettings{}.prefix) {
    net.prefix = derived_net_prefix(f.config.options.worker_id);
  }
  if (!f.egress_allow.empty()) {
    net.policy.allow.clear();
    for (const auto& text : f.egress_allow) {
      auto rule = parse_policy_rule(text);
      if (!rule) return usage("--egress-allow " + text + ": " + rule.error().message);
      net.policy.allow.push_back(*rule);
    }
  }
  net.policy.deny = f.egress_deny;
  for (const auto& b : f.config.options.brokers) {
    for (const auto& address : broker_addresses(b)) net.policy.deny.push_back(address + "/32");
  }
  f.config.backend_config.qemu.network = net;
  return {};
}

// The firecracker backend boots the same image directory (it needs a vmlinux there) and keeps
// snapshots where the qemu backend would; its VMs' directories (its jail prefix is a hash of it:
// per worker), its networks (the same settings as qemu's) and, with --jail on, Firecracker's own
// jailer (`jailer` on PATH).
void derive_firecracker(WorkerConfig& c, bool uids_given) {
  const auto& qemu = c.backend_config.qemu;
  auto& fc = c.backend_config.firecracker;
  fc.image_dir = qemu.image_dir;
  fc.snapshot_dir = qemu.snapshot_dir;
  fc.run_dir = qemu.run_dir + "/firecracker";
  fc.network = qemu.network;
  if (qemu.jail) {
    runtime::FirecrackerJailConfig fc_jail;
    if (uids_given) {
      fc_jail.uid_base = qemu.jail->uid_base;
      fc_jail.uid_count = qemu.jail->uid_count;
    }
    fc_jail.parent_cgroup = qemu.jail->cgroup_parent;  // empty: derived from the run dir
    fc_jail.vmm_allowance_mib = qemu.jail->vmm_allowance_mib;
    fc.jail = fc_jail;
  }
}

}  // namespace

std::string derived_net_prefix(const std::string& worker_id) {
  uint32_t h = 2166136261u;
  for (unsigned char c : worker_id) h = (h ^ c) * 16777619u;
  char buf[8];
  std::snprintf(buf, sizeof buf, "p%05x", h & 0xfffffu);
  return buf;
}

daemon::Parsed<WorkerConfig> parse_worker_args(int argc, const char* const* argv) {
  Flags f;
  CLI::App app{"paddock-worker: runs Paddock jobs from one or more brokers"};
  add_options(app, f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return daemon::ConfigError{0, app.help()};
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return daemon::ConfigError{0, e.what()};  // --version and the like
    return usage(std::string(e.what()) + "\nRun with --help for more information.");
  }
  auto& c = f.config;
  auto& opt = c.options;
  try {
    opt.curve = curve::load_client_keys(f.broker_public_key, f.curve_key);
  } catch (const curve::KeyError& e) {
    return usage(e.what());
  }
  if (opt.warm_pool.max_ready < opt.warm_pool.min_ready) {
    return usage("--warm-max (" + std::to_string(opt.warm_pool.max_ready) +
                 ") must be at least --warm-min (" + std::to_string(opt.warm_pool.min_ready) + ")");
  }
  for (const auto& flag : f.image_flags) {
    const size_t eq = flag.find('=');
    const std::string name = flag.substr(0, eq);
    if (eq == std::string::npos || !schemas::valid_image_name(name) || eq + 1 == flag.size()) {
      return usage("--image " + flag + ": not NAME=DIR with NAME 1-64 of [a-z0-9._-]");
    }
    c.backend_config.qemu.images[name] = flag.substr(eq + 1);
  }
  for (const auto& name : c.memory_images) {
    if (!schemas::valid_image_name(name)) {
      return usage("--memory-images: '" + name + "' is not 1-64 of [a-z0-9._-]");
    }
  }
  if (c.backend != "memory" && !c.memory_images.empty()) {
    return usage(
        "--memory-images is for the memory test double only; qemu images come from "
        "--image-dir, --image and --image-root");
  }
  opt.warm = f.warm == "on";
  opt.warm_pool.max_age = std::chrono::seconds(f.warm_max_age_s);
  opt.warm_pool.template_wait = std::chrono::seconds(f.warm_template_wait_s);
  if (opt.worker_id.empty()) opt.worker_id = default_worker_id();
  c.backend_config.qemu.boot_timeout = std::chrono::milliseconds(f.boot_timeout_ms);
  derive_directories(c);
  if (auto jail = apply_jail(f); !jail) return std::move(jail).error();
  if (auto network = apply_network(f); !network) return std::move(network).error();
  derive_firecracker(c, !f.jail_uids.empty());
  return std::move(f.config);
}

runtime::Result<OpenedBackend> open_backend(const WorkerConfig& config) {
  if (config.backend == "qemu") {
    // Opened as itself, not through make_provider, to ask which images it really loaded.
    auto qemu = runtime::QemuProvider::open(config.backend_config.qemu);
    if (!qemu) return qemu.error();
    auto images = qemu.value()->images();
    return OpenedBackend{std::move(qemu.value()), std::move(images)};
  }
  auto provider = runtime::make_provider(config.backend, config.backend_config);
  if (!provider) return provider.error();
  return OpenedBackend{std::move(provider.value()), config.backend == "memory"
                                                        ? config.memory_images
                                                        : std::vector<std::string>{}};
}

base::Status check_images(const std::vector<std::string>& images,
                          const std::vector<std::string>& warm_images) {
  if (images.size() > kMaxAdvertisedImages) {
    return base::fail(std::to_string(images.size()) + " images; a worker advertises at most " +
                      std::to_string(kMaxAdvertisedImages));
  }
  const auto advertised = images.empty() ? std::vector<std::string>{"default"} : images;
  for (const auto& image : warm_images) {
    if (std::find(advertised.begin(), advertised.end(), image) == advertised.end()) {
      std::string names;
      for (const auto& i : advertised) names += (names.empty() ? "" : ", ") + i;
      return base::fail("--warm-images: this worker has no image '" + image +
                        "' (images: " + names + ")");
    }
  }
  return {};
}

}  // namespace paddock::worker
