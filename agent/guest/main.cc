// paddock-agent: the guest agent (agent/guest/README.md).
//
// As PID 1 of a guest: mount, load modules, find the `paddock.agent` virtio-serial port (or, with
// paddock.channel=vsock on the kernel command line, listen on vsock port 1024), serve the guest
// agent protocol on it for ever; a shutdown request powers the guest off.
// On a host (a test mode, not PID 1): serve the same protocol on an inherited fd or on one
// connection to a unix socket, with jobs under --work-dir; end of stream or shutdown exits 0. Or
// (--serve-unix) serve connection after connection on a unix socket exactly as on vsock, until a
// shutdown request.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "channel.h"
#include "console.h"
#include "exec.h"
#include "init.h"
#include "modules.h"
#include "network.h"
#include "paddock/agent/protocol.h"
#include "paddock/base/os_error.h"
#include "reaper.h"
#include "refresh.h"
#include "rootfs.h"

namespace paddock::guest {
namespace {

namespace agent = runtime::agent;

constexpr const char* kPortName = "paddock.agent";
constexpr int kPortWaitMs = 10'000;
// With no host on the port, how long to wait before looking again: a read answers 0 at once and
// poll() reports POLLHUP at once, so there is no blocking wait for a host. Look often at first (a
// restored clone's host connects within milliseconds), then every 50 ms (measured under TCG:
// 5 ms costs the idle guest about 6% of a vCPU).
constexpr int kNoPeerRetryMs = 5;
constexpr int kNoPeerSlowRetryMs = 50;
constexpr auto kNoPeerFastPeriod = std::chrono::seconds(1);

constexpr const char* kUsage =
    "usage: paddock-agent                                 (as PID 1 of a guest)\n"
    "       paddock-agent --channel-fd N --work-dir DIR   (host test mode)\n"
    "       paddock-agent --listen-unix PATH --work-dir DIR\n"
    "       paddock-agent --serve-unix PATH --work-dir DIR   (connection after connection)\n"
    "       paddock-agent --module-order --modules-dir DIR NAME...\n"
    "                     (prints the load order of modules NAME... and their dependencies)\n";

struct Options {
  int channel_fd = -1;
  std::string listen_unix;
  std::string serve_unix;
  std::string work_dir;
  bool module_order = false;
  std::string modules_dir;
  std::vector<std::string> names;
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--channel-fd" && (v = value())) {
      char* end = nullptr;
      o.channel_fd = static_cast<int>(std::strtol(v, &end, 10));
      if (*end != '\0' || o.channel_fd < 0) return false;
    } else if (a == "--listen-unix" && (v = value())) {
      o.listen_unix = v;
    } else if (a == "--serve-unix" && (v = value())) {
      o.serve_unix = v;
    } else if (a == "--work-dir" && (v = value())) {
      o.work_dir = v;
    } else if (a == "--modules-dir" && (v = value())) {
      o.modules_dir = v;
    } else if (a == "--module-order") {
      o.module_order = true;
    } else if (o.module_order && a.rfind("--", 0) != 0) {
      o.names.push_back(a);
    } else {
      return false;
    }
  }
  if (o.module_order) return !o.modules_dir.empty() && !o.names.empty();
  const int channels = (o.channel_fd >= 0) + !o.listen_unix.empty() + !o.serve_unix.empty();
  return channels == 1 && !o.work_dir.empty() && o.work_dir.front() == '/';
}

// Answers one request. Sets `shutdown` for a shutdown request. A refresh changes the machine only
// `in_vm` (as PID 1); in the host test mode it changes nothing.
agent::Reply answer(const agent::Decoded<std::string>& frame, const JobContext& jobs, bool in_vm,
                    bool& shutdown, Channel& channel) {
  agent::Reply reply;
  if (!frame) {
    reply.kind = agent::ReplyKind::kError;
    reply.error = frame.error().message();
    return reply;
  }
  auto request = agent::decode_request(frame.value());
  if (!request) {
    reply.id = request.error().id;
    reply.kind = agent::ReplyKind::kError;
    reply.error = request.error().message();
    return reply;
  }
  reply.id = request.value().id;
  switch (request.value().op) {
    case agent::Op::kPing:
      reply.kind = agent::ReplyKind::kPong;
      reply.agent_version = PADDOCK_AGENT_VERSION;
      break;
    case agent::Op::kExec: {
      JobContext context = jobs;
      if (request.value().exec.stream) {
        // Each piece goes out as it is read, ahead of the result, with the exec's id. A host that
        // does not read blocks the job's output pipe as it would block the result.
        // A piece that cannot be sent (no host on the port just now) is dropped: the result has
        // the output. Said once per exec, not once per piece.
        const uint64_t id = request.value().id;
        context.on_output = [&channel, id, told = false](agent::OutputStream stream,
                                                         uint64_t offset,
                                                         std::string_view data) mutable {
          agent::Reply piece;
          piece.id = id;
          piece.kind = agent::ReplyKind::kOutput;
          piece.output = {stream, offset, std::string(data)};
          if (auto err = channel.send(agent::frame(agent::encode_reply(piece)));
              !err.empty() && !told) {
            say("live output of exec " + std::to_string(id) + ": " + err);
            told = true;
          }
        };
      }
      JobRun run = run_job(request.value().exec, context);
      if (run.ran) {
        reply.kind = agent::ReplyKind::kResult;
        reply.result = std::move(run.outcome);
      } else {
        reply.kind = agent::ReplyKind::kError;
        reply.error = std::move(run.error);
      }
      break;
    }
    case agent::Op::kShutdown:
      reply.kind = agent::ReplyKind::kShutdown;
      shutdown = true;
      break;
    case agent::Op::kRefresh: {
      Refresh refresh = refresh_identity(request.value().refresh, /*apply=*/in_vm);
      if (refresh.ok) {
        reply.kind = agent::ReplyKind::kRefreshed;
        reply.refreshed = std::move(refresh.identity);
      } else {
        reply.kind = agent::ReplyKind::kError;
        reply.error = std::move(refresh.error);
      }
      if (in_vm && refresh.ok) {
        say("refreshed: hostname " + reply.refreshed.hostname + ", boot id " +
            reply.refreshed.boot_id);
      } else if (in_vm) {
        say("refresh failed: " + reply.error);
      }
      break;
    }
  }
  return reply;
}

