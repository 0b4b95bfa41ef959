#include "netns_hosts.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace paddock::testing {

namespace {

void sh(const std::string& command) {
  const int rc = std::system((command + " 2>&1").c_str());
  if (rc != 0) throw std::runtime_error("failed (" + std::to_string(rc) + "): " + command);
}

// veth names are at most 15 characters: "pdk<pid><h|n><n>".
std::string link_name(const std::string& prefix, char side, int n) {
  return prefix + side + std::to_string(n);
}

}  // namespace

std::unique_ptr<HostNetwork> HostNetwork::create(std::string& why) {
  if (::geteuid() != 0) {
    why = "simulated hosts need root (network namespaces and veth pairs); CI runs as root";
    return nullptr;
  }
  if (std::system("ip -V >/dev/null 2>&1") != 0) {
    why = "no ip command (iproute2)";
    return nullptr;
  }
  std::unique_ptr<HostNetwork> net(new HostNetwork());
  net->prefix_ = "pdk" + std::to_string(::getpid() % 1000000);
  net->hub_ = net->prefix_ + "-hub";
  sh("ip netns add " + net->hub_);
  sh("ip -n " + net->hub_ + " link set lo up");
  return net;
}

HostNetwork::~HostNetwork() {
  // Deleting a namespace deletes the veth ends in it, and so their peers.
  for (int n : hosts_) std::system(("ip netns delete " + host(n) + " 2>/dev/null").c_str());
  std::system(("ip netns delete " + hub_ + " 2>/dev/null").c_str());
}

std::string HostNetwork::host(int n) const { return prefix_ + "-h" + std::to_string(n); }

std::string HostNetwork::hub_address(int n) { return "10.77." + std::to_string(n) + ".1"; }

std::string HostNetwork::add_host(int n) {
  if (n < 1 || n > 200) throw std::invalid_argument("host number out of range");
  const std::string ns = host(n);
  const std::string hub_end = link_name(prefix_, 'n', n);
  const std::string host_end = link_name(prefix_, 'h', n);
  const std::string net = "10.77." + std::to_string(n) + ".";
  sh("ip netns add " + ns);
  hosts_.push_back(n);
  sh("ip -n " + ns + " link set lo up");
  // Made inside the hub, its peer moved into the host: the machine's namespace never sees either.
  sh("ip -n " + hub_ + " link add " + hub_end + " type veth peer name " + host_end + " netns " +
     ns);
  sh("ip -n " + hub_ + " addr add " + net + "1/30 dev " + hub_end);
  sh("ip -n " + hub_ + " link set " + hub_end + " up");
  sh("ip -n " + ns + " link set " + host_end + " name eth0");
  sh("ip -n " + ns + " addr add " + net + "2/30 dev eth0");
  sh("ip -n " + ns + " link set eth0 up");
  return ns;
}

void HostNetwork::cut(int n) {
  sh("ip -n " + hub_ + " link set " + link_name(prefix_, 'n', n) + " down");
}

void HostNetwork::mend(int n) {
  sh("ip -n " + hub_ + " link set " + link_name(prefix_, 'n', n) + " up");
}

std::vector<std::string> HostNetwork::exec_in(const std::string& ns) {
  return {"netns", "exec", ns};
}

HostNetwork::InHub::InHub(const HostNetwork& net) {
  home_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  const int target = ::open(("/run/netns/" + net.hub()).c_str(), O_RDONLY | O_CLOEXEC);
  if (home_ < 0 || target < 0 || ::setns(target, CLONE_NEWNET) != 0) {
    if (target >= 0) ::close(target);
    throw std::runtime_error("cannot enter the hub's network namespace");
  }
  ::close(target);
}

HostNetwork::InHub::~InHub() {
  if (home_ >= 0) {
    (void)::setns(home_, CLONE_NEWNET);
    ::close(home_);
  }
}

}  // namespace paddock::testing
