// A client of Firecracker's REST API (shared/reference/firecracker-api.yaml), HTTP/1.1 over the
// Unix socket Firecracker listens on (--api-sock), through libcurl. One kept-alive connection per
// client; responses are read by their Content-Length.
//
// Firecracker runs the guest and may be taken over by it, so what it answers is hostile input:
// every request has a deadline, a response (headers and body) is at most api_limits::kMaxResponse
// bytes, and its text is quoted bounded and escaped (os::peer_text).
//
// Errors are Unsupported, naming the method and path: for an HTTP error the status and the body's
// fault_message ("firecracker API PUT /actions: 400: <fault_message>"), as the reference runtime
// reports them; for a transport failure (no socket, timeout, oversized or garbled answer) what
// failed.
//
// The request bodies are built by the pure *_body functions, so tests can validate each one
// against the spec's definitions.
//
// Thread-safety: all methods may be called concurrently; requests are serialised on the one
// connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "paddock/runtime/error.h"

namespace paddock::runtime::firecracker {

namespace api_limits {
inline constexpr size_t kMaxResponse = 64u << 10;  // headers plus body; ours are tiny
inline constexpr size_t kMaxQuoted = 512;          // bytes of Firecracker's text in our errors
}  // namespace api_limits

struct ApiTimeouts {
  std::chrono::milliseconds request{5'000};    // one request, connect to last byte
  std::chrono::milliseconds snapshot{60'000};  // snapshot create and load write or map RAM
};

// PUT /machine-config (MachineConfiguration).
struct MachineConfig {
  uint32_t vcpu_count = 1;
  uint32_t mem_size_mib = 128;
  bool smt = false;
  bool track_dirty_pages = false;
};

// PUT /boot-source (BootSource).
struct BootSource {
  std::string kernel_image_path;
  std::string initrd_path;  // empty: none
  std::string boot_args;    // empty: Firecracker's default
};

// PUT /drives/{drive_id} (Drive).
struct Drive {
  std::string drive_id;
  std::string path_on_host;
  bool is_root_device = false;
  bool is_read_only = true;
};

// PUT /network-interfaces/{iface_id} (NetworkInterface).
struct NetworkInterface {
  std::string iface_id;
  std::string host_dev_name;  // the TAP
  std::string guest_mac;      // empty: Firecracker chooses
};

// PUT /vsock (Vsock): the host side of the guest's vsock is the Unix socket uds_path.
struct Vsock {
  uint32_t guest_cid = 3;
  std::string uds_path;
};

// Everything a VM is configured with before InstanceStart.
struct VmConfig {
  MachineConfig machine;
  BootSource boot;
  std::optional<Drive> rootfs;  // drive id "rootfs"
  std::vector<NetworkInterface> network_interfaces;
  std::vector<Drive> extra_drives;
  std::optional<Vsock> vsock;
};

// PUT /snapshot/load (SnapshotLoadParams) with a memory backend.
struct SnapshotLoad {
  enum class Backend { kFile, kUffd };
  std::string snapshot_path;
  Backend backend = Backend::kFile;
  std::string backend_path;  // the memory file, or the UFFD handler's socket
  bool resume_vm = false;
  // The restored VM's vsock socket instead of the one recorded in the snapshot; empty: keep it.
  std::string vsock_uds_path;
};

// The request bodies, as the spec's definitions name them.
nlohmann::json machine_config_body(const MachineConfig& m);
nlohmann::json boot_source_body(const BootSource& b);
nlohmann::json drive_body(const Drive& d);
nlohmann::json network_interface_body(const NetworkInterface& n);
nlohmann::json vsock_body(const Vsock& v);
nlohmann::json metrics_body(const std::string& metrics_path);
nlohmann::json action_body(std::string_view action_type);  // InstanceActionInfo
nlohmann::json vm_state_body(std::string_view state);      // Vm: "Paused" or "Resumed"
nlohmann::json snapshot_create_body(const std::string& snapshot_path,
                                    const std::string& mem_file_path);  // Full
nlohmann::json snapshot_load_body(const SnapshotLoad& s);

// The text of an error body: its fault_message when it is a JSON object with one, else the body
// itself; bounded and escaped.
std::string fault_message_of(std::string_view body);

struct ApiResponse {
  long status = 0;
  std::string body;
};

class ApiClient {
 public:
  explicit ApiClient(std::string socket_path, ApiTimeouts timeouts = {});
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  const std::string& socket_path() const { return socket_path_; }

  // Waits until something accepts connections on the socket, trying again after 1 ms, doubling up
  // to 50 ms, until `timeout` has passed. Unsupported naming the socket and the last error.
  Status wait_for_socket(std::chrono::milliseconds timeout);

  // Configures a VM in the reference runtime's order: machine-config, boot-source, drives/rootfs,
  // network-interfaces, extra drives, vsock. Stops at the first error.
  Status configure(const VmConfig& config);
  Status put_machine_config(const MachineConfig& m);
  Status put_boot_source(const BootSource& b);
  Status put_drive(const Drive& d);
  Status put_network_interface(const NetworkInterface& n);
  Status put_vsock(const Vsock& v);
  Status put_metrics(const std::string& metrics_path);

  Status instance_start();
  Status send_ctrl_alt_del();
  Status flush_metrics();
  Status pause();   // PATCH /vm Paused
  Status resume();  // PATCH /vm Resumed
  // REQUIRES: the VM is paused. A Full snapshot: device state to snapshot_path, RAM to mem_path.
  Status create_snapshot(const std::string& snapshot_path, const std::string& mem_path);
  // REQUIRES: nothing was configured on this Firecracker.
  Status load_snapshot(const SnapshotLoad& s);

  // One request; a status other than 2xx is an error. `body` empty: none is sent.
  Result<ApiResponse> call(std::string_view method, std::string_view path, const std::string& body,
                           std::chrono::milliseconds timeout);

 private:
  Status send(std::string_view method, std::string_view path, const nlohmann::json& body,
              std::chrono::milliseconds timeout);

  std::string socket_path_;
  ApiTimeouts timeouts_;
  std::mutex mu_;
  void* curl_ = nullptr;  // CURL*, kept for its connection cache (keep-alive)
};

}  // namespace paddock::runtime::firecracker
