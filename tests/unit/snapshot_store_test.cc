// The QEMU backend's snapshot store without QEMU: metadata codec, sparse copy, checksums, the
// directory layout, the lock, and refusals of snapshots that do not match or are corrupted.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "qemu/snapshot_store.h"

using namespace paddock::runtime;
using namespace paddock::runtime::qemu;
namespace fs = std::filesystem;

namespace {

struct TempRoot {
  fs::path path;
  TempRoot() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("paddock-snapstore-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempRoot() {
    std::error_code ec;
    // Committed files are read-only; root removes them anyway, others need the mode back.
    for (auto it = fs::recursive_directory_iterator(path, ec); it != fs::end(it); ++it) {
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(path, ec);
  }
};

SnapshotEnv test_env() {
  return SnapshotEnv{"QEMU emulator version 10.0.2", "tcg",
                     "microvm,isa-serial=on,rtc=on", "max",
                     std::string(64, 'a'),           "console=ttyS0"};
}

SnapshotMeta test_meta(const std::string& vm, const std::string& snap, uint32_t mem_mib) {
  SnapshotMeta m;
  m.vm_id = vm;
  m.snapshot_id = snap;
  m.created_unix_ms = 1'790'000'000'000;
  m.image = "default";
  m.vcpus = 1;
  m.mem_mib = mem_mib;
  m.env = test_env();
  return m;
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// A RAM-like file: mem_mib MiB, data in two places, holes elsewhere.
void write_ram(const std::string& path, uint32_t mem_mib) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, off_t{mem_mib} << 20) == 0);
  REQUIRE(::pwrite(fd, "kernel", 6, 4096) == 6);
  REQUIRE(::pwrite(fd, "tail", 4, (off_t{mem_mib} << 20) - 4) == 4);
  ::close(fd);
}

// Takes a snapshot through the store the way the provider does.
SnapshotMeta make_snapshot(SnapshotStore& store, const std::string& vm, const std::string& snap,
                           const std::string& work) {
  auto partial = store.begin(vm, snap);
  REQUIRE(partial.ok());
  write_ram(work + "/ram", 2);
  REQUIRE(copy_sparse(work + "/ram", partial.value() + "/memory").ok());
  write_file(partial.value() + "/state", "QEVM device state");
  auto meta = store.commit(partial.value(), test_meta(vm, snap, 2));
  REQUIRE(meta.ok());
  return meta.value();
}

}  // namespace

