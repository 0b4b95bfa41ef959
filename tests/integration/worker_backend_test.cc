// The worker's backend default (issue 22, item 5): a worker started without --backend is the real
// qemu backend, never silently the in-memory test double that executes nothing. Here no guest
// image is given, so that worker must refuse to start, saying it is the qemu backend; with
// --backend memory named, the same command line starts (and warns that it is the test double).
#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

#include "harness.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

std::vector<std::string> worker_args(const Broker& broker, const TempDir& dir) {
  return {"--broker",   broker.worker_endpoint, "--worker-id",
          "no-backend", "--ready-file",         dir.path() + "/worker.json"};
}

}  // namespace

TEST_CASE(
    "worker: without --backend it is the qemu backend (here: refuses to start without an "
    "image), never the memory test double") {
  TempDir dir;
  auto broker = start_broker(dir);
  Process worker(PADDOCK_WORKER_BIN, worker_args(broker, dir), dir.path() + "/worker.log");
  const auto code = worker.wait_for(30s);
  const std::string err = slurp(worker.log() + ".err");
  REQUIRE_MESSAGE(code.has_value(), "the worker kept running; its log: " << err);
  CHECK(*code == 2);
  CHECK_MESSAGE(err.find("the qemu backend needs a guest image directory") != std::string::npos,
                err);
  CHECK_MESSAGE(err.find("test double") == std::string::npos, err);
  CHECK_FALSE(std::filesystem::exists(dir.path() + "/worker.json"));
}

TEST_CASE("worker: --backend memory, named, starts the test double and says so") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto args = worker_args(broker, dir);
  args.insert(args.end(), {"--backend", "memory"});
  Process worker(PADDOCK_WORKER_BIN, args, dir.path() + "/worker.log");
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!std::filesystem::exists(dir.path() + "/worker.json") && worker.running() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  const std::string err = slurp(worker.log() + ".err");
  REQUIRE_MESSAGE(std::filesystem::exists(dir.path() + "/worker.json"), err);
  CHECK_MESSAGE(err.find("backend 'memory' is the in-memory test double") != std::string::npos,
                err);
}
