// paddock-bench-zmq-floor: the messaging floor under the queue fabric's figure (tools/bench.sh
// (a)).
//
// Three processes pass the messages of Paddock's protocol for each job, with the same frames and
// sockets (ROUTER/DEALER over loopback TCP) and about the same body sizes, but do nothing else:
// no decoding, no validation, no queue, no journal, no slots. A client keeps --outstanding jobs
// in flight (SUBMIT of up to 4096 bodies per turn, one ACCEPTED per SUBMIT), a broker forwards
// each as a JOB to a worker within its credits, the worker answers each with a RESULT and grants
// credits back once per turn, and the broker forwards each RESULT to the client. Its jobs/s is
// what the fabric could reach if Paddock's own code cost nothing; the CPU per job of each process
// is ZeroMQ's share of the fabric's. --batch N puts up to N jobs in one JOB and one worker RESULT
// (as a protocol that batched them would): what batching the worker's side would buy.
//
// Nothing here asserts; it prints figures and, with --json, writes them.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

namespace {

using Clock = std::chrono::steady_clock;

// Body sizes of a `true` job in Paddock's encoding, near enough (the bytes are not read).
constexpr size_t kSubmitBody = 64, kAcceptedPerJob = 12, kJobBody = 96, kResultBody = 160;
constexpr size_t kSubmitPerTurn = 4096;  // paddock-load's batch
const std::string kTag = "PDK1";

enum Cmd : char { kSubmit = 1, kAccepted = 5, kResult = 7, kReady = 10, kCredit = 11, kJob = 14 };

// Sends [rid] tag command body×bodies; each body `size` bytes, or `text` when given.
void send_frames(zmq::socket_t& s, const std::string* rid, Cmd cmd, size_t bodies, size_t size,
                 const std::string& text = "") {
  if (rid) s.send(zmq::buffer(*rid), zmq::send_flags::sndmore);
  s.send(zmq::buffer(kTag), zmq::send_flags::sndmore);
  s.send(zmq::buffer(&cmd, 1), bodies ? zmq::send_flags::sndmore : zmq::send_flags::none);
  const std::string body = text.empty() ? std::string(size, 'x') : text;
  for (size_t i = 0; i < bodies; ++i) {
    s.send(zmq::buffer(body), i + 1 < bodies ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

// Receives one message without blocking: its routing id (ROUTER only), command, body count and
// first body.
bool recv_message(zmq::socket_t& s, bool router, std::string& rid, char& cmd, size_t& bodies,
                  std::string* first = nullptr) {
  zmq::message_t part;
  if (!s.recv(part, zmq::recv_flags::dontwait)) return false;
  std::vector<zmq::message_t> frames;
  frames.push_back(std::move(part));
  while (frames.back().more()) {
    frames.emplace_back();
    (void)s.recv(frames.back());
  }
  size_t i = 0;
  if (router) rid = frames[i++].to_string();
  ++i;  // tag
  cmd = *frames[i++].data<char>();
  bodies = frames.size() - i;
  if (first && bodies > 0) *first = frames[i].to_string();
  return true;
}

double cpu_seconds(const rusage& r) {
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
         r.ru_stime.tv_usec / 1e6;
}

[[noreturn]] void run_broker(const std::string& client_ep, const std::string& worker_ep,
                             size_t batch) {
  zmq::context_t ctx(1);
  zmq::socket_t clients(ctx, zmq::socket_type::router), workers(ctx, zmq::socket_type::router);
  for (auto* s : {&clients, &workers}) {
    s->set(zmq::sockopt::sndhwm, 0);
    s->set(zmq::sockopt::rcvhwm, 0);
  }
  clients.bind(client_ep);
  workers.bind(worker_ep);
  std::deque<std::string> queue_owner;  // one entry per queued job: the client's routing id
  std::string worker_rid, client_rid;
  size_t credits = 0;
  zmq::pollitem_t items[] = {{clients.handle(), 0, ZMQ_POLLIN, 0},
                             {workers.handle(), 0, ZMQ_POLLIN, 0}};
  while (true) {
    zmq::poll(items, 2, std::chrono::milliseconds(-1));
    std::string rid;
    char cmd = 0;
    size_t bodies = 0;
    for (int turn = 0; turn < 256 && recv_message(clients, true, rid, cmd, bodies); ++turn) {
      if (cmd != kSubmit) std::_Exit(0);  // the client's stop
      client_rid = rid;
      for (size_t i = 0; i < bodies; ++i) queue_owner.push_back(rid);
      send_frames(clients, &rid, kAccepted, 1, kAcceptedPerJob * bodies);
    }
    std::string body;
    for (int turn = 0; turn < 256 && recv_message(workers, true, rid, cmd, bodies, &body); ++turn) {
      worker_rid = rid;
      if (cmd == kReady || cmd == kCredit) credits += std::stoul(body);  // the credits granted
      if (cmd == kResult) {
        for (size_t i = 0; i < bodies; ++i)
          send_frames(clients, &client_rid, kResult, 1, kResultBody);
      }
    }
    while (credits > 0 && !queue_owner.empty() && !worker_rid.empty()) {
      const size_t n = std::min({credits, queue_owner.size(), batch});
      send_frames(workers, &worker_rid, kJob, n, kJobBody);
      for (size_t i = 0; i < n; ++i) queue_owner.pop_front();
      credits -= n;
    }
  }
}

[[noreturn]] void run_worker(const std::string& worker_ep, size_t batch) {
  zmq::context_t ctx(1);
  zmq::socket_t broker(ctx, zmq::socket_type::dealer);
  broker.set(zmq::sockopt::sndhwm, 0);
  broker.set(zmq::sockopt::rcvhwm, 0);
  broker.connect(worker_ep);
  send_frames(broker, nullptr, kReady, 1, 0, "64");  // 64 slots, as bench.sh's worker
  zmq::pollitem_t items[] = {{broker.handle(), 0, ZMQ_POLLIN, 0}};
  while (true) {
    zmq::poll(items, 1, std::chrono::milliseconds(-1));
    std::string rid;
    char cmd = 0;
    size_t bodies = 0, done = 0;
    for (int turn = 0; turn < 256 && recv_message(broker, false, rid, cmd, bodies); ++turn) {
      if (cmd != kJob) std::_Exit(0);
      // Each job answered: one RESULT per job, or per message when batching.
      if (batch > 1) {
        send_frames(broker, nullptr, kResult, bodies, kResultBody);
      } else {
        for (size_t i = 0; i < bodies; ++i) send_frames(broker, nullptr, kResult, 1, kResultBody);
      }
      done += bodies;
    }
    if (done > 0) send_frames(broker, nullptr, kCredit, 1, 0, std::to_string(done));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"paddock-bench-zmq-floor: the messaging floor under the queue fabric's jobs/s"};
  size_t jobs = 200000, outstanding = 2000, batch = 1;
  int port = 0;
  std::string json_out;
  app.add_option("-n,--jobs", jobs, "jobs to pass")->capture_default_str();
  app.add_option("-c,--outstanding", outstanding, "jobs in flight")->capture_default_str();
  app.add_option("--batch", batch, "jobs per JOB and per worker RESULT (1: Paddock's protocol)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--port", port, "first of two loopback ports (default: from the pid)");
  app.add_option("--json", json_out, "also write the figures to this file");
  CLI11_PARSE(app, argc, argv);
  if (port == 0) port = 20000 + static_cast<int>(::getpid() % 20000);
  const std::string client_ep = "tcp://127.0.0.1:" + std::to_string(port);
  const std::string worker_ep = "tcp://127.0.0.1:" + std::to_string(port + 1);

  const pid_t broker = ::fork();
  if (broker == 0) run_broker(client_ep, worker_ep, batch);
  const pid_t worker = ::fork();
  if (worker == 0) run_worker(worker_ep, batch);

  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  s.connect(client_ep);
  rusage self0{};
  ::getrusage(RUSAGE_SELF, &self0);
  const auto t0 = Clock::now();
  size_t sent = 0, answered = 0;
  zmq::pollitem_t items[] = {{s.handle(), 0, ZMQ_POLLIN, 0}};
  while (answered < jobs) {
    const size_t room = std::min(outstanding - (sent - answered), jobs - sent);
    if (room > 0) {
      const size_t n = std::min(room, kSubmitPerTurn);
      send_frames(s, nullptr, kSubmit, n, kSubmitBody);
      sent += n;
    }
    zmq::poll(items, 1, std::chrono::milliseconds(-1));
    std::string rid;
    char cmd = 0;
    size_t bodies = 0;
    for (int turn = 0; turn < 1024 && recv_message(s, false, rid, cmd, bodies); ++turn) {
      if (cmd == kResult) ++answered;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  rusage self1{};
  ::getrusage(RUSAGE_SELF, &self1);
  send_frames(s, nullptr, kJob, 0, 0);  // not a SUBMIT: the broker stops
  ::kill(worker, SIGTERM);
  rusage broker_ru{}, worker_ru{};
  int status = 0;
  ::wait4(broker, &status, 0, &broker_ru);
  ::wait4(worker, &status, 0, &worker_ru);
  // The children's CPU covers their whole life (the worker's too: killed at the end, it was idle).
  const double us = 1e6 / static_cast<double>(jobs);
  nlohmann::json out = {{"jobs", jobs},
                        {"outstanding", outstanding},
                        {"batch", batch},
                        {"jobs_per_s", static_cast<double>(jobs) / seconds},
                        {"cpu_us_per_job",
                         {{"client", (cpu_seconds(self1) - cpu_seconds(self0)) * us},
                          {"broker", cpu_seconds(broker_ru) * us},
                          {"worker", cpu_seconds(worker_ru) * us}}}};
  std::printf(
      "messaging floor (batch %zu): %.0f jobs/s; CPU us/job client %.1f, broker %.1f, "
      "worker %.1f\n",
      batch, out["jobs_per_s"].get<double>(), out["cpu_us_per_job"]["client"].get<double>(),
      out["cpu_us_per_job"]["broker"].get<double>(), out["cpu_us_per_job"]["worker"].get<double>());
  if (!json_out.empty()) std::ofstream(json_out) << out.dump(2) << "\n";
  return 0;
}
