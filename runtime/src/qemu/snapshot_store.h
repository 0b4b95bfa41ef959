// The QEMU backend's snapshots on disk (runtime/README.md, "Snapshots on disk"):
//
//   <root>/.lock                          held (flock) by the one provider that uses the store
//   <root>/<vm_id>/<snapshot_id>/meta.json what the snapshot is and what it needs (SnapshotMeta)
//   <root>/<vm_id>/<snapshot_id>/memory    the guest's RAM, a sparse file of exactly mem_mib MiB
//   <root>/<vm_id>/<snapshot_id>/state     QEMU's device state (a migration stream without RAM)
//   <root>/<vm_id>/<snapshot_id>.partial-<pid>  a snapshot being written; renamed into place when
//                                         complete, removed by the next open() if a crash left it
//
// Committed files are read-only (0444): clones map `memory` privately (copy-on-write) and never
// write it. A snapshot is restored only if its metadata matches the running QEMU, accelerator,
// machine and image, and its files match their sizes and XXH3-128 checksums. Checksums detect
// corruption (a truncated copy, a flipped bit), not tampering: whoever can write the files can
// write meta.json too; the store's ownership and the jail are what stop that. A file is hashed once
// per process and again whenever its identity (device, inode, size, mtime, ctime) changes.
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "paddock/runtime/error.h"
#include "paddock/runtime/provider.h"

namespace paddock::runtime::qemu {

namespace snapshot_limits {
inline constexpr size_t kMaxMetaBytes = 64u << 10;
inline constexpr size_t kMaxId = 64;
inline constexpr size_t kMaxText = 1024;  // versions, machine, kernel arguments
inline constexpr uint32_t kMaxVcpus = 64;
inline constexpr uint32_t kMaxMemMib = 256u << 10;
inline constexpr uint32_t kFormat = 1;
}  // namespace snapshot_limits

// What a snapshot needs of the QEMU that restores it. Any difference refuses the restore.
struct SnapshotEnv {
  std::string qemu_version;  // first line of `qemu-system-x86_64 --version`
  std::string accel;         // "tcg" or "kvm"
  std::string machine;       // the -M argument (without the memory backend)
  std::string cpu;           // the -cpu argument
  std::string image_id;      // XXH3-128 of the kernel and initramfs, hex
  std::string kernel_args;   // the guest command line
  bool operator==(const SnapshotEnv&) const = default;
};

struct SnapshotFile {
  uint64_t size = 0;
  std::string xxh3_128;  // 32 hex digits
  bool operator==(const SnapshotFile&) const = default;
};

struct SnapshotMeta {
  uint32_t format = snapshot_limits::kFormat;
  std::string vm_id;
  std::string snapshot_id;
  uint64_t created_unix_ms = 0;
  std::string image;  // the image name the VM was created with ("default")
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
  SnapshotEnv env;
  SnapshotFile memory;
  SnapshotFile state;
  bool operator==(const SnapshotMeta&) const = default;
};

std::string encode_meta(const SnapshotMeta& meta);
// What the provider interface says of a snapshot.
inline SnapshotInfo snapshot_info(const SnapshotMeta& m) {
  return SnapshotInfo{m.vm_id, m.snapshot_id, VmSpec{m.image, m.vcpus, m.mem_mib},
                      m.created_unix_ms, m.env.image_id};
}
// Strict: every field present with its type and within its limits; unknown fields are refused.
// The error (Unsupported) names the field.
Result<SnapshotMeta> parse_meta(std::string_view text);

// VM and snapshot ids that can name a directory: 1-64 of [A-Za-z0-9._-], not "." or "..".
bool valid_path_id(std::string_view id);

// XXH3-128 of a file's bytes (holes read as zeros), as 32 hex digits.
Result<std::string> hash_file(const std::string& path);
// Copies `from` to a new file `to` (mode 0600), skipping holes so a sparse RAM file stays sparse.
Status copy_sparse(const std::string& from, const std::string& to);

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string root) : root_(std::move(root)) {}
  ~SnapshotStore();
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  // Creates the root, takes its lock (Unsupported if another process holds it), removes partial
  // snapshots a crash left, and loads every meta.json. A snapshot whose meta.json cannot be read is
  // logged and left alone (it is refused at restore). Returns how many partial ones it removed.
  Result<size_t> open();
  const std::string& root() const { return root_; }

  // A fresh directory to write a snapshot into. SnapshotAlreadyExists; Unsupported for ids that
  // cannot name a directory.
  Result<std::string> begin(const std::string& vm_id, const std::string& snapshot_id);
  // Hashes the files in `partial`, writes meta.json, makes everything read-only and renames the
  // directory into place. On failure the partial directory is removed.
  Result<SnapshotMeta> commit(const std::string& partial, SnapshotMeta meta);
  void abort(const std::string& partial);

  // The snapshot's directory once it passed every check: SnapshotNotFound if it does not exist;
  // Unsupported (saying what differs) if its metadata does not match `env`, its files are missing,
  // or a size or checksum is wrong. A file is hashed again only when its identity (device, inode,
  // size, modification time) changed since its checksum last matched, or when that match was
  // within kRecentWrite of its last write (a timestamp's granularity could hide a rewrite then).
  // Not its ctime: every jail hard-links the files in, which moves it.
  Result<SnapshotMeta> check(const std::string& vm_id, const std::string& snapshot_id,
                             const SnapshotEnv& env);
  std::string dir(const std::string& vm_id, const std::string& snapshot_id) const;

  // How many times a file was hashed by check() (tests: a restore must not hash 128 MiB again).
  uint64_t files_hashed() const;
  static constexpr auto kRecentWrite = std::chrono::seconds(2);

  // SnapshotNotFound if it does not exist.
  Status remove(const std::string& vm_id, const std::string& snapshot_id);
  // Ordered by (vm_id, snapshot_id).
  std::vector<SnapshotMeta> list() const;
  std::vector<SnapshotMeta> list(const std::string& vm_id) const;

 private:
  struct Identity {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const Identity&) const = default;
  };
  Status verify_file(const std::string& path, const SnapshotFile& expected, const char* what);

  std::string root_;
  int lock_fd_ = -1;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, SnapshotMeta> snapshots_;
  std::map<std::string, Identity> verified_;  // path -> identity when its checksum last matched
  uint64_t files_hashed_ = 0;
};

}  // namespace paddock::runtime::qemu
