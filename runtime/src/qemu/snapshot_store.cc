#include "qemu/snapshot_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "paddock/base/os_error.h"

namespace paddock::runtime::qemu {

namespace fs = std::filesystem;
using nlohmann::json;
namespace lim = snapshot_limits;

namespace {

constexpr size_t kChunk = 1u << 20;

// Closes an fd on every path.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

std::string hex128(XXH128_hash_t h) {
  static const char* digits = "0123456789abcdef";
  std::string out(32, '0');
  const uint64_t parts[2] = {h.high64, h.low64};
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < 16; ++i) {
      out[static_cast<size_t>(p * 16 + i)] = digits[(parts[p] >> (60 - 4 * i)) & 0xf];
    }
  }
  return out;
}

bool is_hex128(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Error bad_meta(const std::string& field, const std::string& reason) {
  return Error::unsupported(Cause::kHostIo, "snapshot metadata: " + field + ": " + reason);
}

// Typed field readers over a parsed object; every one names the field it refuses.
struct Fields {
  const json& obj;
  std::string prefix;
  std::optional<Error> error;

  const json* get(const char* name, json::value_t type) {
    if (error) return nullptr;
    auto it = obj.find(name);
    if (it == obj.end()) {
      error = bad_meta(prefix + name, "missing");
      return nullptr;
    }
    const bool ok = type == json::value_t::number_unsigned
                        ? it->is_number_unsigned()
                        : (type == json::value_t::object ? it->is_object() : it->type() == type);
    if (!ok) {
      error =
          bad_meta(prefix + name, std::string("expected ") +
                                      (type == json::value_t::string   ? "a string"
                                       : type == json::value_t::object ? "an object"
                                                                       : "an unsigned integer") +
                                      ", got " + it->type_name());
      return nullptr;
    }
    return &*it;
  }
  std::string text(const char* name, size_t max) {
    const json* v = get(name, json::value_t::string);
    if (!v) return {};
    const auto& s = v->get_ref<const std::string&>();
    if (s.size() > max) error = bad_meta(prefix + name, "longer than " + std::to_string(max));
    return s;
  }
  uint64_t number(const char* name, uint64_t min, uint64_t max) {
    const json* v = get(name, json::value_t::number_unsigned);
    if (!v) return 0;
    const uint64_t n = v->get<uint64_t>();
    if (n < min || n > max) {
      error = bad_meta(prefix + name, std::to_string(n) + " is outside " + std::to_string(min) +
                                          ".." + std::to_string(max));
    }
    return n;
  }
  void only(std::initializer_list<const char*> names) {
    if (error) return;
    for (const auto& [key, value] : obj.items()) {
      bool known = false;
      for (const char* n : names) known = known || key == n;
      if (!known) {
        error = bad_meta(prefix + key.substr(0, 64), "unknown field");
        return;
      }
    }
  }
};

SnapshotFile parse_file(Fields& parent, const char* name) {
  const json* v = parent.get(name, json::value_t::object);
  if (!v) return {};
  Fields f{*v, parent.prefix + name + ".", std::nullopt};
  SnapshotFile out;
  out.size = f.number("size", 0, uint64_t{lim::kMaxMemMib} << 20);
  out.xxh3_128 = f.text("xxh3_128", 32);
  if (!f.error && !is_hex128(out.xxh3_128)) {
    f.error = bad_meta(f.prefix + "xxh3_128", "not 32 lowercase hex digits");
  }
  f.only({"size", "xxh3_128"});
  if (f.error) parent.error = f.error;
  return out;
}

json file_json(const SnapshotFile& f) { return json{{"size", f.size}, {"xxh3_128", f.xxh3_128}}; }

// Which environment field differs, with both values, or "" when they match.
std::string env_difference(const SnapshotEnv& have, const SnapshotEnv& want) {
  auto diff = [](const char* what, const std::string& a, const std::string& b) {
    return std::string(what) + " differs (snapshot: '" + a + "', now: '" + b + "')";
  };
  if (have.qemu_version != want.qemu_version) {
    return diff("QEMU version", have.qemu_version, want.qemu_version) +
           "; QEMU cannot restore another version's device state";
  }
  if (have.accel != want.accel) return diff("accelerator", have.accel, want.accel);
  if (have.machine != want.machine) return diff("machine", have.machine, want.machine);
  if (have.cpu != want.cpu) return diff("cpu", have.cpu, want.cpu);
  if (have.image_id != want.image_id) return diff("guest image", have.image_id, want.image_id);
  if (have.kernel_args != want.kernel_args) {
    return diff("kernel command line", have.kernel_args, want.kernel_args);
  }
  return {};
}

}  // namespace