TEST_CASE("snapshot meta: encode and parse round trip") {
  SnapshotMeta m = test_meta("tpl-default-1x128", "template", 128);
  m.memory = SnapshotFile{128u << 20, std::string(32, 'f')};
  m.state = SnapshotFile{52'000, "0123456789abcdef0123456789abcdef"};
  auto back = parse_meta(encode_meta(m));
  REQUIRE(back.ok());
  CHECK(back.value() == m);
}

TEST_CASE("snapshot meta: every malformed field is refused by name") {
  SnapshotMeta m = test_meta("vm", "s", 2);
  m.memory = SnapshotFile{2u << 20, std::string(32, '0')};
  m.state = SnapshotFile{10, std::string(32, '1')};
  const std::string good = encode_meta(m);
  auto refused = [&](const std::string& from, const std::string& to, const std::string& field) {
    std::string text = good;
    const size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    auto r = parse_meta(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().variant() == Variant::kUnsupported);
    CHECK(r.error().cause() == Cause::kHostIo);  // a damaged stored file: another host's may not be
    CHECK_MESSAGE(r.error().detail().find(field) != std::string::npos, r.error().detail());
  };
  refused("\"format\": 1", "\"format\": 2", "format");
  refused("\"vcpus\": 1", "\"vcpus\": 0", "vcpus");
  refused("\"vcpus\": 1", "\"vcpus\": \"1\"", "vcpus");
  refused("\"mem_mib\": 2", "\"mem_mib\": 3", "files.memory.size");
  refused("\"vm_id\": \"vm\"", "\"vm_id\": \"../etc\"", "vm_id");
  refused("\"snapshot_id\": \"s\"", "\"snapshot_id\": \"\"", "snapshot_id");
  refused("\"accel\": \"tcg\"", "\"accel\": \"tcg\", \"extra\": 1", "extra");
  refused(std::string(32, '1'), "xyz", "files.state.xxh3_128");
  refused("\"format\": 1,", "", "format");
  refused("\"accel\": \"tcg\"", "\"accel\": \"tcg\", \"accel\": \"kvm\"", "accel: given twice");
  CHECK(parse_meta("[1,2]").error().detail().find("not a JSON object") != std::string::npos);
  CHECK(parse_meta("{").error().detail().find("not valid JSON") != std::string::npos);
  CHECK(parse_meta(std::string(snapshot_limits::kMaxMetaBytes + 1, ' '))
            .error()
            .detail()
            .find("larger than") != std::string::npos);
}

TEST_CASE("snapshot ids that cannot name a directory are refused") {
  CHECK(valid_path_id("tpl-default-1x128-1790000000000"));
  CHECK(valid_path_id("a.b_c-D"));
  CHECK_FALSE(valid_path_id(""));
  CHECK_FALSE(valid_path_id("."));
  CHECK_FALSE(valid_path_id(".."));
  CHECK_FALSE(valid_path_id("a/b"));
  CHECK_FALSE(valid_path_id("a b"));
  CHECK_FALSE(valid_path_id(std::string(65, 'a')));
}

TEST_CASE("copy_sparse keeps the bytes and the holes") {
  TempRoot t;
  const std::string from = (t.path / "ram").string(), to = (t.path / "copy").string();
  write_ram(from, 8);
  REQUIRE(copy_sparse(from, to).ok());
  CHECK(fs::file_size(to) == 8u << 20);
  CHECK(hash_file(from).value() == hash_file(to).value());
  struct stat st {};
  REQUIRE(::stat(to.c_str(), &st) == 0);
  CHECK(st.st_blocks * 512 < (1 << 20));  // two small extents, not 8 MiB of zeros
  CHECK(copy_sparse(from, to).error().detail().find("create") != std::string::npos);  // no clobber
}

TEST_CASE("snapshot store: commit, list, reopen, duplicate and remove") {
  TempRoot t;
  {
    SnapshotStore store((t.path / "snaps").string());
    REQUIRE(store.open().ok());
    SnapshotMeta meta = make_snapshot(store, "vm1", "s1", t.path.string());
    CHECK(meta.memory.size == 2u << 20);
    CHECK(meta.state.size == 17);
    const std::string dir = store.dir("vm1", "s1");
    for (const char* f : {"memory", "state", "meta.json"}) {
      struct stat st {};
      REQUIRE(::stat((dir + "/" + f).c_str(), &st) == 0);
      CHECK((st.st_mode & 0777) == 0444);
    }
    CHECK(store.begin("vm1", "s1").error().variant() == Variant::kSnapshotAlreadyExists);
    CHECK(store.begin("vm/1", "s1").error().variant() == Variant::kUnsupported);
    CHECK(store.begin("vm/1", "s1").error().cause() == Cause::kInvalidInput);
    CHECK_FALSE(store.begin("vm/1", "s1").error().retryable());
    CHECK(store.check("vm1", "s1", test_env()).ok());
    CHECK(store.check("vm1", "nope", test_env()).error().variant() == Variant::kSnapshotNotFound);

    // Only one store may use a directory.
    SnapshotStore second((t.path / "snaps").string());
    auto locked = second.open();
    REQUIRE_FALSE(locked.ok());
    CHECK(locked.error().detail().find("in use by another process") != std::string::npos);
  }
  // A crash mid-snapshot leaves a partial directory: the next open removes it.
  fs::create_directories(t.path / "snaps" / "vm1" / "s2.partial-12345");
  SnapshotStore store((t.path / "snaps").string());
  auto opened = store.open();
  REQUIRE(opened.ok());
  CHECK(opened.value() == 1);
  CHECK_FALSE(fs::exists(t.path / "snaps" / "vm1" / "s2.partial-12345"));
  auto all = store.list();
  REQUIRE(all.size() == 1);
  CHECK(all[0].vm_id == "vm1");
  CHECK(store.check("vm1", "s1", test_env()).ok());
  REQUIRE(store.remove("vm1", "s1").ok());
  CHECK(store.remove("vm1", "s1").error().variant() == Variant::kSnapshotNotFound);
  CHECK_FALSE(fs::exists(t.path / "snaps" / "vm1"));
}

TEST_CASE("snapshot store: a snapshot of another QEMU, accelerator or image is refused") {
  TempRoot t;
  SnapshotStore store((t.path / "snaps").string());
  REQUIRE(store.open().ok());
  make_snapshot(store, "vm1", "s1", t.path.string());
  SnapshotEnv other = test_env();
  other.qemu_version = "QEMU emulator version 10.0.3";
  auto r = store.check("vm1", "s1", other);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().variant() == Variant::kUnsupported);
  CHECK(r.error().cause() == Cause::kNotSupported);  // this host cannot use it: not retried here
  CHECK_FALSE(r.error().retryable());
  CHECK(r.error().detail().find("QEMU version differs") != std::string::npos);
  other = test_env();
  other.image_id = std::string(64, 'b');
  CHECK(store.check("vm1", "s1", other).error().detail().find("guest image differs") !=
        std::string::npos);
  other = test_env();
  other.accel = "kvm";
  CHECK(store.check("vm1", "s1", other).error().detail().find("accelerator differs") !=
        std::string::npos);
}

