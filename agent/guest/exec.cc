#include "exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "files.h"
#include "paddock/base/os_error.h"

namespace paddock::guest {
namespace {

using Clock = std::chrono::steady_clock;
namespace agent = runtime::agent;

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// After the job's first process ended: how long the processes it left may take to die and
// close their end of the output pipes.
constexpr std::chrono::milliseconds kDrain{2000};
constexpr size_t kChunk = 64u << 10;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// One output stream of the job, kept up to `cap` bytes.
struct Capture {
  Fd fd;
  std::string data;
  size_t cap = 0;
  bool truncated = false;
  agent::OutputStream stream = agent::OutputStream::kStdout;
  const JobContext* context = nullptr;  // its on_output, when streaming

  // Reads what is there now (a bounded number of chunks, so that the loop stays responsive to a
  // job writing without pause); closes the fd at end of stream.
  void pump() {
    char buf[kChunk];
    for (int i = 0; i < 64 && fd.fd >= 0; ++i) {
      const ssize_t n = ::read(fd.fd, buf, sizeof buf);
      if (n > 0) {
        const size_t keep = std::min(static_cast<size_t>(n), cap - data.size());
        data.append(buf, keep);
        if (keep < static_cast<size_t>(n)) truncated = true;
        if (keep > 0 && context != nullptr && context->on_output) {
          context->on_output(stream, data.size() - keep, std::string_view(buf, keep));
        }
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
      } else {
        fd.reset();
      }
    }
  }
};

std::string make_dirs(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return base::error_message("cwd " + path + ": mkdir " + prefix);
    }
    if (slash == std::string::npos) return {};
  }
}

// Where execve looks for argv[0]: itself if it holds a '/', else each directory of PATH.
std::vector<std::string> candidates(const std::string& program, const std::string& path) {
  if (program.find('/') != std::string::npos) return {program};
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t colon = path.find(':', start);
    std::string dir =
        path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    out.push_back((dir.empty() ? std::string(".") : dir) + "/" + program);
    if (colon == std::string::npos) return out;
    start = colon + 1;
  }
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the child, between fork and execve. Never returns.
[[noreturn]] void become_job(int stdin_fd, int stdout_fd, int stderr_fd, int dirfd,
                             const std::vector<std::string>& programs, char* const* argv,
                             char* const* envp) {
  // A session of its own: the job has no controlling terminal, and its process group is not
  // the agent's.
  ::setsid();
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU}) {
    ::signal(s, SIG_DFL);
  }
  if (::dup2(stdin_fd, 0) < 0 || ::dup2(stdout_fd, 1) < 0 || ::dup2(stderr_fd, 2) < 0) _exit(126);
  if (::fchdir(dirfd) != 0) _exit(126);
  ::close_range(3, ~0u, 0);  // everything else is O_CLOEXEC anyway
  int err = ENOENT;
  for (const auto& p : programs) {
    ::execve(p.c_str(), argv, envp);
    if (errno == EACCES) {
      err = EACCES;  // keep looking, as execvp does, but report this if nothing else runs
    } else if (errno != ENOENT && errno != ENOTDIR) {
      err = errno;
      break;
    }
  }
  const std::string msg =
      "paddock-agent: cannot run " + std::string(argv[0]) + ": " + std::strerror(err) + "\n";
  [[maybe_unused]] ssize_t n = ::write(2, msg.data(), msg.size());
  _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
}

int ms_until(Clock::time_point t) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1000));
}

uint64_t micros(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1'000'000 + static_cast<uint64_t>(tv.tv_usec);
}

// The kernel's count of OOM kills since boot (`oom_kill` in /proc/vmstat, Linux >= 4.13); nullopt
// when it cannot be read. /proc/vmstat is a few KiB of "name value" lines.
std::optional<uint64_t> oom_kill_count() {
  Fd f(::open("/proc/vmstat", O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1u << 20)) return std::nullopt;  // not what /proc/vmstat looks like
  }
  constexpr std::string_view kKey = "oom_kill ";
  for (size_t line = 0; line < text.size();) {
    size_t end = text.find('\n', line);
    if (end == std::string::npos) end = text.size();
    const std::string_view l(text.data() + line, end - line);
    if (l.substr(0, kKey.size()) == kKey) {
      uint64_t v = 0;
      const std::string_view digits = l.substr(kKey.size());
      if (digits.empty()) return std::nullopt;
      for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      return v;
    }
    line = end + 1;
  }
  return std::nullopt;
}

}  // namespace

