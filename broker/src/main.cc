// paddock-broker: the broker daemon. A thin shell over paddock::broker::Broker: the command line
// becomes a BrokerConfig (broker_config.h), the config a Broker.
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>

#include "broker_config.h"
#include "paddock/daemon/daemon.h"

using namespace paddock;

namespace {
// SIGHUP: the broker reads its --tenants file again (Broker::reload() only sets an atomic flag).
std::atomic<broker::Broker*> g_broker{nullptr};
extern "C" void on_reload_signal(int) {
  if (broker::Broker* b = g_broker.load()) b->reload();
}
}  // namespace

int main(int argc, char** argv) {
  daemon::install_stop_signals();  // first: a signal while starting is kept, not fatal
  std::signal(SIGHUP, SIG_IGN);    // until the broker exists (it reads its files at start anyway)
  auto parsed = broker::parse_broker_args(argc, argv);
  if (!parsed.ok()) return daemon::report(parsed.error());
  broker::BrokerConfig config = std::move(parsed).value();
  if (auto made = broker::make_state_dir(config); !made) {
    return daemon::report({daemon::kExitUsage, made.error().message});
  }
  daemon::set_up_logger(config.log_level, "broker");
  if (auto loaded = broker::load_secrets(config); !loaded) {
    spdlog::error("{}", loaded.error().message);
    return 1;
  }
  const auto& opt = config.options;
  if (!opt.store_url.empty()) {
    // The store logs where it is (without a password) once connected.
  } else if (opt.journal_path.empty()) {
    spdlog::warn(
        "no journal (--no-journal): jobs are held in memory only, and a restart loses every job "
        "not yet answered");
  } else {
    spdlog::info("journal {}", opt.journal_path);
  }
  auto opened = broker::Broker::open(opt);
  if (!opened) {
    spdlog::error("{}", opened.error().message);
    return 1;
  }
  broker::Broker& broker = **opened;
  daemon::StopTarget stop([](void* b) { static_cast<broker::Broker*>(b)->stop(); }, &broker);
  g_broker.store(&broker);
  std::signal(SIGHUP, on_reload_signal);
  if (!config.ready_file.empty()) {
    nlohmann::json ready = {{"client", broker.client_endpoint()},
                            {"worker", broker.worker_endpoint()}};
    if (!broker.metrics_address().empty()) ready["metrics"] = broker.metrics_address();
    if (!broker.curve_public_key().empty()) ready["curve_public_key"] = broker.curve_public_key();
    if (auto written = daemon::write_ready_file(config.ready_file, std::move(ready)); !written) {
      spdlog::error("{}", written.error().message);
      return 1;
    }
  }
  const int code = broker.run().journal_failed ? 1 : 0;
  g_broker.store(nullptr);
  return code;
}
