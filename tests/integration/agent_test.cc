// The real guest agent binary (agent/guest/, paddock-agent) in its host test mode, driven through
// AgentClient over a socketpair (or its unix socket): real processes, no mocks.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "paddock/runtime/agent_client.h"

namespace rt = paddock::runtime;
using paddock::testing::TempDir;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

extern char** environ;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// paddock-agent run with `args`; `channel` (if >= 0) becomes its fd 100. Its stdout and stderr go
// to files in `dir`.
pid_t spawn_agent(const TempDir& dir, const std::vector<std::string>& args, int channel) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (channel >= 0) posix_spawn_file_actions_adddup2(&actions, channel, 100);
  posix_spawn_file_actions_addopen(&actions, 1, (dir.path() + "/agent.out").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, (dir.path() + "/agent.err").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> all = {PADDOCK_AGENT_BIN};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, PADDOCK_AGENT_BIN, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE_MESSAGE(rc == 0, "posix_spawn paddock-agent: " << std::strerror(rc));
  return pid;
}

// The exit status of `pid` within `timeout`, else nullopt (then it is SIGKILLed and reaped).
std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  int status = 0;
  while (Clock::now() < end) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(5ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return std::nullopt;
}

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

// An agent on a socketpair, with an AgentClient on the other end. The destructor closes the
// client (end of stream: the agent exits 0) and checks that it did.
struct AgentFixture {
  TempDir dir;
  std::string work;
  pid_t pid = -1;
  int raw = -1;         // our end of the socketpair (owned by `client` once it exists)
  bool reaped = false;  // a test killed and reaped the agent itself
  std::unique_ptr<rt::AgentClient> client;

  explicit AgentFixture(bool make_client = true) {
    work = dir.path() + "/work";
    std::filesystem::create_directories(work);
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid = spawn_agent(dir, {"--channel-fd", "100", "--work-dir", work}, sv[1]);
    ::close(sv[1]);
    raw = sv[0];
    if (make_client) client = std::make_unique<rt::AgentClient>(raw);
  }
  ~AgentFixture() {
    if (client) {
      client.reset();
    } else if (raw >= 0) {
      ::close(raw);
    }
    if (reaped) return;
    const auto status = wait_exit(pid, 10s);
    CHECK_MESSAGE(status.has_value(), "the agent did not exit at end of stream");
    if (status) {
      CHECK_MESSAGE((WIFEXITED(*status) && WEXITSTATUS(*status) == 0),
                    "agent status " << *status << "; its stderr: " << log());
    }
  }
  std::string log() const { return read_file(dir.path() + "/agent.err"); }

  rt::ExecResult run(const rt::ExecRequest& request, std::chrono::milliseconds deadline = 30s) {
    auto r = client->exec(request, std::stop_token{}, deadline);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message()) << "; agent log: " << log());
    return r.value();
  }
};

rt::ExecRequest argv_request(std::vector<std::string> argv) {
  rt::ExecRequest r;
  r.argv = std::move(argv);
  return r;
}

rt::ExecRequest script_request(std::string script) {
  rt::ExecRequest r;
  r.script = std::move(script);
  return r;
}

// One reply frame read off a raw socket, as a msgpack map of str keys.
std::map<std::string, msgpack::object> read_reply(int fd, msgpack::object_handle& holder) {
  std::string buf;
  char chunk[4096];
  size_t want = 4;
  while (buf.size() < want) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    REQUIRE(n > 0);
    buf.append(chunk, static_cast<size_t>(n));
    if (buf.size() >= 4) {
      const auto* p = reinterpret_cast<const unsigned char*>(buf.data());
      want = 4 + ((size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3]);
    }
  }
  REQUIRE(buf.size() == want);  // one reply, nothing after it
  holder = msgpack::unpack(buf.data() + 4, buf.size() - 4);
  std::map<std::string, msgpack::object> out;
  holder.get().convert(out);
  return out;
}

}  // namespace

TEST_CASE("agent: ping answers pong with the agent's version") {
  AgentFixture a;
  CHECK(a.client->ping(5s));
  CHECK(a.client->agent_version() == "0.1.0");
  CHECK(a.client->ping(5s));
  CHECK(a.log().find("paddock-agent: ready on fd 100") != std::string::npos);
}