JobRun run_job(const agent::ExecCommand& command, const JobContext& context) {
  JobRun run;
  if (command.argv.empty() && command.script.empty()) {
    run.error = "argv: required (or script)";  // the decoder refuses it; be safe anyway
    return run;
  }
  const std::string cwd = command.cwd.empty() ? context.work_dir : command.cwd;
  if (run.error = make_dirs(cwd); !run.error.empty()) return run;
  Fd dir(::open(cwd.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.fd < 0) {
    run.error = base::error_message("cwd " + cwd);
    return run;
  }
  if (run.error = write_files(dir.fd, command.files); !run.error.empty()) return run;

  // Everything the child needs is built before fork().
  std::vector<std::string> argv = command.script.empty()
                                      ? command.argv
                                      : std::vector<std::string>{"/bin/sh", "-c", command.script};
  auto env = command.env;
  for (const auto& [k, v] : context.env) env.try_emplace(k, v);
  env.try_emplace("PATH", kDefaultPath);
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  const auto programs = candidates(argv[0], env["PATH"]);
  auto argv_ptrs = pointers(argv);
  auto env_ptrs = pointers(env_strings);

  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) {
    run.error = base::error_message("pipe");
    return run;
  }
  Fd in_read(in[0]), in_write(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) {
    run.error = base::error_message("pipe");
    return run;
  }
  Fd out_write(out[1]);
  const JobContext* streaming = command.stream ? &context : nullptr;
  Capture stdout_capture{Fd(out[0]), {}, command.output_cap, false, agent::OutputStream::kStdout,
                         streaming};
  if (::pipe2(err, O_CLOEXEC) != 0) {
    run.error = base::error_message("pipe");
    return run;
  }
  Fd err_write(err[1]);
  Capture stderr_capture{Fd(err[0]), {}, command.output_cap, false, agent::OutputStream::kStderr,
                         streaming};

  // The OOM killer's count before the job; compared with the count after it (see exec.h).
  const std::optional<uint64_t> oom_kills_before = oom_kill_count();
  const auto start = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    run.error = base::error_message("fork");
    return run;
  }
  if (pid == 0) {
    become_job(in_read.fd, out_write.fd, err_write.fd, dir.fd, programs, argv_ptrs.data(),
               env_ptrs.data());
  }
  in_read.reset();
  out_write.reset();
  err_write.reset();
  for (int fd : {in_write.fd, stdout_capture.fd.fd, stderr_capture.fd.fd}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  if (command.stdin_data.empty()) in_write.reset();

  // What the job's processes did, from wait4() as each is reaped.
  bool exited = false;
  int status = 0;
  Clock::time_point end = start;
  uint64_t cpu_us = 0;
  uint64_t peak_kib = 0;
  const auto on_exit = [&](pid_t p, int st, const rusage& ru) {
    cpu_us += micros(ru.ru_utime) + micros(ru.ru_stime);
    peak_kib = std::max<uint64_t>(peak_kib, static_cast<uint64_t>(ru.ru_maxrss));
    if (p == pid) {
      exited = true;
      status = st;
      end = Clock::now();
    }
  };

  const auto deadline = start + std::chrono::milliseconds(command.timeout_ms);
  bool timed_out = false;
  std::optional<Clock::time_point> drain_until;  // set once the job is over
  size_t stdin_sent = 0;
  for (;;) {
    if (!drain_until && !exited && Clock::now() >= deadline) timed_out = true;
    if (!drain_until && (exited || timed_out)) {
      // The job is over: nothing it started may outlive it.
      in_write.reset();
      kill_descendants(*context.reaper, static_cast<int>(kDrain.count()), on_exit);
      drain_until = Clock::now() + kDrain;
    }
    if (drain_until && stdout_capture.fd.fd < 0 && stderr_capture.fd.fd < 0) break;
    if (drain_until && Clock::now() >= *drain_until) break;

    pollfd fds[4] = {{context.reaper->fd(), POLLIN, 0},
                     {stdout_capture.fd.fd, POLLIN, 0},
                     {stderr_capture.fd.fd, POLLIN, 0},
                     {in_write.fd, POLLOUT, 0}};  // poll() skips negative fds
    const int rc = ::poll(fds, 4, ms_until(drain_until.value_or(deadline)));
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    if (fds[0].revents != 0) context.reaper->reap(on_exit);
    if (fds[1].revents != 0) stdout_capture.pump();
    if (fds[2].revents != 0) stderr_capture.pump();
    if (fds[3].revents & (POLLERR | POLLHUP)) {
      in_write.reset();  // the job closed its stdin
    } else if (fds[3].revents & POLLOUT) {
      const size_t n = std::min(kChunk, command.stdin_data.size() - stdin_sent);
      const ssize_t w = ::write(in_write.fd, command.stdin_data.data() + stdin_sent, n);
      if (w > 0) stdin_sent += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || stdin_sent == command.stdin_data.size()) {
        in_write.reset();
      }
    }
  }

  auto& r = run.outcome;
  if (!exited) {
    // Not reaped within the drain time (stuck in the kernel): it was sent SIGKILL.
    status = SIGKILL;
    end = Clock::now();
  }
  if (WIFSIGNALED(status) || !exited) {
    r.signal = exited ? WTERMSIG(status) : SIGKILL;
    r.exit_code = 128 + r.signal;
  } else {
    r.exit_code = WEXITSTATUS(status);
  }
  r.stdout_data = std::move(stdout_capture.data);
  r.stderr_data = std::move(stderr_capture.data);
  r.stdout_truncated = stdout_capture.truncated;
  r.stderr_truncated = stderr_capture.truncated;
  r.timed_out = timed_out;
  // Every process of the job is reaped by now, so an OOM kill of one of them has been counted.
  const std::optional<uint64_t> oom_kills_after = oom_kill_count();
  r.oom_killed = r.signal != 0 && !timed_out && oom_kills_before && oom_kills_after &&
                 *oom_kills_after > *oom_kills_before;
  r.files = read_files(dir.fd, command.files_out, command.files_out_cap,
                       agent::limits::kMaxFilesOutTotal);
  r.usage.cpu_us = cpu_us;
  r.usage.peak_memory_kib = peak_kib;
  r.exec_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(end - start).count());
  run.ran = true;
  return run;
}

}  // namespace paddock::guest
