#!/usr/bin/env bash
# Builds a guest image from its definition (tools/images/<name>.image; agent/guest/IMAGE.md,
# "Image definitions"), or finds it in the cache, and prints its directory on stdout.
#
#   kind "initramfs" (default): tools/build-guest-image.sh, as it always was.
#   kind "rootfs" (python, ...): a Debian root filesystem (debootstrap --variant=minbase plus the
#     definition's packages, or for small test images the packages unpacked with dpkg-deb) packed
#     into a read-only ext4 image with mkfs.ext4 -d (no loop mount), next to the kernel and an
#     initramfs whose agent mounts it (build-guest-image.sh --rootfs-modules).
#
# Cache (the same as build-guest-image.sh's):
#   <cache>/rootfs/<rootfs key>/{rootfs.ext4,rootfs.json}   the root filesystem, by its key
#   <cache>/<image key>/{vmlinuz,vmlinux,initramfs.cpio,rootfs.ext4,image.json}   hard links
#   <cache>/by-name/<name> -> ../<image dir>          the newest build of each definition
# The rootfs key hashes the definition file, this script and its helper, and the package versions:
# for debootstrap the mirror's package index (its InRelease names the Packages file by SHA256,
# and that file fixes the version of every package), for unpacked packages each .deb's version
# and SHA256 as apt resolves them. The image key hashes the rootfs key and the kernel+initramfs
# image it goes with, so a new agent does not mean a new debootstrap.
set -euo pipefail
export LC_ALL=C

FORMAT_VERSION=1
ARCH=amd64
# What is cut from the tree (kept small: every image is read by every VM of its kind). The
# packages' copyright files stay (usr/share/doc/*/copyright).
TRIM=(usr/share/man usr/share/info usr/share/locale usr/share/lintian usr/share/linda
      var/cache/apt var/lib/apt/lists var/cache/debconf/templates.dat-old
      var/cache/ldconfig/aux-cache etc/resolv.conf etc/machine-id)
# Mount points the agent uses inside the root (it mounts proc, sysfs, devtmpfs and tmpfs there).
MOUNT_POINTS=(proc sys dev tmp work run)

prog=$(basename "$0")
SELF=$(readlink -f "$0")
TOOLS=$(dirname "$SELF")
HELPER="$TOOLS/images/image_def.py"

