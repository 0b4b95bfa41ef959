// Images with a root filesystem (tools/build-image.sh, agent/guest/IMAGE.md "Root filesystem
// images") on real jailed microVMs: jobs run in the image's read-only ext4 under a tmpfs overlay,
// what one VM writes no other VM sees, the image file never changes, and a clone restored from a
// snapshot of such a VM has the same drive. The image is tests/vm/test-minimal.image, built by
// the "vm: build rootfs test image" fixture; the python test runs only when the python image is
// built (it says so loudly otherwise).
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "paddock/runtime/qemu_provider.h"
#include "qemu/snapshot_store.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::runtime;
namespace fs = std::filesystem;

namespace {

ExecRequest busybox(std::vector<std::string> args) {
  ExecRequest r;
  r.argv = {"/bin/busybox"};
  r.argv.insert(r.argv.end(), args.begin(), args.end());
  r.timeout_ms = 20'000;
  return r;
}

ExecResult run(QemuProvider& p, const std::string& vm, const ExecRequest& r) {
  auto x = p.exec(vm, r, {});
  REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
  return x.value();
}

struct Dirs {
  std::string run = "/run/paddock-rootfs-test-" + std::to_string(::getpid());
  std::string snapshots = "/run/paddock-rootfs-snap-" + std::to_string(::getpid());
  ~Dirs() {
    std::error_code ec;
    fs::remove_all(run, ec);
    fs::remove_all(snapshots, ec);
  }
};

void boot(QemuProvider& p, const std::string& vm, const std::string& image) {
  REQUIRE(p.create(vm, VmSpec{image, 1, 128}).ok());
  auto started = p.start(vm);
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message()));
}

}  // namespace

