// The Firecracker API client against the FAKE Firecracker (a test double that checks every
// request against tests/firecracker/reference/firecracker-api.yaml): the configuration order, every
// body the client builds valid against the spec, errors as Unsupported naming method, path, status
// and fault_message, the socket wait, and answers that stall, are too large or are not HTTP.
#include <doctest/doctest.h>

#include <fstream>

#include <chrono>

#include "fake_firecracker.h"
#include "firecracker/api_client.h"

using namespace paddock::runtime;
using namespace paddock::runtime::firecracker;
using paddock::test::FakeFirecracker;
using namespace std::chrono_literals;

namespace {

VmConfig full_config(const std::string& dir) {
  VmConfig c;
  c.machine = MachineConfig{2, 256, false, false};
  c.boot = BootSource{dir + "/vmlinux", dir + "/initrd", "console=ttyS0 reboot=k panic=1"};
  c.rootfs = Drive{"rootfs", dir + "/rootfs.ext4", true, true};
  c.network_interfaces.push_back(NetworkInterface{"eth0", "tap0", "06:00:ac:10:00:02"});
  c.extra_drives.push_back(Drive{"scratch", dir + "/scratch.ext4", false, false});
  c.vsock = Vsock{3, dir + "/v.sock"};
  return c;
}

// Every request the fake logged conformed to the spec and was accepted.
void check_all_conform(const FakeFirecracker& fc) {
  for (const auto& r : fc.requests()) {
    INFO(r.dump());
    CHECK(r["conforms"].get<bool>());
    CHECK(r["status"] == 204);
  }
}

}  // namespace

TEST_CASE("firecracker spec: the reference specification is present") {
  // Every conformance test below needs it: a missing spec must fail here, never skip.
  REQUIRE_MESSAGE(paddock::test::spec_available(),
                  "missing " PADDOCK_FIRECRACKER_SPEC
                  " (tests/firecracker/reference/firecracker-api.yaml)");
}

TEST_CASE("firecracker api: configure sends the reference order and every body conforms") {
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  REQUIRE(api.configure(full_config(fc.dir().string())));
  // Firecracker opens the metrics file, which must exist (a FIFO in production).
  std::ofstream(fc.dir() / "metrics.fifo").close();
  REQUIRE(api.put_metrics(fc.dir().string() + "/metrics.fifo"));
  REQUIRE(api.instance_start());
  const std::vector<std::string> expected = {"PUT /machine-config", "PUT /boot-source",
                                             "PUT /drives/rootfs",  "PUT /network-interfaces/eth0",
                                             "PUT /drives/scratch", "PUT /vsock",
                                             "PUT /metrics",        "PUT /actions"};
  CHECK(fc.sequence() == expected);
  check_all_conform(fc);
}

TEST_CASE("firecracker api: pause then snapshot then resume conform and follow the state machine") {
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  REQUIRE(api.configure(full_config(fc.dir().string())));
  REQUIRE(api.instance_start());
  const std::string snap = fc.dir().string() + "/state", mem = fc.dir().string() + "/memory";
  // The fake refuses a snapshot of a running VM, as Firecracker does.
  auto refused = api.create_snapshot(snap, mem);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().variant() == Variant::kUnsupported);
  REQUIRE(api.pause());
  REQUIRE(api.create_snapshot(snap, mem));
  REQUIRE(api.resume());
  REQUIRE(api.flush_metrics());
  REQUIRE(api.send_ctrl_alt_del());
  auto reqs = fc.requests();
  REQUIRE(reqs.size() == 13);  // 6 configuration requests, start, then the 6 above
  CHECK(reqs[7]["path"] == "/snapshot/create");
  CHECK(reqs[7]["status"] == 400);  // the refused snapshot: valid body, wrong state
  CHECK(reqs[7]["conforms"].get<bool>());
  reqs.erase(reqs.begin() + 7);
  for (const auto& r : reqs) {
    INFO(r.dump());
    CHECK(r["conforms"].get<bool>());
    CHECK(r["status"] == 204);
  }
  CHECK(reqs[7]["body"]["state"] == "Paused");
  CHECK(reqs[8]["body"]["snapshot_type"] == "Full");
  CHECK(reqs[9]["body"]["state"] == "Resumed");
  CHECK(reqs[10]["body"]["action_type"] == "FlushMetrics");
  CHECK(reqs[11]["body"]["action_type"] == "SendCtrlAltDel");
}

