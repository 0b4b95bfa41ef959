#include "qemu/guest_image.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "os/json_depth.h"

namespace paddock::runtime::qemu {

namespace fs = std::filesystem;

namespace {

bool valid_image_name(const std::string& n) {
  if (n.empty() || n.size() > 32) return false;
  for (char c : n) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return n.front() != '.' && n.front() != '-';
}

// image.json's "warmup" in `dir`, if the file is there (an image from tools/build-guest-image.sh
// alone has none).
Result<std::vector<std::string>> read_warmup(const std::string& name, const std::string& dir) {
  const std::string path = dir + "/image.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::vector<std::string>{};
  const auto size = fs::file_size(path, ec);
  if (ec || size > kMaxImageJsonBytes) {
    return Error::unsupported("guest image '" + name + "': " + path +
                              " cannot be read or is larger than 1 MiB");
  }
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_image_warmup(name, text);
}

}  // namespace

Result<std::map<std::string, std::string>> image_dirs(
    const std::string& default_dir, const std::map<std::string, std::string>& named,
    const std::string& image_root) {
  std::map<std::string, std::string> dirs;
  auto add = [&](const std::string& name, const std::string& dir) -> Status {
    if (!valid_image_name(name)) {
      return Error::unsupported("image name '" + name + "': not 1-32 of [a-z0-9._-]");
    }
    std::error_code ec;
    const std::string canonical = fs::canonical(dir, ec).string();
    if (ec) {
      return Error::unsupported(
          "image '" + name + "': " + dir + ": " + ec.message() + "; build it with " +
          (name == "default" ? std::string("tools/build-guest-image.sh (or tools/build-image.sh "
                                           "default)")
                             : "tools/build-image.sh " + name));
    }
    dirs.try_emplace(name, canonical);
    return {};
  };
  if (!default_dir.empty()) {
    if (auto st = add("default", default_dir); !st) return st.error();
  }
  for (const auto& [name, dir] : named) {
    if (auto st = add(name, dir); !st) return st.error();
  }
  if (!image_root.empty()) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(image_root + "/by-name", ec)) {
      const std::string name = e.path().filename().string();
      if (name.front() == '.') continue;  // a link being replaced
      if (auto st = add(name, e.path().string()); !st) return st.error();
    }
  }
  if (dirs.empty()) {
    return Error::unsupported(
        "the qemu backend needs a guest image directory (--image-dir); build one with "
        "tools/build-guest-image.sh (or tools/build-image.sh NAME)");
  }
  return dirs;
}

Result<std::vector<std::string>> parse_image_warmup(const std::string& name,
                                                    std::string_view text) {
  auto refused = [&](const std::string& why) -> Error {
    return Error::unsupported("guest image '" + name + "': its image.json " + why +
                              "; rebuild it with tools/build-image.sh " + name);
  };
  if (text.size() > kMaxImageJsonBytes) return refused("is larger than 1 MiB");
  if (os::json_nested_deeper_than(text, 16)) return refused("is nested too deeply");
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (!doc.is_object()) return refused("is not a JSON object");
  std::vector<std::string> argv;
  const auto it = doc.find("warmup");
  if (it == doc.end() || it->is_null()) return argv;
  if (!it->is_array() || it->size() > kMaxWarmupArgs) {
    return refused("has a \"warmup\" that is not a list of at most " +
                   std::to_string(kMaxWarmupArgs) + " strings");
  }
  for (const auto& a : *it) {
    if (!a.is_string()) return refused("has a \"warmup\" item that is not a string");
    const auto& arg = a.get_ref<const std::string&>();
    if (arg.size() > kMaxWarmupArgBytes || arg.find('\0') != std::string::npos) {
      return refused("has a \"warmup\" argument over " + std::to_string(kMaxWarmupArgBytes) +
                     " bytes or with a NUL");
    }
    argv.push_back(arg);
  }
  if (!argv.empty() && argv.front().empty()) return refused("has a \"warmup\" without a program");
  return argv;
}

Result<GuestImage> load_guest_image(const std::string& name, const std::string& dir,
                                    const std::string& kernel_args, SnapshotEnv base_env) {
  GuestImage image;
  image.name = name;
  image.dir = dir;
  image.kernel = dir + "/vmlinuz";
  for (const char* file : {"initramfs.cpio.gz", "initramfs.cpio"}) {
    if (fs::exists(dir + "/" + file)) {
      image.initrd = dir + "/" + file;
      break;
    }
  }
  if (!fs::exists(image.kernel) || image.initrd.empty()) {
    return Error::unsupported("guest image '" + name + "' incomplete in " + dir +
                              " (needs vmlinuz and initramfs.cpio[.gz]); build it with " +
                              (name == "default" ? std::string("tools/build-guest-image.sh (or "
                                                               "tools/build-image.sh default)")
                                                 : "tools/build-image.sh " + name));
  }
  image.kernel_args = kernel_args;
  if (fs::exists(dir + "/rootfs.ext4")) {
    image.rootfs = dir + "/rootfs.ext4";
    // QEMU's -drive splits its options at commas; the jail's /dev is its own tmpfs (a bind below
    // it would be hidden).
    if (image.rootfs.find(',') != std::string::npos || image.rootfs.rfind("/dev/", 0) == 0) {
      return Error::unsupported("guest image '" + name + "': the root filesystem's path " +
                                image.rootfs + " holds a comma or is below /dev: move the image");
    }
    image.kernel_args += std::string(" ") + kRootfsKernelArg;
  }
  std::string id;
  for (const std::string* file : {&image.kernel, &image.initrd, &image.rootfs}) {
    if (file->empty()) continue;
    auto hash = hash_file(*file);
    if (!hash) return hash.error();
    id += hash.value();
  }
  auto warmup = read_warmup(name, dir);
  if (!warmup) return warmup.error();
  image.warmup = std::move(warmup.value());
  image.env = std::move(base_env);
  image.env.image_id = id;
  image.env.kernel_args = image.kernel_args;
  return image;
}

Status stage_for_jail(GuestImage& image, const std::string& staging, dev_t dev) {
  struct stat st {};
  if (::stat(image.kernel.c_str(), &st) != 0 || st.st_dev == dev) return {};
  const std::string dir = staging + "/" + image.name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  for (std::string* file : {&image.kernel, &image.initrd}) {
    const std::string target = dir + "/" + fs::path(*file).filename().string();
    if (!ec) fs::copy_file(*file, target, fs::copy_options::overwrite_existing, ec);
    if (!ec) {
      fs::permissions(target,
                      fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read, ec);
    }
    if (ec)
      return Error::unsupported(Cause::kHostIo,
                                "stage " + *file + " in " + dir + ": " + ec.message());
    *file = target;
  }
  return {};
}

}  // namespace paddock::runtime::qemu
