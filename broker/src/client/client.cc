#include "paddock/client/client.h"

#include "paddock/client/zmq_frames.h"
#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/schemas/limits.h"

namespace paddock::client {

namespace sc = paddock::schemas;

Client::Client(const std::string& endpoint, const std::optional<curve::ClientKeys>& keys)
    : context_(1), socket_(context_, zmq::socket_type::dealer) {
  if (keys) curve::apply(socket_, *keys);
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::maxmsgsize,
              static_cast<int64_t>(sc::limits::kMaxFrameBytes + (64 << 10)));
  socket_.set(zmq::sockopt::sndtimeo, 30'000);
  socket_.set(zmq::sockopt::rcvhwm, 0);
  socket_.set(zmq::sockopt::sndhwm, 100'000);
  socket_.connect(endpoint);
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
    for (size_t i = start; i < end; ++i) bodies.push_back(sc::encode(requests[i]));
    send(sc::make_message(sc::Command::kSubmit, std::move(bodies)));
  }
}

void Client::cancel(const std::string& job_id) {
  send(sc::make_message(sc::Command::kCancel, {sc::encode(sc::JobRef{job_id})}));
}

void Client::fetch(const std::string& job_id) {
  send(sc::make_message(sc::Command::kFetch, {sc::encode(sc::JobRef{job_id})}));
}

void Client::ping() { send(sc::make_message(sc::Command::kPing)); }

bool Client::try_ping() {
  return wire::send_message(socket_, sc::make_message(sc::Command::kPing)) ==
         wire::SendStatus::kOk;
}

std::optional<Event> Client::next(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
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
    case sc::Command::kRejected: fill_error(Event::Kind::kRejected); break;
    case sc::Command::kError: fill_error(Event::Kind::kError); break;
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
    case sc::Command::kPong: ev.kind = Event::Kind::kPong; break;
    default: ev.detail = "unexpected command"; break;
  }
  return ev;
}

}  // namespace paddock::client