TEST_CASE("agent: echo, exit code, stderr, signal, command not found") {
  AgentFixture a;
  auto r = a.run(argv_request({"echo", "hello", "world"}));
  CHECK(r.exit_code == 0);
  CHECK(r.signal == 0);
  CHECK(r.stdout_data == "hello world\n");
  CHECK(r.stderr_data.empty());
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.stdout_truncated);
  CHECK(r.usage.peak_memory_kib > 0);

  r = a.run(argv_request({"sh", "-c", "echo to-err >&2; exit 42"}));
  CHECK(r.exit_code == 42);
  CHECK(r.stderr_data == "to-err\n");
  CHECK(r.stdout_data.empty());

  r = a.run(argv_request({"sh", "-c", "kill -TERM $$"}));
  CHECK(r.signal == SIGTERM);
  CHECK(r.exit_code == 128 + SIGTERM);
  CHECK_FALSE(r.timed_out);

  r = a.run(argv_request({"no-such-program-paddock"}));
  CHECK(r.exit_code == 127);
  CHECK(r.stderr_data ==
        "paddock-agent: cannot run no-such-program-paddock: No such file or directory\n");

  r = a.run(argv_request({"sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"}));
  CHECK(r.usage.cpu_us > 0);
}

TEST_CASE("agent: stdin is fed through a pipe, env is the request's, PATH has a default") {
  AgentFixture a;
  auto req = argv_request({"cat"});
  req.stdin_data = std::string("line one\n\0binary\xff", 17);
  auto r = a.run(req);
  CHECK(r.stdout_data == req.stdin_data);

  // Bigger than any pipe buffer, through a program that reads it all.
  req = argv_request({"wc", "-c"});
  req.stdin_data = std::string(5u << 20, 'x');
  r = a.run(req);
  CHECK(r.stdout_data == "5242880\n");

  // A program that does not read its stdin still ends.
  req = argv_request({"true"});
  req.stdin_data = std::string(4u << 20, 'y');
  r = a.run(req);
  CHECK(r.exit_code == 0);

  req = argv_request({"env"});
  req.env = {{"FOO", "bar baz"}, {"EMPTY", ""}};
  r = a.run(req);
  CHECK(r.stdout_data.find("FOO=bar baz\n") != std::string::npos);
  CHECK(r.stdout_data.find("EMPTY=\n") != std::string::npos);
  CHECK(r.stdout_data.find("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n") !=
        std::string::npos);
  CHECK(r.stdout_data.find("HOME=") == std::string::npos);  // nothing of the agent's own

  req = argv_request({"sh", "-c", "echo $PATH; pwd"});
  req.env = {{"PATH", "/bin:/usr/bin"}};
  r = a.run(req);
  CHECK(r.stdout_data == "/bin:/usr/bin\n" + a.work + "\n");
}

