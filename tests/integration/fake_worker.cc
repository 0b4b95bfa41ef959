#include "fake_worker.h"

#include <stdexcept>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/wire/zmq_frames.h"

namespace paddock::testing {

namespace sc = paddock::schemas;
using Clock = std::chrono::steady_clock;

FakeWorker::FakeWorker(const std::string& endpoint, std::string worker_id, uint32_t slots)
    : endpoint_(endpoint), worker_id_(std::move(worker_id)) {
  open(slots);
}

void FakeWorker::open(uint32_t slots) {
  socket_.emplace(context_, zmq::socket_type::dealer);
  wire::apply_common_options(*socket_);
  socket_->connect(endpoint_);
  sc::Ready ready;
  ready.worker_id = worker_id_;
  ready.slots = slots;
  ready.capabilities = {"backend:fake"};
  send(sc::make_message(sc::Command::kReady, {sc::encode(ready)}));
}

void FakeWorker::reconnect(uint32_t slots) {
  socket_.reset();
  open(slots);
}

void FakeWorker::send(std::vector<std::string> parts) {
  // A blocking send: the pipe to a broker on loopback is never full in these tests.
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto flags = i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (!socket_->send(zmq::buffer(parts[i]), flags)) throw std::runtime_error("fake worker: send");
  }
}

void FakeWorker::heartbeat() { send(sc::make_message(sc::Command::kHeartbeat)); }

void FakeWorker::credit(uint32_t credits) {
  send(sc::make_message(sc::Command::kCredit, {sc::encode(sc::Credit{credits})}));
}

void FakeWorker::result(const std::string& job_id, uint32_t attempt,
                        const std::string& stdout_data) {
  sc::JobResult r;
  r.job_id = job_id;
  r.stdout_data = stdout_data;
  r.worker_id = worker_id_;
  r.attempt = attempt;
  r.backend = "fake";
  send(sc::make_message(sc::Command::kResult, {sc::encode(r)}));
}

void FakeWorker::output(std::string body) {
  send(sc::make_message(sc::Command::kOutput, {std::move(body)}));
}

void FakeWorker::read_all() {
  std::vector<zmq::message_t> frames;
  while (wire::recv_message(*socket_, frames)) {
    auto parts = wire::views(frames);
    auto env = sc::parse_envelope(parts, sc::Direction::kBrokerToWorker);
    if (!env) throw std::runtime_error("fake worker: broker sent " + env.error().message());
    switch (env->command) {
      case sc::Command::kJob: {
        auto d = sc::decode_job_dispatch(env->bodies[0]);
        if (!d) throw std::runtime_error("fake worker: bad JOB: " + d.error().message());
        jobs.push_back(std::move(d.value()));
        break;
      }
      case sc::Command::kCancel: {
        auto ref = sc::decode_job_ref(env->bodies[0]);
        if (!ref) throw std::runtime_error("fake worker: bad CANCEL: " + ref.error().message());
        cancels.push_back(ref->job_id);
        break;
      }
      case sc::Command::kDisconnect:
        ++disconnects;
        break;
      default:
        break;  // HEARTBEAT, DRAINED
    }
  }
}

bool FakeWorker::pump_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                            bool heartbeats, std::chrono::milliseconds period) {
  const auto deadline = Clock::now() + timeout;
  auto next_beat = Clock::now();
  while (true) {
    read_all();
    if (done()) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    if (heartbeats && now >= next_beat) {
      heartbeat();
      next_beat = now + period;
    }
    auto wake = heartbeats ? std::min(deadline, next_beat) : deadline;
    zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1,
              std::max(std::chrono::milliseconds(0),
                       std::chrono::duration_cast<std::chrono::milliseconds>(wake - now)));
  }
}

}  // namespace paddock::testing
