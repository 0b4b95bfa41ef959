// os::copy_untrusted_file (runtime/src/os/untrusted_file.h): how the host copies a file out of a
// jailed QEMU's chroot (a snapshot's device state) without following what QEMU put there.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "os/untrusted_file.h"

namespace fs = std::filesystem;
using paddock::runtime::os::copy_untrusted_file;

namespace {

struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/paddock-test-untrusted-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE(
    "untrusted file: a regular file is copied with the mode asked for and replaces the old copy") {
  Dir jail, host;
  write(jail / "state", std::string(200000, 's'));
  write(host / "state", "an older snapshot");
  CHECK(copy_untrusted_file(jail / "state", host / "state", 0444) == "");
  CHECK(read(host / "state") == std::string(200000, 's'));
  struct stat st {};
  REQUIRE(::stat((host / "state").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0444);
}

TEST_CASE("untrusted file: a symlink put in place of the file is refused and its target not read") {
  Dir jail, host;
  write(host / "secret", "host only");
  fs::create_symlink(host / "secret", jail / "state");
  const std::string err = copy_untrusted_file(jail / "state", host / "copy", 0444);
  CHECK(err == "copy " + (jail / "state") + ": open: Too many levels of symbolic links");
  CHECK_FALSE(fs::exists(host / "copy"));
}

TEST_CASE("untrusted file: a FIFO is refused at once instead of blocking") {
  Dir jail, host;
  REQUIRE(::mkfifo((jail / "state").c_str(), 0600) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(copy_untrusted_file(jail / "state", host / "copy", 0444) ==
        "copy " + (jail / "state") + ": not a regular file");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK_FALSE(fs::exists(host / "copy"));
}

TEST_CASE("untrusted file: a hard link to another file is refused") {
  Dir jail, host;
  write(jail / "other", "not the state");
  fs::create_hard_link(jail / "other", jail / "state");
  CHECK(copy_untrusted_file(jail / "state", host / "copy", 0444) ==
        "copy " + (jail / "state") + ": has 2 links (a hard link to another file?)");
  CHECK_FALSE(fs::exists(host / "copy"));
}

TEST_CASE("untrusted file: a missing file is an error naming it") {
  Dir jail, host;
  CHECK(copy_untrusted_file(jail / "state", host / "copy", 0444) ==
        "copy " + (jail / "state") + ": open: No such file or directory");
}

TEST_CASE("untrusted file: a bounded read takes a regular file and refuses a FIFO or a symlink") {
  Dir jail, host;
  std::string error;
  write(jail / "qemu.pid", "12345\n" + std::string(1000, 'x'));
  CHECK(paddock::runtime::os::read_untrusted_file(jail / "qemu.pid", 32, error) ==
        "12345\n" + std::string(26, 'x'));
  CHECK(error.empty());
  fs::remove(jail / "qemu.pid");
  REQUIRE(::mkfifo((jail / "qemu.pid").c_str(), 0600) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(paddock::runtime::os::read_untrusted_file(jail / "qemu.pid", 32, error).empty());
  CHECK(error == "read " + (jail / "qemu.pid") + ": not a regular file");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  fs::remove(jail / "qemu.pid");
  write(host / "pid", "1\n");
  fs::create_symlink(host / "pid", jail / "qemu.pid");
  error.clear();
  CHECK(paddock::runtime::os::read_untrusted_file(jail / "qemu.pid", 32, error).empty());
  CHECK(error == "read " + (jail / "qemu.pid") + ": open: Too many levels of symbolic links");
}