TEST_CASE("agent: files in are written under the work dir, files out are read back capped") {
  AgentFixture a;
  auto req = script_request(
      "cat a/b/in.txt; stat -c %a a/b/in.txt run.sh; ./run.sh; printf 1234567890 > out.txt; "
      "mkdir -p d; printf small > d/small.txt; mkdir outdir");
  req.files = {{"a/b/in.txt", 0600, "file data\n"},
               {"run.sh", 0755, "#!/bin/sh\necho from run.sh\n"}};
  req.files_out = {"out.txt", "d/small.txt", "missing.txt", "outdir"};
  req.output_cap = 6;     // per stream
  req.files_out_cap = 6;  // per file out
  auto r = a.run(req);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "file d");
  CHECK(r.stdout_truncated);
  REQUIRE(r.files.size() == 2);  // the missing file and the directory are left out
  CHECK(r.files[0].path == "out.txt");
  CHECK(r.files[0].data == "123456");
  CHECK(r.files[0].truncated);
  CHECK(r.files[1].path == "d/small.txt");
  CHECK(r.files[1].data == "small");
  CHECK_FALSE(r.files[1].truncated);
  CHECK(read_file(a.work + "/a/b/in.txt") == "file data\n");
  CHECK((std::filesystem::status(a.work + "/run.sh").permissions() &
         std::filesystem::perms::owner_exec) != std::filesystem::perms::none);

  req = script_request("cat a/b/in.txt; stat -c %a a/b/in.txt run.sh; ./run.sh");
  req.files = {{"a/b/in.txt", 0600, "file data\n"},
               {"run.sh", 0755, "#!/bin/sh\necho from run.sh\n"}};
  r = a.run(req);
  CHECK(r.stdout_data == "file data\n600\n755\nfrom run.sh\n");

  // A symlink a job leaves cannot lead a later file outside the work dir.
  r = a.run(script_request("ln -s " + a.dir.path() + " escape"));
  req = argv_request({"true"});
  req.files = {{"escape/owned.txt", 0644, "x"}};
  auto refused = a.client->exec(req, std::stop_token{}, 10s);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message().find("files[0] escape/owned.txt") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(a.dir.path() + "/owned.txt"));
  req = argv_request({"true"});
  req.files_out = {"escape/agent.err"};
  r = a.run(req);
  CHECK(r.files.empty());
}

TEST_CASE("agent: a bad request is answered with an error naming the field") {
  AgentFixture a;
  auto req = argv_request({"true"});
  req.files = {{"../outside", 0644, "x"}};
  auto r = a.client->exec(req, std::stop_token{}, 10s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().variant() == rt::Variant::kGuestAgent);
  CHECK(r.error().message() ==
        "guest agent error: exec: the agent could not run the request: files[0].path: no '..', "
        "'.' or empty parts allowed");
  r = a.client->exec(rt::ExecRequest{}, std::stop_token{}, 10s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail() ==
        "exec: the agent could not run the request: argv: required (or script)");
  CHECK(a.client->ping(5s));  // and it goes on serving
}

TEST_CASE("agent: a script runs with /bin/sh -c") {
  AgentFixture a;
  auto req = script_request("for x in 1 2 3; do printf $x; done; echo; exit 7");
  auto r = a.run(req);
  CHECK(r.stdout_data == "123\n");
  CHECK(r.exit_code == 7);
}

TEST_CASE("agent: timeout kills the whole process tree and keeps the output so far") {
  AgentFixture a;
  auto req = script_request(
      "sleep 100 & echo $! > bg.pid; setsid sleep 100 & echo $! > escaped.pid; "
      "echo partial; echo err-partial >&2; sleep 100");
  req.timeout_ms = 700;
  const auto t0 = Clock::now();
  auto r = a.run(req);
  const auto took = Clock::now() - t0;
  CHECK(r.timed_out);
  CHECK(r.signal == SIGKILL);
  CHECK(r.exit_code == 128 + SIGKILL);
  CHECK(r.stdout_data == "partial\n");
  CHECK(r.stderr_data == "err-partial\n");
  CHECK(took >= 700ms);
  CHECK(took < 5s);
  const pid_t bg = std::stoi(read_file(a.work + "/bg.pid"));
  const pid_t escaped = std::stoi(read_file(a.work + "/escaped.pid"));
  CHECK(process_gone(bg));       // killed and reaped, not a zombie
  CHECK(process_gone(escaped));  // even in a session of its own

  // A job that exits leaves nothing behind either.
  r = a.run(script_request("sleep 100 & echo $! > left.pid; echo done"));
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "done\n");
  CHECK(process_gone(std::stoi(read_file(a.work + "/left.pid"))));
}

TEST_CASE("agent: output caps truncate, and a job writing 100 MB does not hang") {
  AgentFixture a;
  auto req = script_request("head -c 100000000 /dev/zero; echo tail >&2");
  req.output_cap = 1000;
  const auto t0 = Clock::now();
  auto r = a.run(req);
  CHECK(Clock::now() - t0 < 30s);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == std::string(1000, '\0'));
  CHECK(r.stdout_truncated);
  CHECK(r.stderr_data == "tail\n");
  CHECK_FALSE(r.stderr_truncated);

  req = script_request("printf 12345; printf abcde >&2");
  req.output_cap = 5;  // exactly the cap: not truncated
  r = a.run(req);
  CHECK(r.stdout_data == "12345");
  CHECK_FALSE(r.stdout_truncated);
  CHECK(r.stderr_data == "abcde");
  CHECK_FALSE(r.stderr_truncated);

  req.output_cap = 0;
  r = a.run(req);
  CHECK(r.stdout_data.empty());
  CHECK(r.stdout_truncated);
}

