#include "files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "paddock/base/os_error.h"

namespace paddock::guest {
namespace {

// An owned fd.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  Fd(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Opens the directory that holds `path`'s last component, walking from dirfd without following
// symlinks; creates missing directories when `create`. Sets `leaf`. -1 with errno on failure.
Fd open_parent(int dirfd, const std::string& path, bool create, std::string& leaf) {
  Fd dir(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    if (slash == std::string::npos) {
      leaf = path.substr(start);
      return dir;
    }
    const std::string part = path.substr(start, slash - start);
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int next = ::openat(dir.fd, part.c_str(), kFlags);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(dir.fd, part.c_str(), 0755) != 0 && errno != EEXIST) return Fd(-1);
      next = ::openat(dir.fd, part.c_str(), kFlags);
    }
    if (next < 0) return Fd(-1);
    dir = Fd(next);
    start = slash + 1;
  }
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string write_files(int dirfd, const std::vector<runtime::agent::FileIn>& files) {
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    const std::string what = "files[" + std::to_string(i) + "] " + f.path;
    std::string leaf;
    Fd parent = open_parent(dirfd, f.path, /*create=*/true, leaf);
    if (parent.fd < 0) return base::error_message(what + ": open parent directory");
    Fd out(::openat(parent.fd, leaf.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                    0600));
    if (out.fd < 0) return base::error_message(what + ": open");
    if (::fchmod(out.fd, f.mode) != 0) return base::error_message(what + ": chmod");
    if (!write_all(out.fd, f.data)) return base::error_message(what + ": write");
  }
  return {};
}

std::vector<runtime::agent::FileOut> read_files(int dirfd, const std::vector<std::string>& paths,
                                                size_t per_file_cap, size_t total_cap) {
  std::vector<runtime::agent::FileOut> out;
  size_t total = 0;
  for (const auto& path : paths) {
    std::string leaf;
    Fd parent = open_parent(dirfd, path, /*create=*/false, leaf);
    if (parent.fd < 0) continue;
    Fd in(::openat(parent.fd, leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st {};
    if (in.fd < 0 || ::fstat(in.fd, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    runtime::agent::FileOut file{path, {}, false};
    const size_t cap = std::min(per_file_cap, total_cap - total);
    // Read one byte past what is kept, to tell "exactly cap bytes" from "more".
    file.data.resize(std::min(cap, static_cast<size_t>(st.st_size)) + 1);
    size_t got = 0;
    while (got < file.data.size()) {
      const ssize_t n = ::read(in.fd, file.data.data() + got, file.data.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    file.truncated = got > cap || static_cast<size_t>(st.st_size) > cap;
    file.data.resize(std::min(got, cap));
    total += file.data.size();
    out.push_back(std::move(file));
  }
  return out;
}

}  // namespace paddock::guest
