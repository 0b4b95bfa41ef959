// paddock-worker's command line as a WorkerConfig (worker/src/worker_config.h): defaults, derived
// values, and a clear refusal (exit 2, naming the flag) for each bad value.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "worker_config.h"

using namespace paddock;

namespace {

daemon::Parsed<worker::WorkerConfig> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "paddock-worker");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return worker::parse_worker_args(static_cast<int>(argv.size()), argv.data());
}

// The refusal's message; fails the test if the command line was accepted or not refused with 2.
std::string refusal(std::vector<std::string> args) {
  auto parsed = parse(std::move(args));
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().exit_code == 2);
  return parsed.error().message;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("worker config: the backend defaults to qemu, never the memory test double") {
  auto parsed = parse({"--broker", "tcp://127.0.0.1:5556"});
  REQUIRE(parsed.ok());
  CHECK(parsed.value().backend == "qemu");
  CHECK(parsed.value().options.brokers == std::vector<std::string>{"tcp://127.0.0.1:5556"});
  CHECK(parsed.value().options.slots == 4);
  CHECK(parsed.value().options.warm);
}

TEST_CASE(
    "worker config: derived values (worker id, directories, network prefix, jail, broker "
    "addresses denied)") {
  auto parsed = parse({"--broker", "tcp://127.0.0.1:5556", "--worker-id", "w/1"});
  REQUIRE(parsed.ok());
  const auto& c = parsed.value();
  const auto& qemu = c.backend_config.qemu;
  CHECK(contains(qemu.run_dir, "/paddock/w_1"));
  CHECK(contains(qemu.snapshot_dir, "/paddock-snapshots/w_1"));
  REQUIRE(qemu.jail.has_value());
  REQUIRE(qemu.network.has_value());
  CHECK(qemu.network->prefix == worker::derived_net_prefix("w/1"));
  CHECK(qemu.network->prefix.size() == 6);
  const auto& deny = qemu.network->policy.deny;
  CHECK(std::find(deny.begin(), deny.end(), "127.0.0.1/32") != deny.end());
  CHECK(c.backend_config.firecracker.run_dir == qemu.run_dir + "/firecracker");
  CHECK(c.backend_config.firecracker.image_dir == qemu.image_dir);

  auto off = parse({"--broker", "tcp://127.0.0.1:5556", "--jail", "off", "--network", "off"});
  REQUIRE(off.ok());
  CHECK_FALSE(off.value().backend_config.qemu.jail.has_value());
  CHECK_FALSE(off.value().backend_config.qemu.network.has_value());
}

TEST_CASE("worker config: options that are given arrive in the config") {
  auto parsed = parse({"--broker",          "tcp://a:1",
                       "--broker",          "ipc:///tmp/b",
                       "--slots",           "9",
                       "--backend",         "memory",
                       "--memory-images",   "default,python",
                       "--image",           "py=/images/py",
                       "--jail-uids",       "2000-2099",
                       "--egress-allow",    "10.0.0.0/8,tcp,80,8000-8080",
                       "--warm-max-age-s",  "7",
                       "--boot-timeout-ms", "1234",
                       "--ready-file",      "/tmp/r.json",
                       "--log-level",       "debug"});
  REQUIRE(parsed.ok());
  const auto& c = parsed.value();
  CHECK(c.backend == "memory");
  CHECK(c.memory_images == std::vector<std::string>{"default", "python"});
  CHECK(c.options.brokers.size() == 2);
  CHECK(c.options.slots == 9);
  CHECK(c.options.warm_pool.max_age == std::chrono::seconds(7));
  CHECK(c.backend_config.qemu.images.at("py") == "/images/py");
  CHECK(c.backend_config.qemu.boot_timeout == std::chrono::milliseconds(1234));
  REQUIRE(c.backend_config.qemu.jail.has_value());
  CHECK(c.backend_config.qemu.jail->uid_base == 2000);
  CHECK(c.backend_config.qemu.jail->uid_count == 100);
  REQUIRE(c.backend_config.firecracker.jail.has_value());
  CHECK(c.backend_config.firecracker.jail->uid_base == 2000);
  const auto& allow = c.backend_config.qemu.network->policy.allow;
  REQUIRE(allow.size() == 1);
  CHECK(allow[0].cidr == "10.0.0.0/8");
  CHECK(allow[0].protocol == "tcp");
  REQUIRE(allow[0].ports.size() == 2);
  CHECK(allow[0].ports[1].first == 8000);
  CHECK(allow[0].ports[1].last == 8080);
  CHECK(c.ready_file == "/tmp/r.json");
  CHECK(c.log_level == "debug");
}

