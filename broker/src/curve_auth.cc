#include "curve_auth.h"

#include <cstring>

#include <spdlog/spdlog.h>

#include "paddock/wire/zmq_frames.h"

namespace paddock::broker {
namespace {

std::string_view view(const zmq::message_t& m) { return {m.data<char>(), m.size()}; }

std::string z85_of(std::string_view binary_key) {
  if (binary_key.size() != 32) return "(no key)";
  char out[curve::kKeyChars + 1];
  zmq_z85_encode(out, reinterpret_cast<const uint8_t*>(binary_key.data()), binary_key.size());
  return out;
}

}  // namespace

ZapVerdict zap_verdict(std::string_view domain, std::string_view mechanism,
                       const std::string& key_z85, const curve::Allowlist& clients,
                       const curve::Allowlist& workers) {
  if (mechanism != "CURVE") {
    return {false, "", "mechanism " + std::string(mechanism) + ", not CURVE"};
  }
  const curve::Allowlist* list = nullptr;
  if (domain == kClientZapDomain) list = &clients;
  if (domain == kWorkerZapDomain) list = &workers;
  if (list == nullptr) return {false, "", "unknown ZAP domain '" + std::string(domain) + "'"};
  auto it = list->find(key_z85);
  if (it == list->end()) {
    return {false, "",
            "key not in the " + std::string(domain == kClientZapDomain ? "client" : "worker") +
                " allowlist"};
  }
  return {true, it->second, ""};
}

ZapHandler::ZapHandler(zmq::context_t& context, curve::Allowlist clients, curve::Allowlist workers)
    : socket_(context, zmq::socket_type::rep),
      clients_(std::move(clients)),
      workers_(std::move(workers)) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("inproc://zeromq.zap.01");
}

void ZapHandler::handle_waiting() {
  std::vector<zmq::message_t> frames;
  while (wire::recv_message(socket_, frames)) handle(frames);
}

void ZapHandler::handle(const std::vector<zmq::message_t>& request) {
  // version, request id, domain, address, routing id, mechanism, credentials...
  std::string request_id;
  ZapVerdict verdict;
  std::string key;
  std::string address;
  std::string domain;
  if (request.size() < 6 || view(request[0]) != "1.0") {
    verdict.reason = "malformed ZAP request";
  } else {
    request_id = std::string(view(request[1]));
    domain = std::string(view(request[2]));
    address = std::string(view(request[3]));
    const std::string_view mechanism = view(request[5]);
    key = request.size() >= 7 ? z85_of(view(request[6])) : "(no key)";
    verdict = zap_verdict(domain, mechanism, key, clients_, workers_);
  }
  if (!verdict.allowed) {
    ++refused_;
    if (log_.allow()) {
      spdlog::warn("refused a {} connection from {} with key {}: {}",
                   domain == kWorkerZapDomain ? "worker" : "client", address, key, verdict.reason);
    }
  } else {
    spdlog::debug("{} key {} ('{}') from {} authenticated", domain, key, verdict.user_id, address);
  }
  const std::vector<std::string> reply = {"1.0",
                                          request_id,
                                          verdict.allowed ? "200" : "400",
                                          verdict.allowed ? "OK" : verdict.reason,
                                          verdict.user_id,
                                          ""};
  wire::send_message(socket_, reply);  // REP: the reply always fits
}

HandshakeMonitor::HandshakeMonitor(zmq::context_t& context, zmq::socket_ref watched,
                                   std::string name)
    : socket_(context, zmq::socket_type::pair), name_(std::move(name)) {
  const std::string address = "inproc://paddock-handshakes-" + name_;
  if (zmq_socket_monitor(
          watched.handle(), address.c_str(),
          ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0) {
    throw zmq::error_t();
  }
  socket_.set(zmq::sockopt::linger, 0);
  socket_.connect(address);
}

void HandshakeMonitor::handle_waiting() {
  std::vector<zmq::message_t> frames;
  while (wire::recv_message(socket_, frames)) {
    if (frames.size() < 2 || frames[0].size() < 6) continue;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, frames[0].data(), 2);
    std::memcpy(&value, frames[0].data<char>() + 2, 4);
    if (!log_.allow()) continue;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
        value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
      spdlog::warn("refused a {} connection on {}: it does not use CURVE (no key given?)", name_,
                   std::string(view(frames[1])));
    } else {
      spdlog::warn("refused a {} connection on {}: handshake failed (event 0x{:x}, 0x{:x})", name_,
                   std::string(view(frames[1])), event, value);
    }
  }
}

bool is_local_endpoint(const std::string& endpoint) {
  if (endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://")) return true;
  if (!endpoint.starts_with("tcp://")) return false;
  std::string host = endpoint.substr(6);
  const auto colon = host.rfind(':');
  if (colon != std::string::npos) host.resize(colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const bool ipv4_loopback =
      host.starts_with("127.") && host.find_first_not_of("0123456789.") == std::string::npos;
  return ipv4_loopback || host == "localhost" || host == "::1";
}

}  // namespace paddock::broker