enum class Ended { kShutdown, kEndOfStream, kError, kNewPeer };

struct ServeMode {
  bool in_vm = false;  // a refresh changes the machine; errors are said, not fatal
  // A virtio-serial port: end of stream means "no host now", and the host comes back on the same
  // channel. Otherwise (a socket) end of stream ends the channel.
  bool port = false;
  int listener = -1;  // a listening socket: a new connection on it ends this one (kNewPeer)
};

// Serves requests one at a time until shutdown (or, on a socket, the end of the stream or a new
// connection), reaping every child that exits meanwhile.
Ended serve(Channel& channel, Reaper& reaper, const JobContext& jobs, const ServeMode& mode) {
  bool look_later = false;  // no host on the port just now: leave the channel out of one poll
  std::optional<std::chrono::steady_clock::time_point> absent_since;
  for (;;) {
    while (auto frame = channel.next()) {
      bool shutdown = false;
      const std::string out =
          agent::frame(agent::encode_reply(answer(*frame, jobs, mode.in_vm, shutdown, channel)));
      if (auto err = channel.send(out); !err.empty()) {
        say(err);
        if (!mode.port) return Ended::kError;
      }
      if (shutdown) return Ended::kShutdown;
    }
    int wait_ms = -1;
    if (look_later) {
      const bool fast = std::chrono::steady_clock::now() - *absent_since < kNoPeerFastPeriod;
      wait_ms = fast ? kNoPeerRetryMs : kNoPeerSlowRetryMs;
    }
    pollfd fds[3] = {{reaper.fd(), POLLIN, 0},
                     {look_later ? -1 : channel.fd(), POLLIN, 0},
                     {mode.listener, POLLIN, 0}};
    if (::poll(fds, 3, wait_ms) < 0 && errno != EINTR) {
      say(base::error_message("poll"));
      return Ended::kError;
    }
    if (fds[0].revents != 0) reaper.reap();
    // The host connected anew: this connection's host is gone (a restored clone's old one).
    if (fds[2].revents != 0) return Ended::kNewPeer;
    look_later = false;
    if (fds[1].revents == 0) continue;
    std::string error;
    const Channel::Read read = channel.pump(error);
    if (read == Channel::Read::kData) {
      absent_since.reset();
      continue;
    }
    if (read == Channel::Read::kError && (!mode.port || !absent_since)) say(error);  // once
    if (!mode.port) return read == Channel::Read::kNoPeer ? Ended::kEndOfStream : Ended::kError;
    if (!absent_since) absent_since = std::chrono::steady_clock::now();
    look_later = true;
  }
}

// Serves connection after connection on `listener` (vsock in a VM, a unix socket in the host test
// mode) until a shutdown request; a new connection replaces the one being served. Children are
// reaped while no host is connected too. kError only when accepting fails for good.
Ended serve_listener(int listener, const std::string& name, Reaper& reaper, const JobContext& jobs,
                     bool in_vm) {
  for (;;) {
    pollfd fds[2] = {{reaper.fd(), POLLIN, 0}, {listener, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
      say(base::error_message("poll"));
      return Ended::kError;
    }
    if (fds[0].revents != 0) reaper.reap();
    if (fds[1].revents == 0) continue;
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      say(base::error_message("accept on " + name));
      return Ended::kError;
    }
    Channel channel(fd, name);
    if (serve(channel, reaper, jobs, ServeMode{in_vm, false, listener}) == Ended::kShutdown) {
      return Ended::kShutdown;
    }
    // End of stream, an error on this connection, or a newer one: accept the next.
  }
}

// The common setup of both modes: SIGPIPE ignored (writes to a closed pipe or socket fail with
// EPIPE instead), SIGCHLD as an fd.
bool setup_signals(Reaper& reaper) {
  ::signal(SIGPIPE, SIG_IGN);
  if (auto err = reaper.init(); !err.empty()) {
    say(err);
    return false;
  }
  return true;
}

