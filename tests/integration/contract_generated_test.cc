// The generated contract test (issue 20): requests built from PROTOCOL.md's JobRequest limits, at
// every limit, one past it and in random combinations, sent as raw msgpack through a real broker
// and worker (the memory backend, a TEST DOUBLE that executes nothing). What it checks is the
// queue's first promise, whatever the request:
//   - every SUBMIT body gets exactly one of ACCEPTED, REJECTED or ERROR; a body within every limit
//     is ACCEPTED, a body past one is ERROR 100 InvalidRequest;
//   - every accepted job gets exactly one final answer (RESULT or ERROR), within a bound;
//   - at the end the broker holds no job.
// The cases are seeded: PADDOCK_CONTRACT_SEED picks another run (the default is fixed, so CI runs
// the same cases every time) and PADDOCK_CONTRACT_CASES how many random combinations (600 by
// default, for the suite's time; `PADDOCK_CONTRACT_CASES=20000` for a longer search).
#include <doctest/doctest.h>

#include <zmq.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "contract_cases.h"
#include "dashboard_probe.h"
#include "harness.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"
#include "paddock/wire/zmq_frames.h"

using namespace paddock;
using namespace paddock::testing;
using namespace std::chrono_literals;
using nlohmann::json;
namespace sc = paddock::schemas;
namespace lim = paddock::schemas::limits;

namespace {

using namespace paddock::testing::contract;

// What one job_id (or one body) got, in order.
struct Seen {
  std::vector<std::string> events;  // "accepted", "rejected", "error <code>", "result"
};

}  // namespace

