// The test's own "internet" for the network tests (see network_test.cc): namespaces, veth
// links and small TCP servers that answer with their name and port.
#pragma once

#include <unistd.h>

#include <boost/process.hpp>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

namespace paddock::testing {

namespace bp = boost::process;
using namespace std::chrono_literals;

inline int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

inline std::string capture(const std::string& cmd) {
  bp::ipstream out;
  bp::child c("/bin/sh", "-c", cmd, bp::std_out > out, bp::std_err > bp::null);
  std::string all, line;
  while (std::getline(out, line)) all += line + "\n";
  c.wait();
  return all;
}

// W (the host), A (198.18.1.2, servers on 8001 and 8002, plus the metadata address
// 169.254.169.254 on port 80), B (198.18.2.2, servers on 8001; 198.18.2.3 port 5556 plays the
// broker); W also runs a server of its own on 8003 (a host service).
struct TestInternet {
  std::string tag = std::to_string(::getpid() % 100000);
  std::string w = "ptw" + tag, a = "pta" + tag, b = "ptb" + tag;
  std::vector<std::unique_ptr<bp::child>> servers;

  TestInternet() {
    for (const auto& ns : {w, a, b}) {
      REQUIRE(sh("ip netns add " + ns) == 0);
      REQUIRE(sh("ip -n " + ns + " link set lo up") == 0);
    }
    link(a, "198.18.1");
    link(b, "198.18.2");
    REQUIRE(sh("ip -n " + a + " addr add 169.254.169.254/32 dev eth0") == 0);
    REQUIRE(sh("ip -n " + b + " addr add 198.18.2.3/24 dev eth0") == 0);
    REQUIRE(sh("ip -n " + w + " route add 169.254.169.254/32 via 198.18.1.2") == 0);
    serve(a, "A", {8001, 8002, 80});
    serve(b, "B", {8001, 5556});
    serve(w, "W", {8003});
    // Wait until every server answers from W.
    for (auto [host, port] : {std::pair{"198.18.1.2", 8001},
                              {"198.18.1.2", 8002},
                              {"169.254.169.254", 80},
                              {"198.18.2.2", 8001},
                              {"198.18.2.3", 5556},
                              {"198.18.1.1", 8003}}) {
      bool up = false;
      for (int i = 0; i < 100 && !up; ++i) {
        up = !probe_from_w(host, port).empty();
        if (!up) std::this_thread::sleep_for(50ms);
      }
      REQUIRE_MESSAGE(up, "test server " << host << ":" << port << " did not come up");
    }
  }
  ~TestInternet() {
    for (auto& s : servers) {
      std::error_code ec;
      s->terminate(ec);
    }
    for (const auto& ns : {a, b, w}) sh("ip netns delete " + ns + " 2>/dev/null");
  }
  // A veth pair W <-> ns, W side <prefix>.1/24, ns side <prefix>.2/24.
  void link(const std::string& ns, const std::string& prefix) {
    const std::string wl = "w" + ns;
    REQUIRE(sh("ip -n " + w + " link add " + wl + " type veth peer name eth0 netns " + ns) == 0);
    REQUIRE(sh("ip -n " + w + " addr add " + prefix + ".1/24 dev " + wl) == 0);
    REQUIRE(sh("ip -n " + w + " link set " + wl + " up") == 0);
    REQUIRE(sh("ip -n " + ns + " addr add " + prefix + ".2/24 dev eth0") == 0);
    REQUIRE(sh("ip -n " + ns + " link set eth0 up") == 0);
    REQUIRE(sh("ip -n " + ns + " route add default via " + prefix + ".1") == 0);
  }
  void serve(const std::string& ns, const std::string& name, std::vector<int> ports) {
    std::string list;
    for (int p : ports) list += (list.empty() ? "" : ",") + std::to_string(p);
    const std::string code =
        "import socket,threading\n"
        "def run(p):\n"
        "  s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "  s.bind(('0.0.0.0',p)); s.listen(16)\n"
        "  while True:\n"
        "    c,_=s.accept(); c.sendall(b'" +
        name +
        "-%d\\n'%p); c.close()\n"
        "for p in [" +
        list +
        "]: threading.Thread(target=run,args=(p,),daemon=True).start()\n"
        "threading.Event().wait()\n";
    servers.push_back(std::make_unique<bp::child>("/usr/sbin/ip", "netns", "exec", ns,
                                                  "/usr/bin/python3", "-c", code,
                                                  bp::std_out > bp::null, bp::std_err > bp::null));
  }
  std::string probe_from_w(const std::string& host, int port) {
    return capture("ip netns exec " + w +
                   " /usr/bin/python3 -c \"import socket;s=socket.create_"
                   "connection(('" +
                   host + "'," + std::to_string(port) +
                   "),1);print(s.recv(64).decode().strip())\" 2>/dev/null");
  }
};

}  // namespace paddock::testing