bool valid_path_id(std::string_view id) {
  if (id.empty() || id.size() > lim::kMaxId || id == "." || id == "..") return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string encode_meta(const SnapshotMeta& m) {
  json j{{"format", m.format},
         {"vm_id", m.vm_id},
         {"snapshot_id", m.snapshot_id},
         {"created_unix_ms", m.created_unix_ms},
         {"image", m.image},
         {"vcpus", m.vcpus},
         {"mem_mib", m.mem_mib},
         {"qemu_version", m.env.qemu_version},
         {"accel", m.env.accel},
         {"machine", m.env.machine},
         {"cpu", m.env.cpu},
         {"image_id", m.env.image_id},
         {"kernel_args", m.env.kernel_args},
         {"files", {{"memory", file_json(m.memory)}, {"state", file_json(m.state)}}}};
  return j.dump(2) + "\n";
}

Result<SnapshotMeta> parse_meta(std::string_view text) {
  if (text.size() > lim::kMaxMetaBytes) {
    return bad_meta("file", "larger than " + std::to_string(lim::kMaxMetaBytes) + " bytes");
  }
  // Nesting is bounded by the fields below; the parser itself is bounded by the size limit. A key
  // given twice in one object is refused (JSON parsers disagree on which one wins).
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  auto strict = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.empty() &&
        !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>().substr(0, 64);
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), strict, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad_meta("file", "not valid JSON");
  if (!duplicate.empty()) return bad_meta(duplicate, "given twice");
  if (!j.is_object()) return bad_meta("file", "not a JSON object");
  Fields f{j, "", std::nullopt};
  SnapshotMeta m;
  m.format = static_cast<uint32_t>(f.number("format", lim::kFormat, lim::kFormat));
  m.vm_id = f.text("vm_id", lim::kMaxId);
  m.snapshot_id = f.text("snapshot_id", lim::kMaxId);
  m.created_unix_ms = f.number("created_unix_ms", 0, UINT64_MAX);
  m.image = f.text("image", lim::kMaxId);
  m.vcpus = static_cast<uint32_t>(f.number("vcpus", 1, lim::kMaxVcpus));
  m.mem_mib = static_cast<uint32_t>(f.number("mem_mib", 1, lim::kMaxMemMib));
  m.env.qemu_version = f.text("qemu_version", lim::kMaxText);
  m.env.accel = f.text("accel", lim::kMaxText);
  m.env.machine = f.text("machine", lim::kMaxText);
  m.env.cpu = f.text("cpu", lim::kMaxText);
  m.env.image_id = f.text("image_id", lim::kMaxText);
  m.env.kernel_args = f.text("kernel_args", lim::kMaxText);
  if (const json* files = f.get("files", json::value_t::object)) {
    Fields ff{*files, "files.", std::nullopt};
    m.memory = parse_file(ff, "memory");
    m.state = parse_file(ff, "state");
    ff.only({"memory", "state"});
    if (ff.error) f.error = ff.error;
  }
  f.only({"format", "vm_id", "snapshot_id", "created_unix_ms", "image", "vcpus", "mem_mib",
          "qemu_version", "accel", "machine", "cpu", "image_id", "kernel_args", "files"});
  if (f.error) return *f.error;
  if (!valid_path_id(m.vm_id)) return bad_meta("vm_id", "not a valid id");
  if (!valid_path_id(m.snapshot_id)) return bad_meta("snapshot_id", "not a valid id");
  if (m.memory.size != uint64_t{m.mem_mib} << 20) {
    return bad_meta("files.memory.size", "is not mem_mib MiB");
  }
  return m;
}