usage() {
  cat <<EOF
usage: $prog [options] NAME|FILE

Builds (or finds in the cache) the image that tools/images/NAME.image (or FILE) describes and
prints its directory on stdout (the only line there); progress goes to stderr.

  --agent PATH        the guest agent (static); needed unless --print-key or --rootfs-only
  --cache-dir DIR     image cache (default: \${PADDOCK_IMAGE_CACHE:-/var/cache/paddock/images})
  --deb-dir DIR       downloaded .deb files (default: <cache-dir>/debs)
  --mirror URL        Debian mirror (default: the bookworm URI of this machine's apt sources)
  --index-sha256 HEX  take this as the mirror's package index instead of fetching its InRelease
                      (offline key computation; tests)
  --print-key         print the root filesystem's cache key and stop (builds nothing)
  --rootfs-only       build (or find) only the root filesystem; print its directory
  --force             rebuild the root filesystem even if it is cached
  -h, --help          this text
EOF
}
log() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $*" >&2; exit 1; }

agent="" cache_dir="${PADDOCK_IMAGE_CACHE:-/var/cache/paddock/images}" deb_dir="" mirror=""
index_sha="" print_key=0 rootfs_only=0 force=0 def_arg=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --agent) [[ $# -ge 2 ]] || die "--agent needs a path"; agent=$2; shift 2 ;;
    --cache-dir) [[ $# -ge 2 ]] || die "--cache-dir needs a directory"; cache_dir=$2; shift 2 ;;
    --deb-dir) [[ $# -ge 2 ]] || die "--deb-dir needs a directory"; deb_dir=$2; shift 2 ;;
    --mirror) [[ $# -ge 2 ]] || die "--mirror needs a URL"; mirror=$2; shift 2 ;;
    --index-sha256) [[ $# -ge 2 ]] || die "--index-sha256 needs a value"; index_sha=$2; shift 2 ;;
    --print-key) print_key=1; shift ;;
    --rootfs-only) rootfs_only=1; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option '$1'" ;;
    *) [[ -z "$def_arg" ]] || die "one image at a time (got '$def_arg' and '$1')"; def_arg=$1; shift ;;
  esac
done
[[ -n "$def_arg" ]] || { usage >&2; die "which image? (a name in $TOOLS/images, or a file)"; }
if [[ "$def_arg" == */* || "$def_arg" == *.image ]]; then def_file=$def_arg
else def_file="$TOOLS/images/$def_arg.image"; fi
# shellcheck disable=SC2012  # image names are [a-z0-9._-]: ls lists them as they are
[[ -f "$def_file" ]] || die "no image definition '$def_file' (images: $(cd "$TOOLS/images" && ls ./*.image | sed 's|^\./||; s|\.image$||' | paste -sd' '))"
[[ -n "$cache_dir" ]] || die "--cache-dir is empty"
[[ -n "$deb_dir" ]] || deb_dir="$cache_dir/debs"
command -v python3 >/dev/null || die "python3 is needed to read image definitions: apt-get install python3"

NAME="" KIND="" SUITE="" VARIANT="" PACKAGES=""
shell_vars=$(python3 "$HELPER" shell "$def_file") || die "bad image definition $def_file"
eval "$shell_vars"
sha() { sha256sum <"$1" | cut -d' ' -f1; }

# The newest build of a definition, by name (relative link, replaced atomically).
link_by_name() {
  mkdir -p "$cache_dir/by-name"
  ln -sfn "../$(basename "$1")" "$cache_dir/by-name/.$NAME.$$"
  mv -T "$cache_dir/by-name/.$NAME.$$" "$cache_dir/by-name/$NAME"
}

build_base() {  # build_base [--rootfs-modules]: the kernel + initramfs image directory
  [[ -n "$agent" ]] || die "--agent is needed (the guest agent, e.g. build/agent/guest/paddock-agent)"
  local extra=(); [[ $force -eq 1 && "$KIND" == initramfs ]] && extra+=(--force)
  "$TOOLS/build-guest-image.sh" --agent "$agent" --cache-dir "$cache_dir" --deb-dir "$deb_dir" \
    "$@" "${extra[@]}" | tail -n 1
}

if [[ "$KIND" == initramfs ]]; then
  [[ $print_key -eq 0 && $rootfs_only -eq 0 ]] || die "'$NAME' has no root filesystem (kind initramfs)"
  dir=$(build_base) || die "tools/build-guest-image.sh failed"
  link_by_name "$dir"
  echo "$dir"
  exit 0
fi

# ---- the root filesystem's inputs ----------------------------------------------------------------
if [[ -z "$mirror" ]]; then
  mirror=$(grep -hs "^URIs:" /etc/apt/sources.list.d/*.sources | grep -v security | awk '{print $2}' | grep -m1 debian || true)
  [[ -n "$mirror" ]] || mirror=$(grep -hs "^deb .* bookworm " /etc/apt/sources.list | awk '{print $2}' | head -n 1 || true)
  [[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian
fi
mirror=${mirror%/}
# apt's proxy, if it has one, for debootstrap and the index download too.
if [[ -z "${http_proxy:-}" ]] && command -v apt-config >/dev/null; then
  APT_PROXY=""
  eval "$(apt-config shell APT_PROXY Acquire::http::Proxy)"
  if [[ -n "$APT_PROXY" ]]; then export http_proxy=$APT_PROXY; log "using apt's proxy $APT_PROXY"; fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-rootfs.XXXXXX")
stage=""
cleanup() {
  # debootstrap may leave mounts (proc, sys) in the tree when killed: never delete through one.
  if [[ -d "$work/root" ]]; then
    local m
    # shellcheck disable=SC2013  # mount points under our work dir have no spaces (we chose it)
    for m in $(awk -v r="$work/root" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
  fi
  rm -rf "$work" ${stage:+"$stage"}
}
trap cleanup EXIT

deb_lines=()  # unpack: "name version arch sha256"
if [[ "$VARIANT" == minbase ]]; then
  if [[ -z "$index_sha" ]]; then
    python3 "$HELPER" fetch "$mirror/dists/$SUITE/InRelease" "$work/InRelease" ||
      die "cannot read $mirror/dists/$SUITE/InRelease (no network? --index-sha256 names an index offline)"
    index_sha=$(python3 "$HELPER" index-sha256 "$work/InRelease" "$ARCH") || die "bad InRelease from $mirror"
  fi
  [[ "$index_sha" =~ ^[0-9a-f]{64}$ ]] || die "--index-sha256: not 64 hex digits"
  source_line="index $mirror $SUITE $ARCH $index_sha"
  tools_line="debootstrap $(debootstrap --version 2>/dev/null || echo missing); mke2fs $(mke2fs -V 2>&1 | sed -n 1p)"
else
  # unpack: exactly the listed packages as apt resolves them here, unpacked with dpkg-deb -x: no
  # dependencies, no maintainer scripts. Seconds instead of minutes: for small test images.
  IFS=, read -r -a pkgs <<<"$PACKAGES"
  [[ ${#pkgs[@]} -gt 0 ]] || die "debian.variant unpack needs packages"
  records=$(apt-cache show --no-all-versions "${pkgs[@]}" 2>/dev/null || true)
  field_of() {
    awk -v p="$1" -v f="$2" 'BEGIN { RS = ""; FS = "\n" }
      { pk = ""; for (i = 1; i <= NF; i++) if (index($i, "Package: ") == 1) pk = substr($i, 10)
        if (pk == p) for (i = 1; i <= NF; i++) if (index($i, f ": ") == 1) { print substr($i, length(f) + 3); exit } }' <<<"$records"
  }
  for p in "${pkgs[@]}"; do
    v=$(field_of "$p" Version) a=$(field_of "$p" Architecture) s=$(field_of "$p" SHA256)
    [[ -n "$v" && -n "$s" ]] || die "apt has no version of '$p' to download (apt-cache show $p; apt-get update?)"
    deb_lines+=("$p $v $a $s")
  done
  source_line=$(printf 'deb %s\n' "${deb_lines[@]}")
  tools_line="dpkg-deb $(dpkg-deb --version | sed -n 1p); mke2fs $(mke2fs -V 2>&1 | sed -n 1p)"
fi
rootfs_inputs() {
  cat <<EOF
paddock-rootfs format $FORMAT_VERSION
builder $(sha "$SELF")
helper $(sha "$HELPER")
definition $(sha "$def_file")
variant $VARIANT
$source_line
$tools_line
EOF
}
rootfs_key=$(rootfs_inputs | sha256sum | cut -d' ' -f1)
if [[ $print_key -eq 1 ]]; then echo "$rootfs_key"; exit 0; fi

# ---- build the root filesystem (or find it) ------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, and file owners in the image)"
for t in debootstrap dpkg-deb mkfs.ext4 debugfs e2fsck flock; do
  command -v "$t" >/dev/null || die "missing $t: apt-get install debootstrap e2fsprogs util-linux (tools/install-deps.sh)"
done
mkdir -p "$cache_dir/rootfs" "$deb_dir/debootstrap"
exec 8>"$cache_dir/.rootfs.lock"
flock 8  # one root filesystem build per cache at a time; a second one then finds it ready
rm -rf "$cache_dir"/rootfs/.build.*

rootfs_dir="$cache_dir/rootfs/$rootfs_key"
if [[ $force -eq 1 || ! -f "$rootfs_dir/rootfs.json" ]]; then
  t0=$(date +%s)
  root="$work/root"
  if [[ "$VARIANT" == unpack ]]; then
    mkdir -p "$root"
    for line in "${deb_lines[@]}"; do
      read -r p v a s <<<"$line"
      file="$deb_dir/${p}_${v//:/%3a}_${a}.deb"
      if [[ ! -f "$file" || $(sha "$file") != "$s" ]]; then
        rm -f "$file"; log "downloading $p=$v"
        (cd "$deb_dir" && apt-get download -q -o APT::Sandbox::User=root "$p=$v" >&2) || die "apt-get download $p=$v failed"
        [[ -f "$file" && $(sha "$file") == "$s" ]] || die "downloaded $p=$v does not match apt's SHA256"
      fi
      dpkg-deb -x "$file" "$root" || die "dpkg-deb -x $file failed"
      echo "$p $v $a" >>"$work/packages.txt"
    done
    sort -o "$work/packages.txt" "$work/packages.txt"
    # No index date here: the newest file the packages hold.
    epoch=$(find "$root" -type f -printf '%T@\n' | cut -d. -f1 | sort -n | tail -n 1)
  else
  log "debootstrap --variant=minbase $SUITE from $mirror${PACKAGES:+ with $PACKAGES} (about a minute or two)"
  if ! debootstrap --variant=minbase --arch="$ARCH" --components=main ${PACKAGES:+--include="$PACKAGES"} \
      --cache-dir="$(readlink -f "$deb_dir/debootstrap")" "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed (its log's tail is above)"
  fi
  # The index debootstrap really used; if the mirror moved on since the key was made, the key
  # follows what was built.
  # shellcheck disable=SC2012  # apt list file names are [A-Za-z0-9._-]
  used=$(ls "$root"/var/lib/apt/lists/*_dists_"${SUITE}"_InRelease 2>/dev/null | head -n 1 || true)
  epoch=$(date +%s)
  if [[ -n "$used" ]]; then
    used_sha=$(python3 "$HELPER" index-sha256 "$used" "$ARCH")
    epoch=$(python3 "$HELPER" index-date "$used")
    if [[ "$used_sha" != "$index_sha" ]]; then
      log "the mirror's index changed during the build ($index_sha -> $used_sha): keyed by the new one"
      index_sha=$used_sha source_line="index $mirror $SUITE $ARCH $index_sha"
      rootfs_key=$(rootfs_inputs | sha256sum | cut -d' ' -f1)
      rootfs_dir="$cache_dir/rootfs/$rootfs_key"
    fi
  fi
  dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package} ${Version} ${Architecture}\n' |
    sort >"$work/packages.txt"
  fi
  t1=$(date +%s)

  # Smaller: documentation (but copyrights), manuals, translations, apt's lists and caches, logs.
  for p in "${TRIM[@]}"; do rm -rf "${root:?}/$p"; done
  if [[ -d "$root/usr/share/doc" ]]; then
    find "$root/usr/share/doc" -mindepth 1 \( -type f -o -type l \) ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  fi
  find "$root/var/log" -type f -delete 2>/dev/null || true
  find "$root/var/cache/debconf" -name '*-old' -delete 2>/dev/null || true
  find "$root/var/lib/dpkg" -maxdepth 1 -name '*-old' -delete
  echo paddock >"$root/etc/hostname"
  for m in "${MOUNT_POINTS[@]}"; do mkdir -p "$root/$m"; done
  chmod 1777 "$root/tmp"
  python3 "$HELPER" stage "$def_file" "$root" || die "cannot put the definition's files in the tree"
  # Times: nothing newer than the package index (what the build made now gets its date).
  find "$root" -newermt "@$epoch" -print0 | xargs -0r touch -h -d "@$epoch"

  # A read-only ext4 made from the tree (mkfs.ext4 -d: no loop mount, no root needed for that
  # part). No journal (it is never written), no reserved blocks, a UUID and hash seed from the
  # key, and the index's date for every time mke2fs writes: the same tree gives the same image.
  stage="$cache_dir/rootfs/.build.$rootfs_key.$$"
  mkdir -p "$stage"
  nfiles=$(find "$root" | wc -l)
  used_kib=$(du -s -B1K "$root" | cut -f1)
  uuid=$(echo "$rootfs_key" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
  size_kib=$((used_kib * 110 / 100 + nfiles / 4 + 4096))
  inodes=$((nfiles + nfiles / 10 + 256))
  make_fs() {
    rm -f "$stage/rootfs.ext4"
    E2FSPROGS_FAKE_TIME=$epoch SOURCE_DATE_EPOCH=$epoch mkfs.ext4 -q -F -b 4096 -I 256 -m 0 \
      -N "$inodes" -O ^has_journal -L paddock-root -U "$uuid" \
      -E "hash_seed=$uuid,root_owner=0:0,lazy_itable_init=0,nodiscard" \
      -d "$root" "$stage/rootfs.ext4" "${1}k" >"$work/mkfs.log" 2>&1
  }
  if ! make_fs "$size_kib"; then
    log "mkfs.ext4 with ${size_kib} KiB failed; trying with half as much again"
    size_kib=$((size_kib * 3 / 2))
    make_fs "$size_kib" || { cat "$work/mkfs.log" >&2; die "mkfs.ext4 -d failed"; }
  fi
  # mke2fs 1.47.0 copies each file's atime and ctime from the tree (the build's own clock, which
  # touch cannot set): fix them to the epoch with debugfs, one process for every path.
  (cd "$root" && find . -printf '%P\n') | LC_ALL=C sort | awk -v e="@$epoch" '
    index($0, "\"") == 0 { p = "/" $0; for (f = 1; f <= 3; f++) printf "sif \"%s\" %s %s\n", p, (f == 1 ? "atime" : f == 2 ? "ctime" : "crtime"), e }' \
    >"$work/times.debugfs"
  E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$work/times.debugfs" "$stage/rootfs.ext4" >"$work/debugfs.log" 2>&1 ||
    { tail -n 5 "$work/debugfs.log" >&2; die "debugfs could not set the image's times"; }
  e2fsck -fn "$stage/rootfs.ext4" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; die "e2fsck finds the new image broken"; }
  chmod 0444 "$stage/rootfs.ext4"
  python3 - "$stage/rootfs.json" "$work/packages.txt" <<EOF || die "cannot write rootfs.json"
import json, sys
pk = [dict(zip(("name", "version", "architecture"), l.split())) for l in open(sys.argv[2]) if l.strip()]
json.dump({"format": $FORMAT_VERSION, "name": "$NAME", "rootfs_key": "$rootfs_key",
           "variant": "$VARIANT", "suite": "$SUITE", "mirror": "$mirror",
           "index_sha256": "$index_sha", "source_date_epoch": $epoch,
           "definition_sha256": "$(sha "$def_file")", "file": "rootfs.ext4",
           "size": $(stat -c %s "$stage/rootfs.ext4"), "sha256": "$(sha "$stage/rootfs.ext4")",
           "tree_kib": $used_kib, "files": $nfiles, "packages": pk},
          open(sys.argv[1], "w"), indent=2, sort_keys=True)
EOF
  chmod 0644 "$stage/rootfs.json"
  chmod 0755 "$stage"
  rm -rf "$rootfs_dir"
  mv "$stage" "$rootfs_dir"
  stage=""
  t2=$(date +%s)
  log "root filesystem $rootfs_dir: packages $((t1 - t0)) s, image $((t2 - t1)) s, $(( $(stat -c %s "$rootfs_dir/rootfs.ext4") >> 20 )) MiB ($(wc -l <"$work/packages.txt") packages)"
else
  log "cached root filesystem: $rootfs_dir"
fi
if [[ $rootfs_only -eq 1 ]]; then echo "$rootfs_dir"; exit 0; fi

# ---- the image: kernel + initramfs (with the rootfs modules) + the root filesystem ---------------
base=$(build_base --rootfs-modules) || die "tools/build-guest-image.sh --rootfs-modules failed"
[[ -f "$base/manifest.json" ]] || die "no kernel image in '$base'"
image_key=$(printf 'paddock-image format %s\nname %s\nbase %s\nrootfs %s\n' \
  "$FORMAT_VERSION" "$NAME" "$(basename "$base")" "$rootfs_key" | sha256sum | cut -d' ' -f1)
image_dir="$cache_dir/$image_key"
if [[ ! -f "$image_dir/image.json" ]]; then
  stage="$cache_dir/.build.$image_key.$$"
  rm -rf "$stage"; mkdir -p "$stage"
  for f in vmlinuz vmlinux initramfs.cpio; do
    ln "$base/$f" "$stage/$f" 2>/dev/null || cp -p "$base/$f" "$stage/$f"
  done
  ln "$rootfs_dir/rootfs.ext4" "$stage/rootfs.ext4" 2>/dev/null || cp -p "$rootfs_dir/rootfs.ext4" "$stage/rootfs.ext4"
  python3 - "$stage/image.json" "$rootfs_dir/rootfs.json" "$base/manifest.json" "$def_file" "$HELPER" <<EOF || die "cannot write image.json"
import json, sys, importlib.util
spec = importlib.util.spec_from_file_location("image_def", sys.argv[5]); d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d)
definition = d.load(sys.argv[4])
rootfs = json.load(open(sys.argv[2])); base = json.load(open(sys.argv[3]))
json.dump({"format": $FORMAT_VERSION, "name": definition["name"], "kind": "rootfs",
           "image_key": "$image_key", "kernel": "vmlinuz", "initramfs": "initramfs.cpio",
           "rootfs": {"file": "rootfs.ext4", "key": rootfs["rootfs_key"], "size": rootfs["size"],
                      "sha256": rootfs["sha256"], "label": "paddock-root"},
           "base": {"input_hash": base["input_hash"], "kernel_version": base["kernel_version"],
                    "modules": base["modules"], "rootfs_modules": base["rootfs_modules"]},
           "suite": rootfs["suite"], "index_sha256": rootfs["index_sha256"],
           "packages": rootfs["packages"], "env": definition["env"],
           "warmup": definition["warmup"],
           "files": [f["path"] for f in definition["files"]]},
          open(sys.argv[1], "w"), indent=2, sort_keys=True)
EOF
  chmod 0644 "$stage/image.json"; chmod 0755 "$stage"
  rm -rf "$image_dir"; mv "$stage" "$image_dir"; stage=""
  log "image $NAME: $image_dir"
else
  log "cached image $NAME: $image_dir"
fi
link_by_name "$image_dir"
echo "$image_dir"