TEST_CASE(
    "rootfs image: jobs run in a read-only image under a tmpfs overlay, jailed, and clones keep "
    "the drive") {
  if (!testing::vm_tests_can_run()) return;
  const std::string image_dir = testing::first_line(PADDOCK_ROOTFS_IMAGE_FILE);
  REQUIRE_MESSAGE(!image_dir.empty(),
                  "no rootfs test image: the 'vm: build rootfs test image' "
                  "fixture did not run or failed");
  const std::string rootfs = image_dir + "/rootfs.ext4";
  REQUIRE(fs::exists(rootfs));
  auto before = qemu::hash_file(rootfs);
  REQUIRE(before);
  Dirs d;
  {
    QemuConfig c = testing::test_qemu_config(d.run);
    c.snapshot_dir = d.snapshots;
    c.images["test-minimal"] = image_dir;
    auto opened = QemuProvider::open(c);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
    QemuProvider& p = *opened.value();
    CHECK(p.images() == std::vector<std::string>{"default", "test-minimal"});

    // An image the host does not have is refused at once, naming what there is.
    auto unknown = p.create("nope", VmSpec{"no-such-image", 1, 128});
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().message().find("no-such-image") != std::string::npos);
    CHECK(unknown.error().message().find("test-minimal") != std::string::npos);

    boot(p, "r1", "test-minimal");
    REQUIRE(p.jail_of("r1").has_value());  // jailed, as in production

    // The image's files, its environment under the job's own, and Debian 12's os-release.
    auto os = run(p, "r1", busybox({"cat", "/etc/os-release"}));
    CHECK(os.exit_code == 0);
    CHECK(os.stdout_data.find("VERSION_ID=\"12\"") != std::string::npos);
    CHECK(os.stdout_data.find("Debian") != std::string::npos);
    ExecRequest env =
        busybox({"sh", "-c", "echo $PADDOCK_TEST_IMAGE $MINE; cat /etc/paddock/test-marker"});
    env.env["MINE"] = "mine";
    auto e = run(p, "r1", env);
    CHECK(e.stdout_data == "test-minimal mine\nbuilt from tests/vm/test-minimal.image\n");

    // A write into /usr lands in the overlay; the disk itself cannot be written.
    auto w = run(p, "r1", busybox({"sh", "-c", "echo changed > /usr/probe && cat /usr/probe"}));
    CHECK(w.exit_code == 0);
    CHECK(w.stdout_data == "changed\n");
    auto dd = run(p, "r1",
                  busybox({"sh", "-c", "echo x | dd of=/dev/vda bs=1 count=1 conv=notrunc,fsync"}));
    CHECK(dd.exit_code != 0);
    auto ro = run(p, "r1",
                  busybox({"sh", "-c",
                           "mount -o remount,rw /dev/vda /mnt 2>&1 || "
                           "mount -t ext4 /dev/vda /mnt"}));
    CHECK(ro.exit_code != 0);

    // Files in and out, in the job's working directory (/work, in the image).
    ExecRequest files = busybox({"sh", "-c", "pwd; cp in.txt out.txt"});
    files.files.push_back({"in.txt", 0644, "hello"});
    files.files_out = {"out.txt"};
    auto f = run(p, "r1", files);
    CHECK(f.exit_code == 0);
    CHECK(f.stdout_data == "/work\n");
    REQUIRE(f.files.size() == 1);
    CHECK(f.files[0].data == "hello");

    // Another VM of the same image does not see what r1 wrote.
    boot(p, "r2", "test-minimal");
    auto other = run(p, "r2", busybox({"cat", "/usr/probe"}));
    CHECK(other.exit_code != 0);
    REQUIRE(p.destroy("r1").ok());

    // A snapshot of it, and a clone with the same drive (device state must match).
    REQUIRE(p.stop("r2").ok());
    auto snap = p.snapshot("r2", "tpl");
    REQUIRE_MESSAGE(snap.ok(), (snap.ok() ? "" : snap.error().message()));
    REQUIRE(p.destroy("r2").ok());
    auto restored = p.restore("r2", "tpl", "r3");
    REQUIRE_MESSAGE(restored.ok(), (restored.ok() ? "" : restored.error().message()));
    REQUIRE(p.resume("r3").ok());
    auto cloned =
        run(p, "r3", busybox({"sh", "-c", "cat /etc/paddock/test-marker; ls /usr/probe"}));
    CHECK(cloned.stdout_data == "built from tests/vm/test-minimal.image\n");
    CHECK(cloned.exit_code != 0);  // no probe here either
    REQUIRE(p.destroy("r3").ok());
    CHECK(testing::qemu_processes_under(d.run) == 0);
    CHECK(testing::nothing_left_in(d.run));
  }
  auto after = qemu::hash_file(rootfs);
  REQUIRE(after);
  CHECK(after.value() == before.value());
}

TEST_CASE("rootfs image: python3 runs in the python image when it is built") {
  if (!testing::vm_tests_can_run()) return;
  const std::string image_dir = testing::first_line(PADDOCK_PYTHON_IMAGE_FILE);
  if (image_dir.empty() || image_dir.rfind("none", 0) == 0) {
    MESSAGE("SKIPPED LOUDLY: the python image is not built here ("
            << image_dir
            << "); build it with tools/build-image.sh python --agent "
               "<build>/agent/guest/paddock-agent");
    return;
  }
  Dirs d;
  QemuConfig c = testing::test_qemu_config(d.run);
  c.images["python"] = image_dir;
  auto opened = QemuProvider::open(c);
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  QemuProvider& p = *opened.value();
  boot(p, "py", "python");
  ExecRequest r;
  r.argv = {"python3", "-c", "print(1)"};
  auto x = run(p, "py", r);
  CHECK(x.exit_code == 0);
  CHECK(x.stdout_data == "1\n");
  r.argv = {"python3", "-c",
            "import requests, yaml, json, sqlite3; print(yaml.safe_dump({'a': 1}), end='')"};
  x = run(p, "py", r);
  INFO("stderr: " << x.stderr_data);
  CHECK(x.exit_code == 0);
  CHECK(x.stdout_data == "a: 1\n");
  REQUIRE(p.destroy("py").ok());
  CHECK(testing::nothing_left_in(d.run));
}