Result<std::string> hash_file(const std::string& path) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return Error::unsupported(Cause::kHostIo, base::error_message("open " + path));
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                 XXH3_freeState);
  if (!state || XXH3_128bits_reset(state.get()) != XXH_OK) {
    return Error::unsupported(Cause::kResourceExhausted, "xxhash: cannot allocate its state");
  }
  std::string buf(kChunk, '\0');
  while (true) {
    const ssize_t n = ::read(in.fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::unsupported(Cause::kHostIo, base::error_message("read " + path));
    if (n == 0) break;
    (void)XXH3_128bits_update(state.get(), buf.data(), static_cast<size_t>(n));
  }
  return hex128(XXH3_128bits_digest(state.get()));
}

Status copy_sparse(const std::string& from, const std::string& to) {
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return Error::unsupported(Cause::kHostIo, base::error_message("open " + from));
  struct stat st {};
  if (::fstat(in.fd, &st) != 0)
    return Error::unsupported(Cause::kHostIo, base::error_message("stat " + from));
  Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (out.fd < 0) return Error::unsupported(Cause::kHostIo, base::error_message("create " + to));
  if (::ftruncate(out.fd, st.st_size) != 0) {
    return Error::unsupported(Cause::kHostIo, base::error_message("truncate " + to));
  }
  std::string buf(kChunk, '\0');
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = ::lseek(in.fd, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0)
      return Error::unsupported(Cause::kHostIo, base::error_message("seek data in " + from));
    off_t hole = ::lseek(in.fd, data, SEEK_HOLE);
    if (hole < 0)
      return Error::unsupported(Cause::kHostIo, base::error_message("seek hole in " + from));
    for (off_t off = data; off < hole;) {
      const size_t want = static_cast<size_t>(std::min<off_t>(hole - off, kChunk));
      const ssize_t n = ::pread(in.fd, buf.data(), want, off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return Error::unsupported(Cause::kHostIo,
                                  base::error_message("read " + from, n == 0 ? EIO : errno));
      for (ssize_t done = 0; done < n;) {
        const ssize_t w =
            ::pwrite(out.fd, buf.data() + done, static_cast<size_t>(n - done), off + done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
          return Error::unsupported(Cause::kHostIo,
                                    base::error_message("write " + to, w == 0 ? EIO : errno));
        done += w;
      }
      off += n;
    }
    pos = hole;
  }
  return {};
}

SnapshotStore::~SnapshotStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string SnapshotStore::dir(const std::string& vm_id, const std::string& snapshot_id) const {
  return root_ + "/" + vm_id + "/" + snapshot_id;
}

Result<size_t> SnapshotStore::open() {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec)
    return Error::unsupported(Cause::kHostIo,
                              "create snapshot directory " + root_ + ": " + ec.message());
  const std::string lock_path = root_ + "/.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0)
    return Error::unsupported(Cause::kHostIo, base::error_message("open " + lock_path));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (err == EWOULDBLOCK) {
      return Error::unsupported("snapshot directory " + root_ +
                                " is in use by another process (one store per worker: give each "
                                "worker its own --snapshot-dir)");
    }
    return Error::unsupported(Cause::kHostIo, base::error_message("lock " + lock_path, err));
  }
  size_t partial = 0;
  std::lock_guard lock(mu_);
  for (const auto& vm_entry : fs::directory_iterator(root_, ec)) {
    if (!vm_entry.is_directory()) continue;
    std::error_code ec2;
    for (const auto& entry : fs::directory_iterator(vm_entry.path(), ec2)) {
      const std::string name = entry.path().filename().string();
      if (name.find(".partial-") != std::string::npos) {
        fs::remove_all(entry.path(), ec2);
        ++partial;
        continue;
      }
      std::ifstream in(entry.path() / "meta.json", std::ios::binary);
      std::string text;
      const bool readable = in.is_open();
      if (readable) {
        text.resize(lim::kMaxMetaBytes + 1);  // one more than allowed: parse_meta refuses it
        in.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<size_t>(in.gcount()));
      }
      auto meta = readable ? parse_meta(text)
                           : Result<SnapshotMeta>(bad_meta("meta.json", "cannot be read"));
      if (!meta) {
        spdlog::warn("snapshot {}: {}; it will be refused", entry.path().string(),
                     meta.error().detail());
        continue;
      }
      if (meta.value().vm_id != vm_entry.path().filename().string() ||
          meta.value().snapshot_id != name) {
        spdlog::warn("snapshot {}: its metadata names {}/{}; ignored", entry.path().string(),
                     meta.value().vm_id, meta.value().snapshot_id);
        continue;
      }
      snapshots_[{meta.value().vm_id, meta.value().snapshot_id}] = meta.value();
    }
  }
  return partial;
}

