// paddock-broker's command line as a BrokerConfig (broker/src/broker_config.h): units converted,
// the journal path derived, and a clear refusal (exit 2, naming the flag) for each bad value.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "broker_config.h"

using namespace paddock;

namespace {

daemon::Parsed<broker::BrokerConfig> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "paddock-broker");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return broker::parse_broker_args(static_cast<int>(argv.size()), argv.data());
}

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

TEST_CASE("broker config: units are converted and the journal goes in the state directory") {
  auto parsed = parse({"--state-dir", "/srv/pb", "--result-ttl-s", "60",
                       "--max-undelivered-mib-per-client", "3", "--max-undelivered-mib", "5",
                       "--ready-file", "/tmp/b.json", "--log-level", "warn"});
  REQUIRE(parsed.ok());
  const auto& c = parsed.value();
  CHECK(c.state_dir == "/srv/pb");
  CHECK(c.options.journal_path == "/srv/pb/journal.db");
  CHECK(c.options.result_ttl_ms == 60'000);
  CHECK(c.options.max_undelivered_bytes_per_client == 3u << 20);
  CHECK(c.options.max_undelivered_bytes == 5u << 20);
  CHECK(c.ready_file == "/tmp/b.json");
  CHECK(c.log_level == "warn");
}

TEST_CASE("broker config: --journal names its file, --no-journal and --store keep none") {
  auto journal = parse({"--journal", "/tmp/j.db"});
  REQUIRE(journal.ok());
  CHECK(journal.value().options.journal_path == "/tmp/j.db");
  CHECK(journal.value().state_dir.empty());
  auto none = parse({"--no-journal"});
  REQUIRE(none.ok());
  CHECK(none.value().options.journal_path.empty());
  CHECK(none.value().state_dir.empty());
  auto store = parse({"--store", "postgresql://u@h/db"});
  REQUIRE(store.ok());
  CHECK(store.value().options.journal_path.empty());
  CHECK(store.value().options.store_url == "postgresql://u@h/db");
}

TEST_CASE("broker config: bad values are refused with exit 2 and a message naming the flag") {
  CHECK(contains(refusal({"--heartbeat-ms", "5"}), "--heartbeat-ms"));
  CHECK(contains(refusal({"--max-attempts", "0"}), "--max-attempts"));
  CHECK(contains(refusal({"--max-queue", "0"}), "--max-queue"));
  CHECK(contains(refusal({"--lease-ms", "10"}), "--lease-ms"));
  CHECK(contains(refusal({"--no-journal", "--journal", "/tmp/j.db"}), "excludes"));
  CHECK(contains(refusal({"--store", "postgresql://h/db", "--state-dir", "/tmp/s"}), "excludes"));
  CHECK(contains(refusal({"--client-allow", "/tmp/clients.allow"}),
                 "--client-allow and --worker-allow need --curve-secret-key"));
  CHECK(contains(refusal({"--dashboard-token-file", "/tmp/token"}),
                 "--dashboard-token-file needs --metrics-address"));
  CHECK(contains(refusal({"--log-level", "loud"}), "--log-level"));
  CHECK(contains(refusal({"--no-such-flag"}), "--no-such-flag"));
}

TEST_CASE("broker config: --help is not an error (exit 0) and lists the options") {
  auto parsed = parse({"--help"});
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().exit_code == 0);
  CHECK(contains(parsed.error().message, "--state-dir"));
}

TEST_CASE(
    "broker config: make_state_dir creates a missing state directory 0700, and says why "
    "it cannot") {
  const auto base = std::filesystem::temp_directory_path() /
                    ("paddock-config-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  auto parsed = parse({"--state-dir", (base / "state").string()});
  REQUIRE(parsed.ok());
  CHECK(broker::make_state_dir(parsed.value()).ok());
  CHECK((std::filesystem::status(base / "state").permissions() & std::filesystem::perms::all) ==
        std::filesystem::perms::owner_all);
  { std::ofstream(base / "file") << "x"; }
  auto blocked = parse({"--state-dir", (base / "file" / "state").string()});
  REQUIRE(blocked.ok());
  const auto made = broker::make_state_dir(blocked.value());
  REQUIRE_FALSE(made.ok());
  CHECK(contains(made.error().message, "--state-dir " + (base / "file" / "state").string()));
  std::filesystem::remove_all(base);
}