TEST_CASE("firecracker api: snapshot load with a File backend conforms") {
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  const std::string snap = fc.dir().string() + "/state", mem = fc.dir().string() + "/memory";
  { std::ofstream(snap) << "s"; }
  { std::ofstream(mem) << "m"; }
  REQUIRE(api.load_snapshot(SnapshotLoad{snap, SnapshotLoad::Backend::kFile, mem, false,
                                         fc.dir().string() + "/v2.sock"}));
  REQUIRE(api.resume());
  check_all_conform(fc);
  const auto reqs = fc.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0]["body"]["mem_backend"]["backend_type"] == "File");
  CHECK(reqs[0]["body"]["mem_backend"]["backend_path"] == mem);
  CHECK(reqs[0]["body"]["vsock_override"]["uds_path"] == fc.dir().string() + "/v2.sock");
}

TEST_CASE("firecracker api: snapshot load with a Uffd backend conforms") {
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  const std::string snap = fc.dir().string() + "/state";
  { std::ofstream(snap) << "s"; }
  REQUIRE(api.load_snapshot(SnapshotLoad{snap, SnapshotLoad::Backend::kUffd,
                                         fc.dir().string() + "/uffd.sock", true, ""}));
  check_all_conform(fc);
  CHECK(fc.requests().at(0)["body"]["mem_backend"]["backend_type"] == "Uffd");
}

TEST_CASE("firecracker api: snapshot load after configuration is refused") {
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  const std::string snap = fc.dir().string() + "/state";
  { std::ofstream(snap) << "s"; }
  REQUIRE(api.put_machine_config(MachineConfig{}));
  auto st = api.load_snapshot(SnapshotLoad{snap, SnapshotLoad::Backend::kFile, snap, false, ""});
  REQUIRE_FALSE(st);
  CHECK(st.error().detail().find("PUT /snapshot/load: 400: Loading a microVM snapshot") !=
        std::string::npos);
}

TEST_CASE("firecracker api: the fake refuses a body that breaks the spec") {
  // A negative control: the validator the conformance tests rely on does refuse bad bodies.
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  auto r = api.call("PUT", "/machine-config", R"({"vcpu_count": 0, "mem_size_mib": 128})", 5s);
  REQUIRE_FALSE(r);
  CHECK(r.error().detail().find("vcpu_count") != std::string::npos);
  r = api.call("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 1, "x": 1})", 5s);
  REQUIRE_FALSE(r);
  r = api.call("PUT", "/vsock", R"({"uds_path": "/v.sock"})", 5s);
  REQUIRE_FALSE(r);
  r = api.call("PUT", "/no-such-path", R"({})", 5s);
  REQUIRE_FALSE(r);
  const auto reqs = fc.requests();
  REQUIRE(reqs.size() == 4);
  for (const auto& q : reqs) CHECK_FALSE(q["conforms"].get<bool>());
}

TEST_CASE(
    "firecracker api: an API error is Unsupported with method path status and fault_message") {
  FakeFirecracker fc(paddock::test::FakeKnobs{
      {"FAKE_FIRECRACKER_FAIL", "PUT /boot-source 400 kernel image is not ELF"}});
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  REQUIRE(api.put_machine_config(MachineConfig{}));
  auto st = api.put_boot_source(BootSource{"/vmlinux", "", ""});
  REQUIRE_FALSE(st);
  CHECK(st.error().variant() == Variant::kUnsupported);
  CHECK(st.error().detail() == "firecracker API PUT /boot-source: 400: kernel image is not ELF");
  // configure() stops at the first error: nothing after boot-source is sent.
  REQUIRE_FALSE(api.configure(full_config(fc.dir().string())));
  CHECK(fc.sequence().back() == "PUT /boot-source");
}