TEST_CASE("worker config: bad values are refused with exit 2 and a message naming the flag") {
  const std::string b = "tcp://127.0.0.1:5556";
  CHECK(contains(refusal({}), "--broker is required"));
  CHECK(contains(refusal({"--broker", b, "--backend", "vmware"}), "--backend"));
  CHECK(contains(refusal({"--broker", b, "--slots", "0"}), "--slots"));
  CHECK(contains(refusal({"--broker", b, "--warm-min", "3", "--warm-max", "2"}),
                 "--warm-max (2) must be at least --warm-min (3)"));
  CHECK(contains(refusal({"--broker", b, "--image", "Bad Name=/x"}), "--image Bad Name=/x"));
  CHECK(contains(refusal({"--broker", b, "--image", "py="}), "not NAME=DIR"));
  CHECK(contains(refusal({"--broker", b, "--backend", "memory", "--memory-images", "a,B!"}),
                 "--memory-images: 'B!'"));
  CHECK(contains(refusal({"--broker", b, "--memory-images", "python"}),
                 "--memory-images is for the memory test double only"));
  CHECK(contains(refusal({"--broker", b, "--jail-uids", "5-1"}), "--jail-uids 5-1"));
  CHECK(contains(refusal({"--broker", b, "--jail-uids", "0-10"}), "0 < FIRST <= LAST"));
  CHECK(contains(refusal({"--broker", b, "--egress-allow", "10.0.0.0/8,tcp,http"}),
                 "'http' is not a port"));
  CHECK(contains(refusal({"--broker", b, "--egress-allow", "10.0.0.0/8,tcp,70000"}),
                 "--egress-allow"));
  CHECK(contains(refusal({"--broker", b, "--curve-key", "/nonexistent/w.key"}), "broker"));
  CHECK(contains(refusal({"--broker", b, "--log-level", "loud"}), "--log-level"));
  CHECK(contains(refusal({"--broker", b, "--no-such-flag"}), "--no-such-flag"));
}

TEST_CASE("worker config: --help is not an error (exit 0) and lists the options") {
  auto parsed = parse({"--help"});
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().exit_code == 0);
  CHECK(contains(parsed.error().message, "--backend"));
  CHECK(contains(parsed.error().message, "--memory-images"));
}

TEST_CASE(
    "worker config: a worker advertises at most kMaxAdvertisedImages images, and its warm "
    "images must be among them") {
  static_assert(worker::kMaxAdvertisedImages == 63);
  std::vector<std::string> images;
  for (size_t i = 0; i < worker::kMaxAdvertisedImages; ++i)
    images.push_back("i" + std::to_string(i));
  CHECK(worker::check_images(images, {}).ok());
  images.push_back("one-too-many");
  const auto too_many = worker::check_images(images, {});
  REQUIRE_FALSE(too_many.ok());
  CHECK(contains(too_many.error().message, "64 images; a worker advertises at most 63"));
  CHECK(worker::check_images({}, {"default"}).ok());
  const auto missing = worker::check_images({"default", "python"}, {"rust"});
  REQUIRE_FALSE(missing.ok());
  CHECK(contains(missing.error().message, "no image 'rust' (images: default, python)"));
}