Result<std::string> SnapshotStore::begin(const std::string& vm_id, const std::string& snapshot_id) {
  if (!valid_path_id(vm_id) || !valid_path_id(snapshot_id)) {
    return Error::unsupported(Cause::kInvalidInput,
                              "snapshot ids on the qemu backend name directories: the vm id '" +
                                  vm_id.substr(0, 80) + "' and snapshot id '" +
                                  snapshot_id.substr(0, 80) +
                                  "' must be 1-64 of [A-Za-z0-9._-] and not '.' or '..'");
  }
  std::lock_guard lock(mu_);
  if (snapshots_.count({vm_id, snapshot_id}) != 0 || fs::exists(dir(vm_id, snapshot_id))) {
    return Error::snapshot_already_exists(vm_id, snapshot_id);
  }
  const std::string partial = dir(vm_id, snapshot_id) + ".partial-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  if (ec) return Error::unsupported(Cause::kHostIo, "create " + partial + ": " + ec.message());
  return partial;
}

void SnapshotStore::abort(const std::string& partial) {
  std::error_code ec;
  fs::remove_all(partial, ec);
}

Result<SnapshotMeta> SnapshotStore::commit(const std::string& partial, SnapshotMeta meta) {
  auto fail = [&](Error e) -> Result<SnapshotMeta> {
    abort(partial);
    return e;
  };
  for (auto [name, file] : {std::pair{"memory", &meta.memory}, std::pair{"state", &meta.state}}) {
    const std::string path = partial + "/" + name;
    std::error_code ec;
    file->size = fs::file_size(path, ec);
    if (ec)
      return fail(
          Error::unsupported(Cause::kHostIo, "snapshot file " + path + ": " + ec.message()));
    auto hash = hash_file(path);
    if (!hash) return fail(hash.error());
    file->xxh3_128 = hash.value();
    if (::chmod(path.c_str(), 0444) != 0) {
      return fail(Error::unsupported(Cause::kHostIo, base::error_message("chmod " + path)));
    }
  }
  {
    const std::string path = partial + "/meta.json";
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << encode_meta(meta);
    out.close();
    if (!out || ::chmod(path.c_str(), 0444) != 0) {
      return fail(Error::unsupported(Cause::kHostIo, "write " + path));
    }
  }
  std::lock_guard lock(mu_);
  const std::string final_dir = dir(meta.vm_id, meta.snapshot_id);
  if (snapshots_.count({meta.vm_id, meta.snapshot_id}) != 0) {
    return fail(Error::snapshot_already_exists(meta.vm_id, meta.snapshot_id));
  }
  // rename(2) of a directory onto a missing name is atomic: a reader sees all of it or nothing.
  if (::rename(partial.c_str(), final_dir.c_str()) != 0) {
    return fail(Error::unsupported(Cause::kHostIo,
                                   base::error_message("rename " + partial + " to " + final_dir)));
  }
  snapshots_[{meta.vm_id, meta.snapshot_id}] = meta;
  return meta;
}