[[noreturn]] void fatal(const std::string& why) {
  say("fatal: " + why);
  power_off();
}

[[noreturn]] void run_as_init() {
  // /dev/console (for the messages below) is only there once devtmpfs is mounted.
  const auto mount_errors = mount_filesystems();
  ensure_std_fds("/dev/console");
  for (const auto& e : mount_errors) say(e);
  Reaper reaper;
  if (!setup_signals(reaper)) fatal("cannot watch child processes");
  std::vector<std::string> loaded;
  for (const auto& e : load_needed_modules(loaded)) say(e);
  std::string names;
  for (const auto& m : loaded) names += (names.empty() ? "" : " ") + m;
  if (!names.empty()) say("loaded modules: " + names);
  // An image with a root filesystem: jobs run in it (the host says so on the command line).
  std::map<std::string, std::string> image_env;
  std::string cmdline;
  if (std::FILE* f = std::fopen("/proc/cmdline", "r")) {
    char buf[4096];
    cmdline.assign(buf, std::fread(buf, 1, sizeof buf - 1, f));
    std::fclose(f);
  }
  if (const std::string device = rootfs_device(cmdline); !device.empty()) {
    std::vector<std::string> rootfs_modules;
    if (auto err = enter_rootfs(device, rootfs_modules, image_env); !err.empty()) {
      fatal("root filesystem " + device + ": " + err);
    }
    std::string mods;
    for (const auto& m : rootfs_modules) mods += " " + m;
    say("root filesystem " + device + ": read-only, tmpfs overlay, jobs run in it (modules" + mods +
        ")");
  }
  std::string network;
  for (const auto& e : configure_network(network)) say(e);
  say("network: " + network);
  JobContext jobs{"/work", &reaper, std::move(image_env)};
  std::string error;
  if (wants_vsock(cmdline)) {
    const int listener = listen_vsock(kAgentVsockPort, error);
    if (listener < 0) fatal(error);
    const std::string name = "vsock port " + std::to_string(kAgentVsockPort);
    say("ready on " + name);
    if (serve_listener(listener, name, reaper, jobs, /*in_vm=*/true) != Ended::kShutdown) {
      fatal("the agent's listener on " + name + " failed");
    }
  } else {
    std::string path;
    const int fd = open_virtio_port(kPortName, kPortWaitMs, path, error);
    if (fd < 0) fatal(error);
    Channel channel(fd, path);
    say("ready on " + path);
    serve(channel, reaper, jobs, ServeMode{/*in_vm=*/true, /*port=*/true, -1});
  }
  say("shutdown requested: powering off");
  power_off();
}

int run_on_host(const Options& o) {
  // Jobs' orphans are re-parented to us, not to the host's init, so they can be killed and
  // reaped with the job.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) say(base::error_message("prctl child subreaper"));
  Reaper reaper;
  if (!setup_signals(reaper)) return 1;
  if (!o.serve_unix.empty()) {
    std::string error;
    const int listener = listen_unix(o.serve_unix, error);
    if (listener < 0) {
      say(error);
      return 1;
    }
    const std::string name = "unix:" + o.serve_unix;
    say("ready on " + name);
    const Ended ended = serve_listener(listener, name, reaper, JobContext{o.work_dir, &reaper, {}},
                                       /*in_vm=*/false);
    ::close(listener);
    ::unlink(o.serve_unix.c_str());
    return ended == Ended::kShutdown ? 0 : 1;
  }
  int fd = o.channel_fd;
  std::string name = "fd " + std::to_string(fd);
  if (fd >= 0) {
    // Inherited: not for the jobs.
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      say(base::error_message("channel " + name));
      return 1;
    }
  } else {
    std::string error;
    fd = accept_one_unix(o.listen_unix, error);
    if (fd < 0) {
      say(error);
      return 1;
    }
    name = "unix:" + o.listen_unix;
  }
  Channel channel(fd, name);
  say("ready on " + name);
  switch (serve(channel, reaper, JobContext{o.work_dir, &reaper, {}}, ServeMode{})) {
    case Ended::kShutdown:
    case Ended::kEndOfStream:
      return 0;
    case Ended::kError:
    case Ended::kNewPeer:
      return 1;
  }
  return 1;
}

int print_module_order(const Options& o) {
  ModuleIndex index;
  if (auto err = read_module_index(o.modules_dir, index); !err.empty()) {
    say(err);
    return 1;
  }
  const LoadPlan plan = plan_modules(index, o.names, {});
  for (const auto& p : plan.paths) std::printf("%s\n", p.c_str());
  for (const auto& m : plan.missing) say("module " + m + ": not in modules.dep nor built in");
  return plan.missing.empty() ? 0 : 1;
}

}  // namespace
}  // namespace paddock::guest

int main(int argc, char** argv) {
  using namespace paddock::guest;
  // The kernel hands init the command line's unknown words: as PID 1, arguments are ignored.
  if (::getpid() == 1) run_as_init();
  if (argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  Options o;
  if (!parse(argc, argv, o)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  ensure_std_fds("/dev/null");
  return o.module_order ? print_module_order(o) : run_on_host(o);
}