TEST_CASE("agent: garbage frames are answered with errors, not a crash") {
  AgentFixture a(/*make_client=*/false);
  msgpack::object_handle h;
  // A frame whose body is not msgpack.
  REQUIRE(::write(a.raw, "\0\0\0\3abc", 7) == 7);
  auto reply = read_reply(a.raw, h);
  CHECK(reply.at("ok").as<bool>() == false);
  CHECK(reply.at("id").as<uint64_t>() == 0);
  CHECK(reply.at("error").as<std::string>() == "body: trailing bytes after the msgpack object");
  // An empty frame.
  REQUIRE(::write(a.raw, "\0\0\0\0", 4) == 4);
  reply = read_reply(a.raw, h);
  CHECK(reply.at("error").as<std::string>() == "frame: empty (length 0)");
  // A request with an id and a bad field: answered with its id.
  msgpack::sbuffer body;
  msgpack::packer<msgpack::sbuffer> pk(body);
  pk.pack_map(4);
  pk.pack(std::string("v"));
  pk.pack(1);
  pk.pack(std::string("id"));
  pk.pack(77);
  pk.pack(std::string("op"));
  pk.pack(std::string("exec"));
  pk.pack(std::string("argv"));
  pk.pack(3);
  const uint32_t n = static_cast<uint32_t>(body.size());
  const char hdr[4] = {0, 0, 0, static_cast<char>(n)};
  REQUIRE(::write(a.raw, hdr, 4) == 4);
  REQUIRE(::write(a.raw, body.data(), n) == n);
  reply = read_reply(a.raw, h);
  CHECK(reply.at("id").as<uint64_t>() == 77);
  CHECK(reply.at("error").as<std::string>() == "argv: expected array, got integer");
  // An oversized length: refused at once, its bytes skipped as they come.
  REQUIRE(::write(a.raw, "\x02\x00\x00\x01", 4) == 4);
  reply = read_reply(a.raw, h);
  CHECK(reply.at("error").as<std::string>() == "frame: length 33554433 exceeds 33554432");
  const std::string filler(1u << 20, 'z');
  size_t left = (32u << 20) + 1;
  while (left > 0) {
    const size_t k = std::min(left, filler.size());
    ssize_t w = ::write(a.raw, filler.data(), k);
    REQUIRE(w > 0);
    left -= static_cast<size_t>(w);
  }
  // Still in step: a client on the same stream works.
  a.client = std::make_unique<rt::AgentClient>(a.raw);
  CHECK(a.client->ping(10s));
  auto r = a.run(argv_request({"echo", "still here"}));
  CHECK(r.stdout_data == "still here\n");
}

TEST_CASE("agent: cancel ends the wait at once with a cancelled result") {
  AgentFixture a;
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(200ms);
    stop.request_stop();
  });
  const auto t0 = Clock::now();
  auto r = a.client->exec(argv_request({"sleep", "2"}), stop.get_token(), 30s);
  const auto took = Clock::now() - t0;
  canceller.join();
  REQUIRE(r.ok());
  CHECK(r.value().cancelled);
  CHECK(took < 1s);
  // The stream is still usable: the late result is skipped by id.
  CHECK(a.client->ping(10s));
}

TEST_CASE("agent: a reply later than the deadline is an error, and is skipped afterwards") {
  AgentFixture a;
  auto r =
      a.client->exec(argv_request({"sh", "-c", "sleep 1; echo late"}), std::stop_token{}, 300ms);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() ==
        "guest agent error: exec: no reply from the guest agent within 300 ms");
  CHECK_FALSE(r.error().retryable());
  CHECK(a.client->healthy());
  auto next = a.run(argv_request({"echo", "next"}));
  CHECK(next.stdout_data == "next\n");
}

