// Simulated hosts for multi-host tests (issue 11): a "hub" network namespace where the brokers
// run, and one namespace per worker host, each joined to the hub by its own veth pair (a /30
// each: the hub is 10.77.N.1 as seen from host N at 10.77.N.2). Real TCP crosses real links
// between them, on one machine, and nothing touches the machine's own namespace: every link
// and address is inside namespaces made here, deleted with the object (which deletes their veths).
// Needs root (CI runs as root).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace paddock::testing {

class HostNetwork {
 public:
  // nullptr and `why` when it cannot be made (not root, no ip command).
  static std::unique_ptr<HostNetwork> create(std::string& why);
  ~HostNetwork();
  HostNetwork(const HostNetwork&) = delete;
  HostNetwork& operator=(const HostNetwork&) = delete;

  const std::string& hub() const { return hub_; }
  // Adds host `n` (1..200). Returns its namespace's name.
  std::string add_host(int n);
  std::string host(int n) const;
  // The hub's address as host n sees it.
  static std::string hub_address(int n);
  // Takes the hub's end of host n's link down (the host is cut off), or up again.
  void cut(int n);
  void mend(int n);
  // The command prefix that runs a program in namespace `ns`.
  static std::vector<std::string> exec_in(const std::string& ns);

  // While alive, the calling thread is in the hub's namespace (sockets it makes, and threads it
  // starts, such as a ZeroMQ context's I/O thread, live there); back where it was afterwards.
  class InHub {
   public:
    explicit InHub(const HostNetwork& net);
    ~InHub();
    InHub(const InHub&) = delete;
    InHub& operator=(const InHub&) = delete;

   private:
    int home_ = -1;
  };

 private:
  HostNetwork() = default;
  std::string prefix_;
  std::string hub_;
  std::vector<int> hosts_;
};

}  // namespace paddock::testing
