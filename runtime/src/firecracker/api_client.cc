#include "firecracker/api_client.h"

#include <curl/curl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "os/peer_text.h"
#include "paddock/base/os_error.h"

namespace paddock::runtime::firecracker {

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// Ids go into the URL path: keep them to a set that needs no escaping.
bool valid_path_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string where(std::string_view method, std::string_view path) {
  return "firecracker API " + std::string(method) + " " + std::string(path);
}

// What one request collects; the callbacks stop the transfer past the bound.
struct Exchange {
  std::string body;
  size_t received = 0;  // headers and body
  bool oversized = false;
};

size_t on_header(char*, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  ex->received += size * n;
  if (ex->received > api_limits::kMaxResponse) {
    ex->oversized = true;
    return 0;  // aborts the transfer
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  ex->received += size * n;
  if (ex->received > api_limits::kMaxResponse) {
    ex->oversized = true;
    return 0;
  }
  ex->body.append(data, size * n);
  return size * n;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_NOTHING); });
}

}  // namespace

json machine_config_body(const MachineConfig& m) {
  return json{{"vcpu_count", m.vcpu_count},
              {"mem_size_mib", m.mem_size_mib},
              {"smt", m.smt},
              {"track_dirty_pages", m.track_dirty_pages}};
}

json boot_source_body(const BootSource& b) {
  json j{{"kernel_image_path", b.kernel_image_path}};
  if (!b.initrd_path.empty()) j["initrd_path"] = b.initrd_path;
  if (!b.boot_args.empty()) j["boot_args"] = b.boot_args;
  return j;
}

json drive_body(const Drive& d) {
  return json{{"drive_id", d.drive_id},
              {"path_on_host", d.path_on_host},
              {"is_root_device", d.is_root_device},
              {"is_read_only", d.is_read_only}};
}

json network_interface_body(const NetworkInterface& n) {
  json j{{"iface_id", n.iface_id}, {"host_dev_name", n.host_dev_name}};
  if (!n.guest_mac.empty()) j["guest_mac"] = n.guest_mac;
  return j;
}

json vsock_body(const Vsock& v) {
  return json{{"guest_cid", v.guest_cid}, {"uds_path", v.uds_path}};
}

json metrics_body(const std::string& metrics_path) { return json{{"metrics_path", metrics_path}}; }

json action_body(std::string_view action_type) { return json{{"action_type", action_type}}; }

json vm_state_body(std::string_view state) { return json{{"state", state}}; }

json snapshot_create_body(const std::string& snapshot_path, const std::string& mem_file_path) {
  return json{{"snapshot_type", "Full"},
              {"snapshot_path", snapshot_path},
              {"mem_file_path", mem_file_path}};
}

json snapshot_load_body(const SnapshotLoad& s) {
  const char* backend = s.backend == SnapshotLoad::Backend::kFile ? "File" : "Uffd";
  json j{{"snapshot_path", s.snapshot_path},
         {"mem_backend", {{"backend_type", backend}, {"backend_path", s.backend_path}}},
         {"resume_vm", s.resume_vm}};
  if (!s.vsock_uds_path.empty()) j["vsock_override"] = {{"uds_path", s.vsock_uds_path}};
  return j;
}

std::string fault_message_of(std::string_view body) {
  // The body is bounded (kMaxResponse) before it gets here; nesting is bounded by its size.
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    auto it = j.find("fault_message");
    if (it != j.end() && it->is_string()) {
      return os::peer_text(it->get<std::string>(), api_limits::kMaxQuoted);
    }
  }
  return os::peer_text(body, api_limits::kMaxQuoted);
}

ApiClient::ApiClient(std::string socket_path, ApiTimeouts timeouts)
    : socket_path_(std::move(socket_path)), timeouts_(timeouts) {
  global_init();
}

ApiClient::~ApiClient() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Status ApiClient::wait_for_socket(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::chrono::milliseconds pause{1};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) {
    return Error::unsupported("firecracker API socket " + socket_path_ + ": path too long");
  }
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  std::string last = "not tried";
  while (true) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error::unsupported(base::error_message("socket"));
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int err = errno;
    ::close(fd);
    if (rc == 0) return {};
    last = base::error_message("connect " + socket_path_, err);
    const auto now = Clock::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds{50});
  }
  return Error::unsupported("firecracker API socket not ready after " +
                            std::to_string(timeout.count()) + " ms: " + last);
}