TEST_CASE("agent: a peer that goes away gives a clear error") {
  AgentFixture a;
  REQUIRE(a.client->ping(5s));
  ::kill(a.pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(a.pid, &status, 0) == a.pid);
  a.reaped = true;
  auto r = a.client->exec(argv_request({"true"}), std::stop_token{}, 5s);
  REQUIRE_FALSE(r.ok());
  const std::string m = r.error().message();
  CHECK_MESSAGE((m == "guest agent error: read agent channel: closed by the guest" ||
                 m == "guest agent error: write agent channel: Broken pipe" ||
                 m == "guest agent error: read agent channel: Connection reset by peer"),
                m);
  CHECK_FALSE(a.client->healthy());
  r = a.client->exec(argv_request({"true"}), std::stop_token{}, 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail().rfind("agent channel unusable: ", 0) == 0);
  CHECK_FALSE(a.client->ping(1s));
  a.reaped = true;
}

TEST_CASE("agent: --listen-unix serves one connection, and shutdown makes it exit 0") {
  TempDir dir;
  const std::string sock = dir.path() + "/agent.sock";
  const pid_t pid = spawn_agent(dir, {"--listen-unix", sock, "--work-dir", dir.path()}, -1);
  int fd = -1;
  for (int i = 0; i < 500 && fd < 0; ++i) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      fd = -1;
      std::this_thread::sleep_for(10ms);
    }
  }
  REQUIRE(fd >= 0);
  rt::AgentClient client(fd);
  CHECK(client.ping(5s));
  auto r = client.exec(argv_request({"pwd"}), std::stop_token{}, 10s);
  REQUIRE(r.ok());
  CHECK(r.value().stdout_data == dir.path() + "\n");
  CHECK(client.shutdown(5s).ok());
  const auto status = wait_exit(pid, 5s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK_FALSE(std::filesystem::exists(sock));  // removed once accepted
}

TEST_CASE("agent: modules are loaded after their dependencies (--module-order)") {
  TempDir dir;
  {
    std::ofstream dep(dir.path() + "/modules.dep");
    dep << "kernel/drivers/char/virtio_console.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz "
           "kernel/drivers/virtio/virtio.ko.xz\n"
           "kernel/drivers/virtio/virtio_ring.ko.xz: kernel/drivers/virtio/virtio.ko.xz\n"
           "kernel/drivers/virtio/virtio.ko.xz:\n"
           "kernel/drivers/virtio/virtio_mmio.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz "
           "kernel/drivers/virtio/virtio.ko.xz\n"
           "kernel/net/vmw_vsock/vmw-vsock-virtio-transport.ko: kernel/net/vsock.ko\n"
           "kernel/net/vsock.ko:\n";
    std::ofstream builtin(dir.path() + "/modules.builtin");
    builtin << "kernel/drivers/block/virtio_blk.ko\n";
  }
  const auto order = [&](const std::vector<std::string>& names) {
    std::vector<std::string> args = {"--module-order", "--modules-dir", dir.path()};
    args.insert(args.end(), names.begin(), names.end());
    const auto status = wait_exit(spawn_agent(dir, args, -1), 10s);
    REQUIRE(status.has_value());
    return std::make_pair(WEXITSTATUS(*status), read_file(dir.path() + "/agent.out"));
  };
  auto [rc, out] = order({"virtio_mmio", "virtio_console"});
  CHECK(rc == 0);
  CHECK(out ==
        "kernel/drivers/virtio/virtio.ko.xz\n"
        "kernel/drivers/virtio/virtio_ring.ko.xz\n"
        "kernel/drivers/virtio/virtio_mmio.ko.xz\n"
        "kernel/drivers/char/virtio_console.ko.xz\n");
  // '-' and '_' are the same in module names; built-in modules need no loading.
  std::tie(rc, out) = order({"vmw_vsock-virtio_transport", "virtio_blk"});
  CHECK(rc == 0);
  CHECK(out == "kernel/net/vsock.ko\nkernel/net/vmw_vsock/vmw-vsock-virtio-transport.ko\n");
  std::tie(rc, out) = order({"virtio_console", "no_such_module"});
  CHECK(rc == 1);
  CHECK(read_file(dir.path() + "/agent.err") ==
        "paddock-agent: module no_such_module: not in modules.dep nor built in\n");
}