Status SnapshotStore::verify_file(const std::string& path, const SnapshotFile& expected,
                                  const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error::unsupported(
        Cause::kHostIo, base::error_message("snapshot " + std::string(what) + " file " + path));
  }
  const Identity id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                    static_cast<uint64_t>(st.st_size),
                    int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec};
  {
    std::lock_guard lock(mu_);
    auto it = verified_.find(path);
    if (it != verified_.end() && it->second == id) return {};
  }
  if (id.size != expected.size) {
    return Error::unsupported(Cause::kHostIo, "snapshot " + std::string(what) + " file " + path +
                                                  " has " + std::to_string(id.size) +
                                                  " bytes, its metadata says " +
                                                  std::to_string(expected.size) + "; refused");
  }
  {
    std::lock_guard lock(mu_);
    ++files_hashed_;
  }
  auto hash = hash_file(path);
  if (!hash) return hash.error();
  if (hash.value() != expected.xxh3_128) {
    return Error::unsupported(Cause::kHostIo, "snapshot " + std::string(what) + " file " + path +
                                                  " fails its checksum (xxh3-128 " + hash.value() +
                                                  ", metadata says " + expected.xxh3_128 +
                                                  "): corrupted; refused");
  }
  // Remembered only once the file is older than a timestamp's granularity: a rewrite in the same
  // tick as the last write would keep the modification time.
  const auto written = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(id.mtime_ns)));
  std::lock_guard lock(mu_);
  if (std::chrono::system_clock::now() - written > kRecentWrite) verified_[path] = id;
  return {};
}

uint64_t SnapshotStore::files_hashed() const {
  std::lock_guard lock(mu_);
  return files_hashed_;
}

Result<SnapshotMeta> SnapshotStore::check(const std::string& vm_id, const std::string& snapshot_id,
                                          const SnapshotEnv& env) {
  SnapshotMeta meta;
  {
    std::lock_guard lock(mu_);
    auto it = snapshots_.find({vm_id, snapshot_id});
    if (it == snapshots_.end()) return Error::snapshot_not_found(vm_id, snapshot_id);
    meta = it->second;
  }
  const std::string d = dir(vm_id, snapshot_id);
  if (std::string why = env_difference(meta.env, env); !why.empty()) {
    return Error::unsupported("snapshot '" + snapshot_id + "' of vm '" + vm_id +
                              "' refused: " + why);
  }
  if (auto st = verify_file(d + "/memory", meta.memory, "memory"); !st) return st.error();
  if (auto st = verify_file(d + "/state", meta.state, "state"); !st) return st.error();
  return meta;
}

Status SnapshotStore::remove(const std::string& vm_id, const std::string& snapshot_id) {
  std::lock_guard lock(mu_);
  if (snapshots_.erase({vm_id, snapshot_id}) == 0) {
    return Error::snapshot_not_found(vm_id, snapshot_id);
  }
  const std::string d = dir(vm_id, snapshot_id);
  verified_.erase(d + "/memory");
  verified_.erase(d + "/state");
  std::error_code ec;
  fs::remove_all(d, ec);
  if (ec) return Error::unsupported(Cause::kHostIo, "remove " + d + ": " + ec.message());
  fs::remove(root_ + "/" + vm_id, ec);  // the VM's directory, once it holds no snapshot
  return {};
}

std::vector<SnapshotMeta> SnapshotStore::list() const {
  std::lock_guard lock(mu_);
  std::vector<SnapshotMeta> out;
  for (const auto& [key, meta] : snapshots_) out.push_back(meta);
  return out;
}

std::vector<SnapshotMeta> SnapshotStore::list(const std::string& vm_id) const {
  std::lock_guard lock(mu_);
  std::vector<SnapshotMeta> out;
  for (auto it = snapshots_.lower_bound({vm_id, ""}); it != snapshots_.end(); ++it) {
    if (it->first.first != vm_id) break;
    out.push_back(it->second);
  }
  return out;
}

}  // namespace paddock::runtime::qemu