TEST_CASE(
    "snapshot store: a verified file is not hashed again for a hard link, but for a rewrite") {
  TempRoot t;
  SnapshotStore store((t.path / "snaps").string());
  REQUIRE(store.open().ok());
  make_snapshot(store, "vm1", "s1", t.path.string());
  const std::string dir = store.dir("vm1", "s1");
  // Files written a minute ago: older than a timestamp's granularity, so a match is remembered.
  const timespec minute_ago[2] = {{::time(nullptr) - 60, 0}, {::time(nullptr) - 60, 0}};
  for (const char* f : {"memory", "state"}) {
    REQUIRE(::utimensat(AT_FDCWD, (dir + "/" + f).c_str(), minute_ago, 0) == 0);
  }
  REQUIRE(store.check("vm1", "s1", test_env()).ok());
  CHECK(store.files_hashed() == 2);
  // What every jail does: a hard link of each file into its chroot (the files' ctime moves).
  for (const char* f : {"memory", "state"}) {
    REQUIRE(::link((dir + "/" + f).c_str(), (t.path / (std::string("jail-") + f)).c_str()) == 0);
  }
  REQUIRE(store.check("vm1", "s1", test_env()).ok());
  REQUIRE(store.check("vm1", "s1", test_env()).ok());
  CHECK(store.files_hashed() == 2);  // not hashed again
  // A rewrite (new modification time) is hashed again, and refused.
  REQUIRE(::chmod((dir + "/memory").c_str(), 0644) == 0);
  {
    const int fd = ::open((dir + "/memory").c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, "X", 1, 4096) == 1);
    ::close(fd);
  }
  auto r = store.check("vm1", "s1", test_env());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail().find("fails its checksum") != std::string::npos);
  CHECK(store.files_hashed() == 3);
}

TEST_CASE("snapshot store: a file checked right after its write is hashed at every check") {
  TempRoot t;
  SnapshotStore store((t.path / "snaps").string());
  REQUIRE(store.open().ok());
  make_snapshot(store, "vm1", "s1", t.path.string());
  // Written just now: a rewrite within the same timestamp tick could keep the modification time,
  // so nothing is remembered yet.
  REQUIRE(store.check("vm1", "s1", test_env()).ok());
  REQUIRE(store.check("vm1", "s1", test_env()).ok());
  CHECK(store.files_hashed() == 4);
}

TEST_CASE("snapshot store: a corrupted or truncated file is refused, even after a good check") {
  TempRoot t;
  SnapshotStore store((t.path / "snaps").string());
  REQUIRE(store.open().ok());
  make_snapshot(store, "vm1", "s1", t.path.string());
  REQUIRE(store.check("vm1", "s1", test_env()).ok());  // verified and cached
  const std::string memory = store.dir("vm1", "s1") + "/memory";
  for (const char* f : {"memory", "state"}) {
    REQUIRE(::chmod((store.dir("vm1", "s1") + "/" + f).c_str(), 0644) == 0);  // chmod: ctime moves
  }
  {
    const int fd = ::open(memory.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, "X", 1, 4096) == 1);
    ::close(fd);
  }
  auto r = store.check("vm1", "s1", test_env());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().variant() == Variant::kUnsupported);
  CHECK(r.error().cause() == Cause::kHostIo);
  CHECK(r.error().retryable());
  CHECK(r.error().detail().find("fails its checksum") != std::string::npos);

  const std::string state = store.dir("vm1", "s1") + "/state";
  REQUIRE(::truncate(state.c_str(), 3) == 0);
  make_snapshot(store, "vm2", "s1", t.path.string());
  REQUIRE(::chmod((store.dir("vm2", "s1") + "/state").c_str(), 0644) == 0);
  REQUIRE(::truncate((store.dir("vm2", "s1") + "/state").c_str(), 3) == 0);
  auto truncated = store.check("vm2", "s1", test_env());
  REQUIRE_FALSE(truncated.ok());
  CHECK(truncated.error().detail().find("has 3 bytes") != std::string::npos);

  fs::remove(store.dir("vm2", "s1") + "/memory");
  CHECK(store.check("vm2", "s1", test_env()).error().detail().find("No such file") !=
        std::string::npos);
}

TEST_CASE("snapshot store: host I/O failures are Unsupported on the wire but HostIo, retryable") {
  TempRoot t;
  auto host_io = [](const Error& e, const std::string& names) {
    INFO("detail: " << e.detail());
    CHECK(e.variant() == Variant::kUnsupported);
    CHECK(e.cause() == Cause::kHostIo);
    CHECK(e.retryable());
    CHECK(e.detail().find(names) != std::string::npos);
  };
  // A store whose directory cannot be made (a file where a directory must go: it fails for root
  // too, as a read-only or full disk would).
  write_file((t.path / "file").string(), "x");
  SnapshotStore blocked((t.path / "file" / "snaps").string());
  auto opened = blocked.open();
  REQUIRE_FALSE(opened.ok());
  host_io(opened.error(), "create snapshot directory");
  // A copy whose target cannot be written.
  write_ram((t.path / "ram").string(), 2);
  auto copied = copy_sparse((t.path / "ram").string(), (t.path / "file" / "memory").string());
  REQUIRE_FALSE(copied.ok());
  host_io(copied.error(), "file/memory");
  // A commit whose files went missing under it.
  SnapshotStore store((t.path / "snaps").string());
  REQUIRE(store.open().ok());
  auto partial = store.begin("vm1", "s1");
  REQUIRE(partial.ok());
  auto committed = store.commit(partial.value(), test_meta("vm1", "s1", 2));
  REQUIRE_FALSE(committed.ok());
  host_io(committed.error(), partial.value() + "/memory");
}