TEST_CASE("firecracker api: requests share one kept-alive connection") {
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  for (int i = 0; i < 5; ++i) REQUIRE(api.put_machine_config(MachineConfig{}));
  REQUIRE(api.call("GET", "/", "", 5s));
  REQUIRE(api.put_boot_source(BootSource{"/vmlinux", "", ""}));
  const auto reqs = fc.requests();
  REQUIRE(reqs.size() == 7);
  // The fake numbers the connections it accepts (the socket wait's probe was the first).
  for (const auto& r : reqs) CHECK(r["connection"] == reqs[0]["connection"]);
}

TEST_CASE("firecracker api: the socket wait retries until the socket appears") {
  FakeFirecracker fc(paddock::test::FakeKnobs{{"FAKE_FIRECRACKER_LISTEN_DELAY_MS", "300"}});
  ApiClient api(fc.socket_path());
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(api.wait_for_socket(15s));
  CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
  CHECK(api.put_machine_config(MachineConfig{}));
}

TEST_CASE("firecracker api: the socket wait gives up at its deadline") {
  const auto dir = paddock::test::fresh_temp_dir("fcwait-");
  ApiClient api((dir / "api.sock").string());
  const auto t0 = std::chrono::steady_clock::now();
  auto st = api.wait_for_socket(200ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  std::filesystem::remove_all(dir);
  REQUIRE_FALSE(st);
  CHECK(st.error().variant() == Variant::kUnsupported);
  CHECK(st.error().detail().find("not ready after 200 ms") != std::string::npos);
  CHECK(took >= 200ms);
  CHECK(took < 1s);
}

TEST_CASE("firecracker api: a stalled answer times out instead of hanging") {
  FakeFirecracker fc(paddock::test::FakeKnobs{{"FAKE_FIRECRACKER_STALL", "PUT /actions"}});
  ApiClient api(fc.socket_path(), ApiTimeouts{300ms, 300ms});
  REQUIRE(api.wait_for_socket(10s));
  const auto t0 = std::chrono::steady_clock::now();
  auto st = api.instance_start();
  REQUIRE_FALSE(st);
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(st.error().detail().find("firecracker API PUT /actions: Timeout") != std::string::npos);
  // The client is usable again afterwards (a new connection).
  CHECK(api.put_machine_config(MachineConfig{}));
}

TEST_CASE("firecracker api: an oversized answer is an error") {
  FakeFirecracker fc(paddock::test::FakeKnobs{{"FAKE_FIRECRACKER_OVERSIZE", "PUT /actions"}});
  ApiClient api(fc.socket_path(), ApiTimeouts{5s, 5s});
  REQUIRE(api.wait_for_socket(10s));
  auto st = api.instance_start();
  REQUIRE_FALSE(st);
  CHECK(st.error().detail() == "firecracker API PUT /actions: response larger than 65536 bytes");
}

TEST_CASE("firecracker api: a garbled answer is an error") {
  FakeFirecracker fc(paddock::test::FakeKnobs{{"FAKE_FIRECRACKER_GARBLE", "PUT /actions"}});
  ApiClient api(fc.socket_path(), ApiTimeouts{2s, 2s});
  REQUIRE(api.wait_for_socket(10s));
  const auto t0 = std::chrono::steady_clock::now();
  auto st = api.instance_start();
  REQUIRE_FALSE(st);
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(st.error().variant() == Variant::kUnsupported);
  CHECK(st.error().detail().rfind("firecracker API PUT /actions: ", 0) == 0);
}

TEST_CASE("firecracker api: fault_message is quoted bounded and escaped") {
  CHECK(fault_message_of(R"({"fault_message": "bad\nthing"})") == "bad\\x0athing");
  CHECK(fault_message_of("not json") == "not json");
  CHECK(fault_message_of(std::string(2000, 'a')).size() == api_limits::kMaxQuoted + 3);
}

TEST_CASE("firecracker api: ids that cannot be a path segment are refused before sending") {
  FakeFirecracker fc;
  ApiClient api(fc.socket_path());
  REQUIRE(api.wait_for_socket(10s));
  auto st = api.put_drive(Drive{"../actions", "/x", false, true});
  REQUIRE_FALSE(st);
  CHECK(st.error().detail().find("drive id") != std::string::npos);
  CHECK(fc.requests().empty());
}
