#include "transport.h"

namespace paddock::broker {

namespace {

zmq::socket_t make_router(zmq::context_t& ctx, const std::string& endpoint, int hwm,
                          const std::string& curve_secret_key, const char* zap_domain,
                          std::string& bound) {
  zmq::socket_t s(ctx, zmq::socket_type::router);
  wire::apply_common_options(s);
  if (!curve_secret_key.empty()) {
    // Before bind: every connection on this endpoint is then CURVE, checked by ZAP in `domain`.
    s.set(zmq::sockopt::curve_server, true);
    s.set(zmq::sockopt::curve_secretkey, curve_secret_key);
    s.set(zmq::sockopt::zap_domain, zap_domain);
  }
  s.set(zmq::sockopt::router_mandatory, 1);
  s.set(zmq::sockopt::sndhwm, hwm);
  s.set(zmq::sockopt::rcvhwm, hwm);
  s.bind(endpoint);
  bound = s.get(zmq::sockopt::last_endpoint);
  return s;
}

size_t bytes_of(const std::vector<std::string>& parts) {
  size_t n = 0;
  for (const auto& p : parts) n += p.size();
  return n;
}

}  // namespace

Transport::Transport(zmq::context_t& context, const Settings& settings)
    : settings_(settings),
      clients_(make_router(context, settings.client_endpoint, settings.client_send_hwm,
                           settings.curve_secret_key, settings.client_zap_domain,
                           client_endpoint_)),
      workers_(make_router(context, settings.worker_endpoint, settings.worker_send_hwm,
                           settings.curve_secret_key, settings.worker_zap_domain,
                           worker_endpoint_)) {}

Transport::Delivery Transport::to_client(const std::string& route, std::vector<std::string> parts) {
  Delivery d;
  auto it = held_.find(route);
  if (it == held_.end()) {
    auto status = wire::send_message(clients_, parts, route);
    if (status == wire::SendStatus::kOk) return d;
    if (status == wire::SendStatus::kUnreachable) {
      d.kind = Delivery::Kind::kGone;
      return d;
    }
    it = held_.emplace(route, Held{}).first;
  }
  const size_t size = bytes_of(parts);
  if (it->second.bytes + size > settings_.max_undelivered_bytes_per_client ||
      held_bytes_ + size > settings_.max_undelivered_bytes) {
    d.kind = Delivery::Kind::kOverLimit;
    d.held_for_client = it->second.bytes;
    d.held_in_all = held_bytes_;
    d.size = size;
    if (it->second.queue.empty()) held_.erase(it);
    return d;
  }
  it->second.queue.push_back(std::move(parts));
  it->second.bytes += size;
  held_bytes_ += size;
  ++held_messages_;
  return d;
}

size_t Transport::flush() {
  size_t dropped = 0;
  for (auto it = held_.begin(); it != held_.end();) {
    auto& h = it->second;
    while (!h.queue.empty()) {
      auto status = wire::send_message(clients_, h.queue.front(), it->first);
      if (status == wire::SendStatus::kWouldBlock) break;
      if (status == wire::SendStatus::kUnreachable) {
        dropped += h.queue.size();
        held_messages_ -= h.queue.size();
        held_bytes_ -= h.bytes;
        h.queue.clear();
        h.bytes = 0;
        break;
      }
      const size_t size = bytes_of(h.queue.front());
      h.bytes -= size;
      held_bytes_ -= size;
      --held_messages_;
      h.queue.pop_front();
    }
    it = h.queue.empty() ? held_.erase(it) : std::next(it);
  }
  return dropped;
}

}  // namespace paddock::broker
