// A submitter that never reads (issue 20, item 10): the answers the broker holds for it are
// bounded in bytes, the rest are dropped and counted, and with a journal every one of them is
// still there for FETCH. Real broker and worker processes (the memory backend, a TEST DOUBLE that
// executes nothing).
#include <doctest/doctest.h>

#include <zmq.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dashboard_probe.h"
#include "harness.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/wire/zmq_frames.h"

using namespace paddock;
using namespace paddock::testing;
using namespace std::chrono_literals;
namespace sc = paddock::schemas;

TEST_CASE(
    "a submitter that never reads: answers held for it stay within the byte bound, the rest wait "
    "in the journal for FETCH") {
  TempDir dir;
  auto broker = start_broker(
      dir, {"--journal", dir.path() + "/journal.db", "--metrics-address", "127.0.0.1:0",
            "--max-undelivered-mib-per-client", "1", "--client-send-hwm", "4"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 4);

  // 400 answers of 64 KiB (25 MiB) to a socket that takes one message and small TCP buffers:
  // far more than the broker may hold for it (1 MiB) plus what the pipes and the kernel hold.
  constexpr int kJobs = 400;
  std::vector<std::string> bodies, ids;
  for (int i = 0; i < kJobs; ++i) {
    auto j = job("deaf-" + std::to_string(i), {"output", "65536"});
    j.output_cap = 65536;
    ids.push_back(j.job_id);
    bodies.push_back(sc::encode(j));
  }
  zmq::context_t ctx;
  zmq::socket_t deaf(ctx, zmq::socket_type::dealer);
  wire::apply_common_options(deaf);
  deaf.set(zmq::sockopt::rcvhwm, 1);
  deaf.set(zmq::sockopt::rcvbuf, 4096);
  deaf.connect(broker.client_endpoint);
  for (size_t i = 0; i < bodies.size(); i += 100) {
    std::vector<std::string> batch(bodies.begin() + i,
                                   bodies.begin() + std::min(bodies.size(), i + 100));
    REQUIRE(wire::send_message(deaf, sc::make_message(sc::Command::kSubmit, batch)) ==
            wire::SendStatus::kOk);
  }

  // Every job runs; what the broker could not hand over is counted, not held.
  auto overview = http_get_until(
      broker.metrics_address, "/api/v1/overview",
      [](const nlohmann::json& j) {
        return j["totals"]["completed"].get<int>() == kJobs &&
               j["totals"]["undeliverable"].get<int>() > 0 && j["queue"]["held"].get<int>() == 0;
      },
      120s);
  REQUIRE(overview.is_object());
  CHECK(overview["totals"]["completed"].get<int>() == kJobs);
  const int dropped = overview["totals"]["undeliverable"].get<int>();
  MESSAGE(dropped << " of " << kJobs
                  << " answers of 64 KiB dropped for the client that never read");
  // At most 1 MiB waits in the broker's queue for it: 16 answers of 64 KiB (and their frames), plus
  // what fits ZeroMQ's pipe (4 messages) and the kernel's buffers; everything else was dropped.
  CHECK(dropped > 0);
  CHECK(slurp(broker.process->log() + ".err").find("client not reading") != std::string::npos);

  // The journal kept every answer: a reader gets all of them, asking for a few at a time (a
  // FETCH burst is bounded like any other answers: 10 of 64 KiB stay under the 1 MiB).
  client::Client reader(broker.client_endpoint);
  for (size_t i = 0; i < ids.size(); i += 10) {
    std::vector<std::string> chunk(ids.begin() + i, ids.begin() + std::min(ids.size(), i + 10));
    for (const auto& id : chunk) reader.fetch(id);
    auto answers = collect(reader, chunk, 30s);
    REQUIRE(answers.all_exactly_once(chunk));
    for (const auto& id : chunk) {
      const auto& ev = answers.finals.at(id).front();
      REQUIRE(ev.kind == client::Event::Kind::kResult);
      CHECK(ev.result.stdout_data.size() == 65536);
    }
  }
  worker->signal(SIGTERM);
  CHECK(worker->wait_for(30s) == std::optional<int>(0));
}
