// The in-process kernel calls behind VM networks (src/net/netlink.h), checked against what `ip`
// sees. Root only, in namespaces this test makes and removes; the machine's own namespace is only
// read.
#include "net/netlink.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

namespace nl = paddock::runtime::net::netlink;
namespace fs = std::filesystem;

namespace {

std::string capture(const std::string& command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(command.c_str(), "r"), ::pclose);
  if (!p) return out;
  std::array<char, 4096> buf{};
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p.get())) out.append(buf.data(), n);
  return out;
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// Two namespace names of this process, removed at the end whatever happened.
struct Names {
  std::string a = "pdknl" + std::to_string(::getpid() % 100000) + "a";
  std::string b = "pdknl" + std::to_string(::getpid() % 100000) + "b";
  ~Names() {
    (void)nl::delete_netns(a);
    (void)nl::delete_netns(b);
  }
};

}  // namespace

TEST_CASE("netlink: namespaces, a veth pair across two, addresses, routes and counters") {
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED LOUDLY: not root, so the in-process netlink calls were NOT checked");
    return;
  }
  Names ns;
  auto made = nl::create_netns(ns.a);
  REQUIRE_MESSAGE(made.ok(), made.error().message);
  REQUIRE(nl::create_netns(ns.b).ok());
  // Taken names are refused; `ip` sees ours.
  auto again = nl::create_netns(ns.a);
  REQUIRE_FALSE(again.ok());
  CHECK(contains(again.error().message, ns.a));
  CHECK(contains(capture("ip netns list"), ns.a));

  // A veth pair from a to b, addressed and up on both sides, a default route via the other end.
  auto built = nl::in_netns(ns.a, [&]() -> paddock::base::Status {
    const std::string b_path = std::string(nl::kNetnsDir) + "/" + ns.b;
    const int b_fd = ::open(b_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (b_fd < 0) return paddock::base::fail("open " + b_path);
    auto sock = nl::Socket::open();
    if (!sock) return sock.error();
    auto veth = sock->add_veth("va", "vb", b_fd);
    ::close(b_fd);
    if (!veth) return veth;
    if (auto st = sock->add_address("va", "10.99.0.1/30"); !st) return st;
    if (auto st = nl::link_up("va"); !st) return st;
    return nl::link_up("lo");
  });
  REQUIRE_MESSAGE(built.ok(), built.error().message);
  auto other = nl::in_netns(ns.b, [&]() -> paddock::base::Status {
    auto sock = nl::Socket::open();
    if (!sock) return sock.error();
    if (auto st = sock->add_address("vb", "10.99.0.2/30"); !st) return st;
    if (auto st = nl::link_up("vb"); !st) return st;
    return sock->replace_default_route_via("10.99.0.1");
  });
  REQUIRE_MESSAGE(other.ok(), other.error().message);
  CHECK(contains(capture("ip -n " + ns.a + " -o addr show dev va"), "10.99.0.1/30"));
  CHECK(contains(capture("ip -n " + ns.b + " -o addr show dev vb"), "10.99.0.2/30"));
  CHECK(contains(capture("ip -n " + ns.b + " route show default"), "default via 10.99.0.1 dev vb"));
  // Not in this process's namespace.
  CHECK_FALSE(contains(capture("ip -o link show"), "va@"));

  // Traffic over the pair shows in the counters read through netlink: two datagrams from b to a
  // (after b's ARP request, which a answers).
  REQUIRE(
      std::system(("ip netns exec " + ns.b +
                   " bash -c 'echo one > /dev/udp/10.99.0.1/9; echo two > /dev/udp/10.99.0.1/9'")
                      .c_str()) == 0);
  nl::LinkCounters counters;
  auto read = nl::in_netns(ns.a, [&]() -> paddock::base::Status {
    auto sock = nl::Socket::open();
    if (!sock) return sock.error();
    auto c = sock->counters("va");
    if (!c) return c.error();
    counters = *c;
    auto names = sock->link_names();
    if (!names) return names.error();
    if (names->size() != 2) return paddock::base::fail("expected lo and va");
    return {};
  });
  REQUIRE_MESSAGE(read.ok(), read.error().message);
  CHECK(counters.rx_packets >= 2);  // the datagrams
  CHECK(counters.tx_packets >= 1);  // at least the ARP reply
  CHECK(counters.rx_bytes >= 2 * 32);

  // A second default route is refused (added, not replaced); deleting a link twice says so.
  auto twice = nl::in_netns(ns.a, [&]() -> paddock::base::Status {
    auto sock = nl::Socket::open();
    if (!sock) return sock.error();
    if (auto st = sock->add_default_route_dev("va"); !st) return st;
    if (sock->add_default_route_dev("va").ok()) return paddock::base::fail("added twice");
    auto gone = sock->delete_link("va");
    if (!gone || !*gone) return paddock::base::fail("va was not deleted");
    auto again = sock->delete_link("va");
    if (!again || *again) return paddock::base::fail("va deleted twice");
    return {};
  });
  CHECK_MESSAGE(twice.ok(), twice.error().message);
  // The pair went with its first end.
  CHECK_FALSE(contains(capture("ip -n " + ns.b + " -o link show"), "vb"));

  // A namespace that does not exist cannot be joined; delete says whether there was one.
  auto missing = nl::in_netns("pdknl-no-such", [] { return paddock::base::Status{}; });
  CHECK_FALSE(missing.ok());
  auto deleted = nl::delete_netns(ns.a);
  REQUIRE(deleted.ok());
  CHECK(*deleted);
  auto deleted_again = nl::delete_netns(ns.a);
  REQUIRE(deleted_again.ok());
  CHECK_FALSE(*deleted_again);
  CHECK_FALSE(fs::exists(std::string(nl::kNetnsDir) + "/" + ns.a));
}
