// A guest image the QEMU backend boots, by name (agent/guest/IMAGE.md): a directory with the
// kernel (vmlinuz) and initramfs (initramfs.cpio[.gz]) as tools/build-guest-image.sh makes it,
// and, for images with a root filesystem (tools/build-image.sh), rootfs.ext4, which QEMU gets as
// a read-only virtio-blk drive and the agent mounts under a tmpfs overlay.
//
// Thread-safety: a GuestImage is immutable once loaded.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/runtime/error.h"
#include "qemu/snapshot_store.h"

namespace paddock::runtime::qemu {

// What the guest's command line says when a root filesystem is attached (the agent reads it).
inline constexpr const char* kRootfsKernelArg = "paddock.rootfs=/dev/vda";

struct GuestImage {
  std::string name;
  std::string dir;
  std::string kernel;  // host path (a staged copy when jailed across filesystems)
  std::string initrd;
  std::string rootfs;       // empty: no root filesystem (jobs run in the initramfs)
  std::string kernel_args;  // the provider's line, plus kRootfsKernelArg with a rootfs
  // What a snapshot of a VM of this image needs to be restored; image_id hashes the kernel, the
  // initramfs and the root filesystem.
  SnapshotEnv env;
  // The command its templates run before their snapshot (image.json's "warmup"; empty: none).
  std::vector<std::string> warmup;
};

// Limits on image.json's "warmup" (it is the image builder's, read at start).
inline constexpr size_t kMaxImageJsonBytes = 1 << 20;
inline constexpr size_t kMaxWarmupArgs = 64;
inline constexpr size_t kMaxWarmupArgBytes = 4096;

// Images by name: "default" from `default_dir` (may be empty), then `named` (name -> dir), then
// every <image_root>/by-name/<name> link (tools/build-image.sh keeps them). A name given twice is
// taken from the first. Unsupported when there is none, or one is incomplete (naming the file and
// how to build it). Paths are made canonical (the jail binds the root filesystem at its path).
Result<std::map<std::string, std::string>> image_dirs(
    const std::string& default_dir, const std::map<std::string, std::string>& named,
    const std::string& image_root);

// Finds the files of one image directory. `base_env` is the provider's SnapshotEnv without the
// image (image_id and kernel_args are filled here). The files are hashed (XXH3-128). An
// image.json there (tools/build-image.sh writes one) gives the warm-up: Unsupported, naming the
// image and the field, when it is not JSON, is too large, or its "warmup" is not a list of 1-64
// strings of at most 4096 bytes without NUL.
Result<GuestImage> load_guest_image(const std::string& name, const std::string& dir,
                                    const std::string& kernel_args, SnapshotEnv base_env);

// The warm-up an image.json names ("warmup": a list of strings, argv), with the limits above;
// empty when it names none. Unsupported, naming the image, for anything else (not JSON, nested
// over 16 levels, a bad "warmup"). Never throws.
Result<std::vector<std::string>> parse_image_warmup(const std::string& name, std::string_view text);

// Jails hard-link the kernel and initramfs; across filesystems they would copy them for every VM.
// Copies them once to <staging>/<name>/ (root's, read-only) when `dev` differs from theirs. The
// root filesystem is never copied: the jail binds it read-only at its own path.
Status stage_for_jail(GuestImage& image, const std::string& staging, dev_t dev);

}  // namespace paddock::runtime::qemu