namespace {

std::string host_name() {
  char buf[256] = {};
  REQUIRE(::gethostname(buf, sizeof buf - 1) == 0);
  return buf;
}

std::string host_boot_id() {
  std::string id = read_file("/proc/sys/kernel/random/boot_id");
  while (!id.empty() && id.back() == '\n') id.pop_back();
  return id;
}

}  // namespace

TEST_CASE("agent: refresh in the host test mode changes nothing and reports the host as it is") {
  const std::string name_before = host_name();
  const std::string boot_id = host_boot_id();
  REQUIRE_FALSE(boot_id.empty());
  const std::string clone_name =
      name_before == "paddock-clone-7" ? "paddock-clone-8" : "paddock-clone-7";
  AgentFixture a;
  // 1970-01-01T00:00:01Z: were it applied, the host's clock would show it.
  auto r = a.client->refresh(std::string(64, '\x5a'), 1'000'000'000ull, clone_name, 10s);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message()) << "; agent log: " << a.log());
  CHECK_FALSE(r.value().applied);
  CHECK(r.value().hostname == name_before);
  CHECK(r.value().boot_id == boot_id);
  CHECK(host_name() == name_before);
  CHECK(host_boot_id() == boot_id);
  CHECK(std::chrono::system_clock::now().time_since_epoch() > std::chrono::hours(24 * 365 * 50));
  // The stream stays in step.
  CHECK(a.client->ping(5s));
  CHECK(a.run(argv_request({"echo", "after refresh"})).stdout_data == "after refresh\n");
}

TEST_CASE("agent: a bad refresh is refused by the client, and by the agent naming the field") {
  AgentFixture a(/*make_client=*/false);
  // Past the client: the agent's decoder answers with the request's id and the field.
  msgpack::sbuffer body;
  msgpack::packer<msgpack::sbuffer> pk(body);
  const std::string entropy(32, 'e');
  pk.pack_map(6);
  pk.pack(std::string("v"));
  pk.pack(1);
  pk.pack(std::string("id"));
  pk.pack(78);
  pk.pack(std::string("op"));
  pk.pack(std::string("refresh"));
  pk.pack(std::string("entropy"));
  pk.pack_bin(static_cast<uint32_t>(entropy.size()));
  pk.pack_bin_body(entropy.data(), static_cast<uint32_t>(entropy.size()));
  pk.pack(std::string("unix_time_ns"));
  pk.pack(1);
  pk.pack(std::string("hostname"));
  pk.pack(std::string("clone.example"));
  const uint32_t n = static_cast<uint32_t>(body.size());
  const char hdr[4] = {0, 0, 0, static_cast<char>(n)};
  REQUIRE(n < 256);
  REQUIRE(::write(a.raw, hdr, 4) == 4);
  REQUIRE(::write(a.raw, body.data(), n) == n);
  msgpack::object_handle h;
  auto reply = read_reply(a.raw, h);
  CHECK(reply.at("id").as<uint64_t>() == 78);
  CHECK(reply.at("ok").as<bool>() == false);
  CHECK(reply.at("error").as<std::string>() == "hostname: only A-Z, a-z, 0-9 and '-' allowed");

  // The client refuses what the agent would, without sending it.
  a.client = std::make_unique<rt::AgentClient>(a.raw);
  auto r = a.client->refresh(std::string(31, 'e'), 1, "clone", 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().variant() == rt::Variant::kGuestAgent);
  CHECK(r.error().detail() == "refresh: bad request: entropy: shorter than 32 bytes");
  r = a.client->refresh(entropy, 0, "clone", 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail() == "refresh: bad request: unix_time_ns: must not be 0");
  r = a.client->refresh(entropy, 1, "-clone", 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail() == "refresh: bad request: hostname: must not start with '-'");
  CHECK(a.client->healthy());
  CHECK(a.client->ping(5s));
}
