// paddock-worker: the worker daemon. A thin shell over paddock::worker::Worker: the command line
// becomes a WorkerConfig (worker_config.h), the config a provider and a Worker.
#include <spdlog/spdlog.h>

#include "paddock/daemon/daemon.h"
#include "worker_config.h"

using namespace paddock;

int main(int argc, char** argv) {
  daemon::install_stop_signals();  // first: a signal while starting is kept, not fatal
  auto parsed = worker::parse_worker_args(argc, argv);
  if (!parsed.ok()) return daemon::report(parsed.error());
  worker::WorkerConfig config = std::move(parsed).value();
  daemon::set_up_logger(config.log_level, "worker " + config.options.worker_id);

  auto backend = worker::open_backend(config);
  if (!backend) {
    spdlog::error("{} (code {}: {})", backend.error().message(), backend.error().code(),
                  backend.error().name());
    return daemon::kExitUsage;
  }
  if (config.backend == "qemu" && !config.backend_config.qemu.jail) {
    spdlog::warn(
        "--jail off: QEMU runs unjailed, as this worker's user, in its namespaces; a guest that "
        "escapes into QEMU owns the worker. For development only");
  }
  if (config.backend == "memory") {
    spdlog::warn(
        "backend 'memory' is the in-memory test double: jobs are interpreted as scripts "
        "and nothing is executed in a VM");
  }
  config.options.images = backend.value().images;
  if (auto checked = worker::check_images(config.options.images, config.options.warm_images);
      !checked) {
    spdlog::error("{}", checked.error().message);
    return daemon::kExitUsage;
  }
  auto opened = worker::Worker::open(config.options, std::move(backend.value().provider));
  if (!opened) {
    spdlog::error("{}", opened.error().message);
    return 1;
  }
  worker::Worker& worker = **opened;
  daemon::StopTarget drain([](void* w) { static_cast<worker::Worker*>(w)->request_drain(); },
                           &worker);
  if (!config.ready_file.empty()) {
    nlohmann::json ready = nlohmann::json::object();
    if (!worker.metrics_address().empty()) ready["metrics"] = worker.metrics_address();
    if (auto written = daemon::write_ready_file(config.ready_file, std::move(ready)); !written) {
      spdlog::error("{}", written.error().message);
      return 1;
    }
  }
  return worker.run();
}
