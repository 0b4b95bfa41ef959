#include "paddock/client/client.h"

#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"
#include "paddock/wire/zmq_frames.h"

namespace paddock::client {

namespace sc = paddock::schemas;

Client::Client(const std::string& endpoint, const std::optional<curve::ClientKeys>& keys)
    : Client(std::vector<std::string>{endpoint}, keys) {}

Client::Client(std::vector<std::string> endpoints, const std::optional<curve::ClientKeys>& keys,
               Failover failover)
    : context_(1), endpoints_(std::move(endpoints)), keys_(keys), failover_(failover) {
  if (endpoints_.empty()) throw ClientError("no broker endpoint given");
  open_socket();
}

void Client::open_socket() {
  socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
  if (keys_) curve::apply(socket_, *keys_);
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::maxmsgsize,
              static_cast<int64_t>(sc::limits::kMaxFrameBytes + (64 << 10)));
  socket_.set(zmq::sockopt::sndtimeo, 30'000);
  socket_.set(zmq::sockopt::rcvhwm, 0);
  socket_.set(zmq::sockopt::sndhwm, 100'000);
  socket_.connect(endpoints_[current_]);
  last_heard_ = last_ping_ = Clock::now();
}

void Client::fail_over() {
  current_ = (current_ + 1) % endpoints_.size();
  ++failovers_;
  open_socket();  // the old socket closes with linger 0: what it still held is dropped
  std::vector<std::string> bodies;
  for (const auto& [id, body] : open_) {
    bodies.push_back(body);
    if (bodies.size() == sc::limits::kMaxBodiesPerMessage) {
      send(sc::make_message(sc::Command::kSubmit, std::move(bodies)));
      bodies.clear();
    }
  }
  if (!bodies.empty()) send(sc::make_message(sc::Command::kSubmit, std::move(bodies)));
}

void Client::watch(const Event& ev) {
  last_heard_ = Clock::now();
  switch (ev.kind) {
    case Event::Kind::kResult:
      open_.erase(ev.result.job_id);
      break;
    case Event::Kind::kError:
    case Event::Kind::kRejected:
      open_.erase(ev.error.job_id);
      break;
    default:
      break;
  }
}

void Client::send(std::vector<std::string> parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto flags = i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (!socket_.send(zmq::buffer(parts[i]), flags)) {
      throw ClientError(
          "send to broker timed out (is the broker running? if it uses CURVE, are the broker's "
          "public key and this client's key right, and is the key in its client allowlist?)");
    }
  }
}

void Client::submit(std::span<const sc::JobRequest> requests) {
  for (const auto& r : requests) {
    if (auto err = sc::validate(r)) {
      throw ClientError("job '" + r.job_id + "': " + err->message());
    }
  }
  for (size_t start = 0; start < requests.size(); start += sc::limits::kMaxBodiesPerMessage) {
    const size_t end = std::min(requests.size(), start + sc::limits::kMaxBodiesPerMessage);
    std::vector<std::string> bodies;
    bodies.reserve(end - start);
    for (size_t i = start; i < end; ++i) {
      bodies.push_back(sc::encode(requests[i]));
      if (endpoints_.size() > 1) open_[requests[i].job_id] = bodies.back();
    }
    send(sc::make_message(sc::Command::kSubmit, std::move(bodies)));
  }
}

void Client::cancel(const std::string& job_id) {
  send(sc::make_message(sc::Command::kCancel, {sc::encode(sc::JobRef{job_id, {}})}));
}

void Client::fetch(const std::string& job_id) {
  send(sc::make_message(sc::Command::kFetch, {sc::encode(sc::JobRef{job_id, {}})}));
}

void Client::ping() { send(sc::make_message(sc::Command::kPing)); }

bool Client::try_ping() {
  return wire::send_message(socket_, sc::make_message(sc::Command::kPing)) == wire::SendStatus::kOk;
}

std::optional<Event> Client::next(std::chrono::milliseconds timeout) {
  if (endpoints_.size() == 1) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
    return read_one();
  }
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const auto now = Clock::now();
    if (!open_.empty()) {
      if (now - last_heard_ >= failover_.silence) {
        fail_over();
        continue;
      }
      if (now - last_heard_ >= failover_.silence / 2 && now - last_ping_ >= failover_.silence / 4) {
        (void)try_ping();
        last_ping_ = now;
      }
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (!open_.empty()) wait = std::min(wait, failover_.silence / 8);
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::max(wait, std::chrono::milliseconds(0))) > 0) {
      auto ev = read_one();
      if (ev) {
        watch(*ev);
        return ev;
      }
    }
    if (Clock::now() >= deadline) return std::nullopt;
  }
}

std::optional<Event> Client::read_one() {
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t m;
    if (!socket_.recv(m, zmq::recv_flags::dontwait)) break;
    const bool more = m.more();
    frames.push_back(std::move(m));
    if (!more) break;
  }
  if (frames.empty()) return std::nullopt;
  std::vector<std::string_view> parts;
  parts.reserve(frames.size());
  for (const auto& f : frames) parts.emplace_back(f.data<char>(), f.size());
  Event ev;
  auto env = sc::parse_envelope(parts, sc::Direction::kBrokerToClient);
  if (!env) {
    ev.detail = env.error().message();
    return ev;
  }
  const std::string_view body = env->bodies.empty() ? std::string_view() : env->bodies[0];
  auto fill_error = [&](Event::Kind kind) {
    auto e = sc::decode_job_error(body);
    if (!e) {
      ev.detail = e.error().message();
      return;
    }
    ev.kind = kind;
    ev.error = std::move(e.value());
  };
  switch (env->command) {
    case sc::Command::kAccepted: {
      auto a = sc::decode_accepted(body);
      if (!a) {
        ev.detail = a.error().message();
        break;
      }
      ev.kind = Event::Kind::kAccepted;
      ev.accepted_ids = std::move(a->job_ids);
      break;
    }
    case sc::Command::kRejected:
      fill_error(Event::Kind::kRejected);
      break;
    case sc::Command::kError:
      fill_error(Event::Kind::kError);
      break;
    case sc::Command::kResult: {
      auto r = sc::decode_job_result(body);
      if (!r) {
        ev.detail = r.error().message();
        break;
      }
      ev.kind = Event::Kind::kResult;
      ev.result = std::move(r.value());
      break;
    }
    case sc::Command::kPong:
      ev.kind = Event::Kind::kPong;
      break;
    case sc::Command::kOutput: {
      auto o = sc::decode_output(body);
      if (!o) {
        ev.detail = o.error().message();
        break;
      }
      ev.kind = Event::Kind::kOutput;
      ev.output = std::move(o.value());
      break;
    }
    default:
      ev.detail = "unexpected command";
      break;
  }
  return ev;
}

}  // namespace paddock::client