Result<ApiResponse> ApiClient::call(std::string_view method, std::string_view path,
                                    const std::string& body, std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  if (!curl_) curl_ = curl_easy_init();
  CURL* c = static_cast<CURL*>(curl_);
  if (!c) return Error::unsupported(where(method, path) + ": curl_easy_init failed");
  curl_easy_reset(c);  // keeps the connection cache: the connection stays open between calls
  Exchange ex;
  const std::string url = "http://localhost" + std::string(path);
  const std::string verb(method);
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  if (!body.empty()) headers = curl_slist_append(headers, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path_.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, verb.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(api_limits::kMaxResponse));
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ex);
  if (!body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (ex.oversized || rc == CURLE_FILESIZE_EXCEEDED) {
    return Error::unsupported(where(method, path) + ": response larger than " +
                              std::to_string(api_limits::kMaxResponse) + " bytes");
  }
  if (rc != CURLE_OK) {
    return Error::unsupported(where(method, path) + ": " + curl_easy_strerror(rc));
  }
  if (status < 200 || status > 299) {
    return Error::unsupported(where(method, path) + ": " + std::to_string(status) + ": " +
                              fault_message_of(ex.body));
  }
  return ApiResponse{status, std::move(ex.body)};
}

Status ApiClient::send(std::string_view method, std::string_view path, const json& body,
                       std::chrono::milliseconds timeout) {
  auto r = call(method, path, body.is_null() ? std::string() : body.dump(), timeout);
  if (!r) return r.error();
  return {};
}

Status ApiClient::configure(const VmConfig& config) {
  if (auto st = put_machine_config(config.machine); !st) return st;
  if (auto st = put_boot_source(config.boot); !st) return st;
  if (config.rootfs) {
    Drive root = *config.rootfs;
    root.drive_id = "rootfs";
    root.is_root_device = true;
    if (auto st = put_drive(root); !st) return st;
  }
  for (const auto& n : config.network_interfaces) {
    if (auto st = put_network_interface(n); !st) return st;
  }
  for (const auto& d : config.extra_drives) {
    if (auto st = put_drive(d); !st) return st;
  }
  if (config.vsock) return put_vsock(*config.vsock);
  return {};
}

Status ApiClient::put_machine_config(const MachineConfig& m) {
  return send("PUT", "/machine-config", machine_config_body(m), timeouts_.request);
}

Status ApiClient::put_boot_source(const BootSource& b) {
  return send("PUT", "/boot-source", boot_source_body(b), timeouts_.request);
}

Status ApiClient::put_drive(const Drive& d) {
  if (!valid_path_id(d.drive_id)) {
    return Error::unsupported("firecracker drive id '" + os::peer_text(d.drive_id, 80) +
                              "': not 1-64 of [A-Za-z0-9_-]");
  }
  return send("PUT", "/drives/" + d.drive_id, drive_body(d), timeouts_.request);
}

Status ApiClient::put_network_interface(const NetworkInterface& n) {
  if (!valid_path_id(n.iface_id)) {
    return Error::unsupported("firecracker interface id '" + os::peer_text(n.iface_id, 80) +
                              "': not 1-64 of [A-Za-z0-9_-]");
  }
  return send("PUT", "/network-interfaces/" + n.iface_id, network_interface_body(n),
              timeouts_.request);
}

Status ApiClient::put_vsock(const Vsock& v) {
  return send("PUT", "/vsock", vsock_body(v), timeouts_.request);
}

Status ApiClient::put_metrics(const std::string& metrics_path) {
  return send("PUT", "/metrics", metrics_body(metrics_path), timeouts_.request);
}

Status ApiClient::instance_start() {
  return send("PUT", "/actions", action_body("InstanceStart"), timeouts_.request);
}

Status ApiClient::send_ctrl_alt_del() {
  return send("PUT", "/actions", action_body("SendCtrlAltDel"), timeouts_.request);
}

Status ApiClient::flush_metrics() {
  return send("PUT", "/actions", action_body("FlushMetrics"), timeouts_.request);
}

Status ApiClient::pause() {
  return send("PATCH", "/vm", vm_state_body("Paused"), timeouts_.request);
}

Status ApiClient::resume() {
  return send("PATCH", "/vm", vm_state_body("Resumed"), timeouts_.request);
}

Status ApiClient::create_snapshot(const std::string& snapshot_path, const std::string& mem_path) {
  return send("PUT", "/snapshot/create", snapshot_create_body(snapshot_path, mem_path),
              timeouts_.snapshot);
}

Status ApiClient::load_snapshot(const SnapshotLoad& s) {
  return send("PUT", "/snapshot/load", snapshot_load_body(s), timeouts_.snapshot);
}

}  // namespace paddock::runtime::firecracker