TEST_CASE(
    "contract: generated requests at, past and around every limit each get exactly one answer, and "
    "the broker holds none at the end") {
  const uint64_t seed = std::getenv("PADDOCK_CONTRACT_SEED")
                            ? std::strtoull(std::getenv("PADDOCK_CONTRACT_SEED"), nullptr, 10)
                            : 20261207;
  const size_t random_cases =
      std::getenv("PADDOCK_CONTRACT_CASES")
          ? std::strtoull(std::getenv("PADDOCK_CONTRACT_CASES"), nullptr, 10)
          : 600;  // ≈ 40 ms each under ASan; the boundary cases (≈ 10 s) always run
  MESSAGE("contract seed " << seed << ", " << random_cases << " random combinations");
  const auto cases = generate(seed, random_cases);

  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0", "--max-queue", "1000000"});
  auto worker = start_worker(dir, broker.worker_endpoint, "contract", 8);

  zmq::context_t ctx;
  zmq::socket_t sock(ctx, zmq::socket_type::dealer);
  wire::apply_common_options(sock);
  sock.connect(broker.client_endpoint);

  // Answers by job_id; a submit-time ERROR that names no job_id is filed under "#<case>", found
  // from its body index in the SUBMIT being answered (one SUBMIT is in flight at a time).
  std::map<std::string, Seen> seen;
  std::vector<std::string> protocol_problems;
  std::vector<size_t> batch;       // case numbers of the SUBMIT in flight, in body order
  std::vector<size_t> replied_at;  // body indices of its submit-time replies, in arrival order
  std::map<std::string, size_t> batch_index;  // job_id -> body index, for the SUBMIT in flight
  size_t unattributed = 0;
  auto note_reply = [&](const std::string& job_id, std::optional<uint32_t> index) {
    if (index) {
      replied_at.push_back(*index);
    } else if (auto it = batch_index.find(job_id); it != batch_index.end()) {
      replied_at.push_back(it->second);
    }
  };
  auto pump = [&](std::chrono::milliseconds wait) {
    zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) <= 0) return;
    std::vector<zmq::message_t> frames;
    while (wire::recv_message(sock, frames)) {
      const auto v = wire::views(frames);
      if (v.size() < 2 || v[1].size() != 1) {
        protocol_problems.push_back("malformed reply");
        continue;
      }
      const auto cmd = static_cast<sc::Command>(static_cast<uint8_t>(v[1][0]));
      for (size_t b = 2; b < v.size(); ++b) {
        if (cmd == sc::Command::kAccepted) {
          auto a = sc::decode_accepted(v[b]);
          if (!a) {
            protocol_problems.push_back("ACCEPTED does not decode");
            continue;
          }
          for (const auto& id : a->job_ids) {
            seen[id].events.push_back("accepted");
            note_reply(id, std::nullopt);
          }
        } else if (cmd == sc::Command::kRejected || cmd == sc::Command::kError) {
          auto e = sc::decode_job_error(v[b]);
          if (!e) {
            protocol_problems.push_back("ERROR does not decode");
            continue;
          }
          const std::string what =
              cmd == sc::Command::kRejected ? "rejected" : "error " + std::to_string(e->code);
          if (!e->job_id.empty()) {
            seen[e->job_id].events.push_back(what);
            if (cmd == sc::Command::kRejected || e->code == 100) note_reply(e->job_id, e->index);
          } else if (e->index && *e->index < batch.size()) {
            // PROTOCOL.md: an ERROR for one body of a SUBMIT says which body (its index).
            ++unattributed;
            seen["#" + std::to_string(batch[*e->index])].events.push_back(what);
            note_reply("", e->index);
          } else {
            protocol_problems.push_back("an ERROR with neither job_id nor a body index");
          }
        } else if (cmd == sc::Command::kResult) {
          auto r = sc::decode_job_result(v[b]);
          if (!r) {
            protocol_problems.push_back("RESULT does not decode");
            continue;
          }
          seen[r->job_id].events.push_back("result");
        } else {
          protocol_problems.push_back("unexpected command " + std::to_string(int(v[1][0])));
        }
      }
    }
  };
  // Everything a case got: under its job_id (when it could be read) and under its number.
  auto events_of = [&](size_t n) {
    std::vector<std::string> ev;
    if (!cases[n].job_id.empty()) {
      if (auto it = seen.find(cases[n].job_id); it != seen.end()) ev = it->second.events;
    }
    if (auto it = seen.find("#" + std::to_string(n)); it != seen.end()) {
      ev.insert(ev.end(), it->second.events.begin(), it->second.events.end());
    }
    return ev;
  };

  // Batches of 1..16 bodies, kept under one message's frame budget; each SUBMIT's replies are
  // awaited before the next, so a reply's body index names one body.
  Rng rng(seed ^ 0x9e3779b97f4a7c15ULL);
  size_t i = 0, out_of_order = 0;
  while (i < cases.size()) {
    batch.clear();
    batch_index.clear();
    replied_at.clear();
    std::vector<std::string> bodies;
    size_t bytes = 0;
    const size_t want = 1 + rng() % 16;
    while (i < cases.size() && bodies.size() < want &&
           (bodies.empty() || bytes + cases[i].body.size() < (12u << 20))) {
      bytes += cases[i].body.size();
      batch_index.emplace(cases[i].job_id, batch.size());
      batch.push_back(i);
      bodies.push_back(cases[i++].body);
    }
    REQUIRE(wire::send_message(sock, sc::make_message(sc::Command::kSubmit, bodies)) ==
            wire::SendStatus::kOk);
    const auto until = std::chrono::steady_clock::now() + 60s;
    while (replied_at.size() < batch.size() && std::chrono::steady_clock::now() < until) {
      pump(20ms);
    }
    CHECK_MESSAGE(replied_at.size() == batch.size(),
                  "a SUBMIT of " << batch.size() << " bodies got " << replied_at.size()
                                 << " submit-time replies");
    // In body order (PROTOCOL.md, SUBMIT).
    if (!std::is_sorted(replied_at.begin(), replied_at.end())) ++out_of_order;
  }
  batch.clear();
  batch_index.clear();

  // Every accepted job finished; a bound for the whole run.
  auto done = [&] {
    for (size_t n = 0; n < cases.size(); ++n) {
      const auto ev = events_of(n);
      if (ev.empty() || (ev.front() == "accepted" && ev.size() < 2)) return false;
    }
    return true;
  };
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (!done() && std::chrono::steady_clock::now() < deadline) pump(100ms);
  for (int k = 0; k < 5; ++k) pump(100ms);  // late duplicates would show here

  CHECK(protocol_problems.empty());
  CHECK(out_of_order == 0);
  size_t accepted = 0, refused = 0, mismatched = 0;
  for (size_t n = 0; n < cases.size(); ++n) {
    const auto& c = cases[n];
    CAPTURE(c.job_id);
    CAPTURE(c.why);
    const auto ev = events_of(n);
    std::string all;
    for (const auto& e : ev) all += e + "; ";
    CAPTURE(all);
    CHECK_MESSAGE(!ev.empty(), "no answer at all");
    if (ev.empty()) continue;
    if (ev.front() == "accepted") {
      ++accepted;
      // Exactly one final answer, never a submit-time refusal after ACCEPTED.
      CHECK(ev.size() == 2);
      CHECK((ev.back() == "result" || ev.back().rfind("error ", 0) == 0));
      CHECK(ev.back() != "error 100");
    } else {
      ++refused;
      CHECK(ev.size() == 1);
    }
    // Within every limit: ACCEPTED; past one: ERROR 100 (REJECTED only if the queue were full).
    const bool got_valid = ev.front() == "accepted";
    if (got_valid != c.valid) ++mismatched;
    CHECK_MESSAGE(got_valid == c.valid,
                  (c.valid ? "a valid request was refused: " : "an invalid request was accepted: ")
                      << c.why);
    if (!c.valid) CHECK(ev.front() == "error 100");
  }
  // An echoed job_id is one a strict msgpack decoder takes: never invalid UTF-8.
  CHECK(seen.count("\xc3\x28") == 0);
  MESSAGE(cases.size() << " bodies: " << accepted << " accepted and answered once, " << refused
                       << " refused with ERROR 100 (" << unattributed
                       << " of them named by body index only); " << mismatched << " mismatched");
  // The broker holds nothing once every answer is out.
  auto overview = http_get_until(broker.metrics_address, "/api/v1/overview",
                                 [](const json& j) { return j["queue"]["held"].get<int>() == 0; });
  REQUIRE(overview.is_object());
  CHECK(overview["queue"]["held"].get<int>() == 0);
  worker->signal(SIGTERM);
  CHECK(worker->wait_for(30s) == std::optional<int>(0));
}
