#!/usr/bin/env bash
# Builds Paddock's default guest image from Debian's own packages, without installing them on the
# host: the kernel (the linux-image-6.1.*-amd64 that linux-image-amd64 depends on), the few kernel
# modules the guest agent needs, busybox-static, and the agent as /init, packed into a reproducible
# newc initramfs. The image is cached by the hash of its inputs:
#
#   <cache-dir>/<sha256 of inputs>/{vmlinuz,vmlinux,initramfs.cpio,manifest.json,inputs.txt}
#   <cache-dir>/debs/            downloaded .deb files (kept, verified against apt's SHA256)
#
# stdout: the image directory, as the only and last line. Everything else goes to stderr.
# See agent/guest/IMAGE.md for the boot command lines and the measurements behind the choices.
set -euo pipefail
export LC_ALL=C

# ---- what goes in (changing any of this changes the input hash: the script's content is hashed) --
# Modules the agent loads, in this order after their dependencies (found from each .ko's modinfo):
# virtio_mmio is the transport (-M microvm's virtio-mmio devices, found through ACPI "LNRO0005"),
# then the drivers of the devices the agent uses.
MODULES=(virtio_mmio virtio_console virtio_blk virtio_net)
# With --rootfs-modules (images with a root filesystem, tools/build-image.sh): what the agent needs
# to mount a read-only ext4 on virtio-blk with an overlay on it. Listed in
# /etc/paddock/modules.rootfs and loaded only when the host attaches a root filesystem, so images
# without one boot as before. ext4 asks for "crc32c" through the crypto API (request_module, and
# the guest has no modprobe): crc32c_generic is loaded first.
ROOTFS_MODULES=(crc32c_generic ext4 overlay)
KERNEL_META=linux-image-amd64
KERNEL_RE='^linux-image-6\.1\.[0-9]+-[0-9]+-amd64$'
BUSYBOX_PKG=busybox-static
# Busybox applets not linked: /init is the agent, and a failing agent must panic the guest rather
# than fall back to busybox's init.
SKIP_APPLETS=(sbin/init linuxrc)
# Module signatures are cut off: the kernel then skips an RSA verification per module (~11 ms of
# guest time each under TCG) and only notes a taint. They protect nothing here: the image is
# trusted by its content hash, and the kernel does not enforce signatures (no module.sig_enforce).
STRIP_MODULE_SIGNATURES=1
# Uncompressed initramfs: boots faster under TCG than gzip (measured, see IMAGE.md).
INITRAMFS_NAME=initramfs.cpio
# What the image was measured to boot with (agent/guest/IMAGE.md); written to manifest.json. The
# host adds tsc_early_khz=<its TSC kHz>: without it the guest may hang calibrating the TSC.
BOOT_MACHINE="microvm,pic=off,pit=off,isa-serial=on,rtc=on"
BOOT_CMDLINE="console=ttyS0 reboot=k panic=-1 quiet cryptomgr.notests tsc=reliable"
FIXED_MTIME=@0
FORMAT_VERSION=1
# --------------------------------------------------------------------------------------------------

prog=$(basename "$0")
SELF=$(readlink -f "$0")

usage() {
  cat <<EOF
usage: $prog --agent PATH [--cache-dir DIR] [--deb-dir DIR] [--rootfs-modules] [--force]
       $prog --check [--agent PATH] [--cache-dir DIR]

Builds (or finds in the cache) the default guest image and prints its directory on stdout.

  --agent PATH      the guest agent, a static executable; becomes the initramfs' /init
  --cache-dir DIR   image cache (default: \${PADDOCK_IMAGE_CACHE:-/var/cache/paddock/images})
  --deb-dir DIR     where downloaded .deb files are kept (default: <cache-dir>/debs)
  --rootfs-modules  also put in the modules that mount a root filesystem image (ext4, overlay),
                    loaded only when the host attaches one (tools/build-image.sh uses this)
  --force           rebuild even if the image for these inputs is already cached
  --check           check tools, apt and the agent; build nothing, print nothing on stdout
  -h, --help        this text
EOF
}

log() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $*" >&2; exit 1; }

agent="" cache_dir="${PADDOCK_IMAGE_CACHE:-/var/cache/paddock/images}" deb_dir="" force=0 check=0
rootfs_modules=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --agent) [[ $# -ge 2 ]] || die "--agent needs a path"; agent=$2; shift 2 ;;
    --agent=*) agent=${1#*=}; shift ;;
    --cache-dir) [[ $# -ge 2 ]] || die "--cache-dir needs a directory"; cache_dir=$2; shift 2 ;;
    --cache-dir=*) cache_dir=${1#*=}; shift ;;
    --deb-dir) [[ $# -ge 2 ]] || die "--deb-dir needs a directory"; deb_dir=$2; shift 2 ;;
    --deb-dir=*) deb_dir=${1#*=}; shift ;;
    --force) force=1; shift ;;
    --rootfs-modules) rootfs_modules=1; shift ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[[ -n "$cache_dir" ]] || die "--cache-dir is empty"
[[ -n "$deb_dir" ]] || deb_dir="$cache_dir/debs"

# ---- tools ---------------------------------------------------------------------------------------
# tool -> Debian package that provides it
declare -A TOOL_PKG=(
  [apt-get]=apt [apt-cache]=apt [dpkg-deb]=dpkg [cpio]=cpio [sha256sum]=coreutils
  [mknod]=coreutils [od]=coreutils [truncate]=coreutils [find]=findutils [flock]=util-linux [xz]=xz-utils [zstd]=zstd [gzip]=gzip
)
missing_tools() {
  local t miss=()
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || miss+=("$t"); done
  [[ ${#miss[@]} -eq 0 ]] && return 0
  local pkgs=() m
  for m in "${miss[@]}"; do pkgs+=("${TOOL_PKG[$m]:-$m}"); done
  echo "missing tool(s): ${miss[*]} -- install with: apt-get install $(printf '%s\n' "${pkgs[@]}" | sort -u | paste -sd' ')"
  return 1
}
REQUIRED_TOOLS=(apt-get apt-cache dpkg-deb cpio sha256sum mknod find flock xz od truncate)

check_agent() {
  [[ -n "$agent" ]] || { echo "no --agent given (the guest agent binary, e.g. build/agent/guest/paddock-agent)"; return 1; }
  [[ -e "$agent" ]] || { echo "agent '$agent' does not exist (build it: ninja -C <build dir> paddock-agent)"; return 1; }
  [[ -f "$agent" ]] || { echo "agent '$agent' is not a regular file"; return 1; }
  [[ -r "$agent" ]] || { echo "agent '$agent' is not readable"; return 1; }
  local magic
  magic=$(head -c 4 "$agent" | od -An -c | tr -d ' \n')
  if [[ "$magic" == '177ELF' ]]; then
    if command -v readelf >/dev/null 2>&1 && readelf -lW "$agent" 2>/dev/null | grep -q 'program interpreter'; then
      echo "agent '$agent' is dynamically linked: /init must be a static executable"
      return 1
    fi
  elif [[ "$magic" != '#!'* ]]; then
    echo "agent '$agent' is neither an ELF executable nor a script"
    return 1
  fi
  return 0
}

# ---- apt metadata --------------------------------------------------------------------------------
# field_of PKG FIELD: FIELD of PKG's record in $records (output of apt-cache show --no-all-versions).
field_of() {
  awk -v p="$1" -v f="$2" 'BEGIN { RS = ""; FS = "\n" }
    { pk = ""; for (i = 1; i <= NF; i++) if (index($i, "Package: ") == 1) pk = substr($i, 10)
      if (pk == p) for (i = 1; i <= NF; i++) if (index($i, f ": ") == 1) { print substr($i, length(f) + 3); exit } }' <<<"$records"
}
apt_updated=0
apt_update() {
  [[ $apt_updated -eq 0 ]] || return 1
  apt_updated=1
  [[ $(id -u) -eq 0 ]] || die "apt has no package lists for what is needed and 'apt-get update' needs root: run 'apt-get update' as root"
  log "apt-get update (package lists missing or stale)"
  apt-get update -qq >&2 || die "'apt-get update' failed: check the network and /etc/apt/sources.list(.d)"
}
# apt's answer only changes with its lists, its configuration or what dpkg has installed: cache it
# under a key made of those files' names, sizes and mtimes (apt-cache takes ~0.6 s a call here).
apt_state_key() {
  find /var/lib/apt/lists /etc/apt /var/lib/dpkg/status ${APT_CONFIG:+"$APT_CONFIG"} -maxdepth 2 \( -type f -o -type l \) \
    -printf '%p %s %T@\n' 2>/dev/null | sort | sha256sum | cut -d' ' -f1
}
RESOLVED_VARS=(KPKG KVER_DEB KSHA KARCH BBVER BBSHA BBARCH)
# resolve_packages [CACHE_FILE]: sets the RESOLVED_VARS.
resolve_packages() {
  local cache_file=${1:-} key="" v
  if [[ -n "$cache_file" ]]; then
    key=$(apt_state_key)
    if [[ -f "$cache_file" && $(head -n1 "$cache_file") == "$key" ]]; then
      local line
      while IFS= read -r line; do
        v=${line%%=*}
        for k in "${RESOLVED_VARS[@]}"; do [[ "$v" == "$k" ]] && printf -v "$k" '%s' "${line#*=}"; done
      done < <(tail -n +2 "$cache_file")
      [[ "${KPKG:-}" =~ $KERNEL_RE && -n "${KSHA:-}" && -n "${BBSHA:-}" ]] && return 0
    fi
  fi
  records=$(apt-cache show --no-all-versions "$KERNEL_META" 2>/dev/null || true)
  if [[ -z "$(field_of "$KERNEL_META" Depends)" ]]; then
    apt_update || true
    records=$(apt-cache show --no-all-versions "$KERNEL_META" 2>/dev/null || true)
    [[ -n "$(field_of "$KERNEL_META" Depends)" ]] ||
      die "apt knows no package '$KERNEL_META': the apt sources need Debian 12 (bookworm) main"
    key=""  # lists changed
  fi
  KPKG=$(field_of "$KERNEL_META" Depends | tr ',' '\n' | awk '{print $1}' | grep -E '^linux-image-[0-9]' | head -n1 || true)
  [[ "$KPKG" =~ $KERNEL_RE ]] ||
    die "'$KERNEL_META' (candidate $(field_of "$KERNEL_META" Version)) depends on '${KPKG:-nothing}', not a linux-image-6.1.*-amd64: is a newer kernel pinned (e.g. from backports)? This image is built and measured with bookworm's 6.1 kernel"
  records=$(apt-cache show --no-all-versions "$KPKG" "$BUSYBOX_PKG" 2>/dev/null || true)
  KVER_DEB=$(field_of "$KPKG" Version)
  KSHA=$(field_of "$KPKG" SHA256)
  KARCH=$(field_of "$KPKG" Architecture)
  BBVER=$(field_of "$BUSYBOX_PKG" Version)
  BBSHA=$(field_of "$BUSYBOX_PKG" SHA256)
  BBARCH=$(field_of "$BUSYBOX_PKG" Architecture)
  [[ -n "$KVER_DEB" && -n "$KSHA" ]] || die "apt has no version of '$KPKG' to download (apt-cache show $KPKG)"
  [[ -n "$BBVER" && -n "$BBSHA" ]] ||
    die "apt has no version of '$BUSYBOX_PKG' to download (apt-cache show $BUSYBOX_PKG): the apt sources need Debian 12 (bookworm) main"
  if [[ -n "$cache_file" ]]; then
    [[ -n "$key" ]] || key=$(apt_state_key)
    { echo "$key"; for v in "${RESOLVED_VARS[@]}"; do echo "$v=${!v}"; done; } >"$cache_file.$$" &&
      mv "$cache_file.$$" "$cache_file"
  fi
}

# fetch_deb PKG VERSION ARCH SHA256: prints the path of the verified .deb in $deb_dir.
fetch_deb() {
  local pkg=$1 ver=$2 arch=$3 sha=$4
  local file="$deb_dir/${pkg}_${ver//:/%3a}_${arch}.deb"
  if [[ -f "$file" ]] && [[ $(sha256sum <"$file" | cut -d' ' -f1) == "$sha" ]]; then
    echo "$file"; return 0
  fi
  rm -f "$file"
  log "downloading $pkg=$ver"
  local out
  if ! out=$(cd "$deb_dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" 2>&1); then
    # shellcheck disable=SC2015  # die when either the update or the second download fails
    apt_update && out=$(cd "$deb_dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" 2>&1) ||
      die "could not download $pkg=$ver with 'apt-get download': $(echo "$out" | grep -E '^(E|W):' | tr '\n' ' ')"
  fi
  [[ -f "$file" ]] || die "apt-get download $pkg=$ver did not produce $file"
  if [[ $(sha256sum <"$file" | cut -d' ' -f1) != "$sha" ]]; then
    rm -f "$file"
    die "downloaded $pkg=$ver does not match apt's SHA256 $sha (removed it; run again)"
  fi
  echo "$file"
}

# ---- --check -------------------------------------------------------------------------------------
if [[ $check -eq 1 ]]; then
  ok=1
  if msg=$(missing_tools "${REQUIRED_TOOLS[@]}"); then log "tools: ok"; else log "tools: $msg"; ok=0; fi
  if [[ $(id -u) -eq 0 ]]; then log "root: ok"; else log "root: no (needed to create /dev/console in the image)"; ok=0; fi
  if [[ $ok -eq 1 ]]; then
    resolve_packages
    log "packages: $KPKG=$KVER_DEB, $BUSYBOX_PKG=$BBVER"
  fi
  if [[ -n "$agent" ]]; then
    if msg=$(check_agent); then log "agent: ok ($agent)"; else log "agent: $msg"; ok=0; fi
  fi
  [[ $ok -eq 1 ]] && { log "check: ok"; exit 0; }
  die "check failed"
fi

# ---- inputs and their hash -----------------------------------------------------------------------
msg=$(missing_tools "${REQUIRED_TOOLS[@]}") || die "$msg"
msg=$(check_agent) || die "$msg"
[[ $(id -u) -eq 0 ]] || die "must run as root (it creates the /dev/console node inside the image)"

mkdir -p "$cache_dir" "$deb_dir" || die "cannot create $cache_dir or $deb_dir"
resolve_packages "$cache_dir/.apt-resolution"
agent_sha=$(sha256sum <"$agent" | cut -d' ' -f1)
strip_version=none
command -v strip >/dev/null 2>&1 && strip_version=$(strip --version | sed -n 1p)
script_sha=$(sha256sum <"$SELF" | cut -d' ' -f1)
# Only with --rootfs-modules: without it the inputs (so the default image) are what they were.
rootfs_line="" image_name=default
if [[ $rootfs_modules -eq 1 ]]; then
  rootfs_line=$'\n'"rootfs-modules ${ROOTFS_MODULES[*]}"
  image_name=rootfs-base
fi
inputs=$(cat <<EOF
paddock-guest-image format $FORMAT_VERSION
image $image_name
script $script_sha
modules ${MODULES[*]}${rootfs_line}
deb $KPKG $KVER_DEB $KARCH $KSHA
deb $BUSYBOX_PKG $BBVER $BBARCH $BBSHA
agent $agent_sha
cpio $(cpio --version | sed -n 1p)
strip $strip_version
EOF
)
input_hash=$(printf '%s\n' "$inputs" | sha256sum | cut -d' ' -f1)
image_dir="$cache_dir/$input_hash"

exec 9>"$cache_dir/.lock"
flock 9  # one builder at a time per cache; a second one then finds the image ready
rm -rf "$cache_dir"/.build.*  # staging dirs of builders that were killed (we hold the lock)

if [[ $force -eq 0 && -f "$image_dir/manifest.json" ]]; then
  log "cached: $image_dir"
  echo "$image_dir"
  exit 0
fi

# ---- kernel and module helpers -------------------------------------------------------------------
# u_le FILE OFFSET BYTES: an unsigned little-endian integer from FILE.
u_le() { od -An -v --endian=little -tu"$3" -j "$2" -N "$3" "$1" | tr -d ' \n'; }

# extract_vmlinux BZIMAGE OUT: the ELF vmlinux inside a bzImage (x86 boot protocol: setup_sects at
# 0x1f1, "HdrS" at 0x202, payload_offset at 0x248). QEMU boots an ELF with a PVH note directly
# (no in-guest decompression: ~3 s less under TCG, see IMAGE.md).
extract_vmlinux() {
  local f=$1 out=$2 ss po start magic
  [[ $(od -An -c -j 514 -N 4 "$f" | tr -d ' ') == HdrS ]] || die "$f is not a bzImage (no HdrS header)"
  ss=$(u_le "$f" 497 1); [[ $ss -eq 0 ]] && ss=4
  po=$(u_le "$f" 584 4)
  start=$(((ss + 1) * 512 + po))
  magic=$(od -An -v -tx1 -j "$start" -N 6 "$f" | tr -d ' \n')
  [[ "$magic" == fd377a585a00 ]] || die "the kernel payload in $f is not xz (magic $magic): cannot extract vmlinux"
  tail -c +$((start + 1)) "$f" >"$out.xz"
  xz -dc --single-stream "$out.xz" >"$out" || die "cannot decompress the kernel payload of $f"
  rm -f "$out.xz"
  [[ $(od -An -c -N 4 "$out" | tr -d ' ') == '177ELF' ]] || die "the payload of $f is not an ELF vmlinux"
  has_pvh_note "$out" || die "$out has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): the kernel lacks CONFIG_PVH"
}

# has_pvh_note ELF: whether a PT_NOTE segment of the ELF64 holds a "Xen" note of type 18
# (XEN_ELFNOTE_PHYS32_ENTRY), which is what QEMU needs to boot it through PVH.
has_pvh_note() {
  local f=$1 phoff phentsize phnum i base type off size
  phoff=$(u_le "$f" 32 8); phentsize=$(u_le "$f" 54 2); phnum=$(u_le "$f" 56 2)
  for ((i = 0; i < phnum; i++)); do
    base=$((phoff + i * phentsize))
    type=$(u_le "$f" "$base" 4)
    [[ $type -eq 4 ]] || continue
    off=$(u_le "$f" $((base + 8)) 8); size=$(u_le "$f" $((base + 32)) 8)
    local -a w
    read -r -a w <<<"$(od -An -v --endian=little -tu4 -j "$off" -N "$size" "$f" | tr '\n' ' ')"
    local j=0 namesz descsz ntype
    while ((j + 3 <= ${#w[@]})); do
      namesz=${w[j]} descsz=${w[j + 1]} ntype=${w[j + 2]}
      # "Xen\0" read as a little-endian u32 is 7234904
      ((namesz == 4 && ntype == 18 && w[j + 3] == 7234904)) && return 0
      j=$((j + 3 + (namesz + 3) / 4 + (descsz + 3) / 4))
    done
  done
  return 1
}

# strip_module_signature KO: cuts the appended signature ("~Module signature appended~\n" after a
# 12-byte struct module_signature whose last field is the big-endian signature length).
strip_module_signature() {
  local f=$1 size marker siglen
  size=$(stat -c %s "$f")
  ((size > 40)) || return 0
  marker=$(tail -c 28 "$f" | od -An -c | tr -d ' \n')
  [[ "$marker" == '~Modulesignatureappended~\n' ]] || return 0
  siglen=$(od -An -v --endian=big -tu4 -j $((size - 32)) -N 4 "$f" | tr -d ' \n')
  ((siglen > 0 && siglen < size - 40)) || die "bad module signature trailer in $f"
  truncate -s $((size - 40 - siglen)) "$f"
}

# ---- build ---------------------------------------------------------------------------------------
t0=$(date +%s%N)
kdeb=$(fetch_deb "$KPKG" "$KVER_DEB" "$KARCH" "$KSHA")
bbdeb=$(fetch_deb "$BUSYBOX_PKG" "$BBVER" "$BBARCH" "$BBSHA")

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-image.XXXXXX")
stage="$cache_dir/.build.$input_hash.$$"
cleanup() { rm -rf "$work" "$stage"; }
trap cleanup EXIT

log "unpacking $(basename "$kdeb") and $(basename "$bbdeb")"
dpkg-deb -x "$kdeb" "$work/kernel" || die "dpkg-deb -x $kdeb failed"
dpkg-deb -x "$bbdeb" "$work/busybox" || die "dpkg-deb -x $bbdeb failed"

kvers=()
for d in "$work"/kernel/lib/modules/*/; do [[ -d "$d" ]] && kvers+=("$(basename "$d")"); done
[[ ${#kvers[@]} -eq 1 ]] || die "expected one kernel version in $kdeb, found: ${kvers[*]:-none}"
kver=${kvers[0]}
kmod_src="$work/kernel/lib/modules/$kver"
vmlinuz_src="$work/kernel/boot/vmlinuz-$kver"
[[ -f "$vmlinuz_src" ]] || die "$kdeb has no boot/vmlinuz-$kver"

root="$work/root"
mkdir -p "$root"/{bin,dev,etc/paddock,proc,sys,tmp,run,root,mnt,lib/modules/"$kver"}

# Modules: index every .ko[.xz|.zst|.gz] by its name (dashes read as underscores, as the kernel does).
declare -A MOD_FILE=() MOD_PATH=() MOD_DEPS=() VISITING=() VISITED=()
while IFS= read -r -d '' f; do
  rel=${f#"$kmod_src/"}
  name=${rel##*/}; name=${name%%.ko*}; name=${name//-/_}
  MOD_FILE[$name]=$rel
done < <(find "$kmod_src/kernel" -name '*.ko' -print0 -o -name '*.ko.*' -print0 | sort -z)

# stage_module NAME: copies (decompressing) one module into the image, sets MOD_PATH and MOD_DEPS.
stage_module() {
  local name=$1 rel=${MOD_FILE[$1]:-}
  [[ -n "$rel" ]] || die "kernel $kver has no module '$name' (is it built in? see /boot/config-$kver)"
  local plain=${rel%.xz}; plain=${plain%.zst}; plain=${plain%.gz}
  local dst="$root/lib/modules/$kver/$plain"
  mkdir -p "$(dirname "$dst")"
  case "$rel" in
    *.ko) cp "$kmod_src/$rel" "$dst" ;;
    *.ko.xz) command -v xz >/dev/null || die "$(missing_tools xz)"; xz -dc "$kmod_src/$rel" >"$dst" ;;
    *.ko.zst) command -v zstd >/dev/null || die "$(missing_tools zstd)"; zstd -qdc "$kmod_src/$rel" >"$dst" ;;
    *.ko.gz) command -v gzip >/dev/null || die "$(missing_tools gzip)"; gzip -dc "$kmod_src/$rel" >"$dst" ;;
    *) die "unknown module compression: $rel" ;;
  esac
  [[ $STRIP_MODULE_SIGNATURES -eq 1 ]] && strip_module_signature "$dst"
  MOD_PATH[$name]=$plain
  # modinfo's "depends=a,b" string in the .modinfo section, read without kmod.
  local deps
  deps=$(tr '\0' '\n' <"$dst" | grep -a '^depends=' || true)
  deps=${deps%%$'\n'*}; deps=${deps#depends=}
  MOD_DEPS[$name]=${deps//,/ }
}
# visit NAME: depth-first, dependencies first; LOAD_ORDER is the load order.
LOAD_ORDER=()
visit() {
  local name=$1 d
  [[ -n "${VISITED[$name]:-}" ]] && return 0
  [[ -z "${VISITING[$name]:-}" ]] || die "module dependency cycle through '$name'"
  VISITING[$name]=1
  stage_module "$name"
  for d in ${MOD_DEPS[$name]}; do visit "${d//-/_}"; done
  VISITED[$name]=1
  LOAD_ORDER+=("$name")
}
for m in "${MODULES[@]}"; do visit "$m"; done
BOOT_ORDER=("${LOAD_ORDER[@]}")
if [[ $rootfs_modules -eq 1 ]]; then
  for m in "${ROOTFS_MODULES[@]}"; do visit "$m"; done
fi
ROOTFS_ORDER=("${LOAD_ORDER[@]:${#BOOT_ORDER[@]}}")

# all_deps NAME: transitive dependencies, in modules.dep order (the last one is loaded first).
all_deps() {
  local -A seen=()
  # shellcheck disable=SC2206  # a module list: space-separated names without glob characters
  local stack=(${MOD_DEPS[$1]}) n
  while [[ ${#stack[@]} -gt 0 ]]; do
    n=${stack[0]//-/_}; stack=("${stack[@]:1}")
    [[ -n "${seen[$n]:-}" ]] && continue
    seen[$n]=1
    # shellcheck disable=SC2206  # as above
    stack+=(${MOD_DEPS[$n]})
  done
  # order as the reverse of the load order, like depmod
  local i
  for ((i = ${#LOAD_ORDER[@]} - 1; i >= 0; i--)); do
    [[ -n "${seen[${LOAD_ORDER[$i]}]:-}" ]] && echo "${LOAD_ORDER[$i]}"
  done
}
{
  for m in "${LOAD_ORDER[@]}"; do
    line="${MOD_PATH[$m]}:"
    while IFS= read -r d; do [[ -n "$d" ]] && line+=" ${MOD_PATH[$d]}"; done < <(all_deps "$m")
    echo "$line"
  done
} >"$root/lib/modules/$kver/modules.dep"
printf '%s\n' "${BOOT_ORDER[@]}" >"$root/etc/paddock/modules"
log "kernel $kver, modules (load order): ${BOOT_ORDER[*]}"
if [[ ${#ROOTFS_ORDER[@]} -gt 0 ]]; then
  printf '%s\n' "${ROOTFS_ORDER[@]}" >"$root/etc/paddock/modules.rootfs"
  log "root filesystem modules (load order, on demand): ${ROOTFS_ORDER[*]}"
fi

# Busybox and its applets (symlinks to /bin/busybox).
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
applets=$("$root/bin/busybox" --list-full) || die "cannot run busybox --list-full (not an amd64 host?)"
n_applets=0
while IFS= read -r a; do
  [[ -n "$a" ]] || continue
  skip=0; for s in "${SKIP_APPLETS[@]}"; do [[ "$a" == "$s" ]] && skip=1; done
  [[ $skip -eq 0 && ! -e "$root/$a" && ! -L "$root/$a" ]] || continue
  [[ -d "$root/${a%/*}" ]] || mkdir -p "$root/${a%/*}"
  ln -s /bin/busybox "$root/$a"
  n_applets=$((n_applets + 1))
done <<<"$applets"
[[ -L "$root/bin/sh" ]] || die "busybox gave no bin/sh applet"

# The agent without its symbols and debug info (a Debug build is 4.8 MB, stripped 2.1 MB): every
# MB of initramfs costs ~50 ms of boot under TCG. strip (binutils) is optional; its version is an input.
if [[ "$strip_version" != none ]] && [[ "$(head -c 4 "$agent" | od -An -c | tr -d ' \n')" == '177ELF' ]]; then
  strip --strip-all -o "$root/init" "$agent" || die "strip --strip-all $agent failed"
  agent_stripped=true
else
  cp "$agent" "$root/init"
  agent_stripped=false
fi
mknod -m 0600 "$root/dev/console" c 5 1 || die "mknod /dev/console failed (run as root)"

# Normalize modes and times, then pack in sorted order with fixed owners: same inputs, same bytes.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$root/init" "$root/bin/busybox"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
find "$root" -exec touch -h -d "$FIXED_MTIME" {} +

mkdir -p "$stage"
(cd "$root" && find . -mindepth 1 -print0 | sort -z |
  cpio --null --create --format=newc --reproducible --owner=0:0 --quiet) >"$stage/$INITRAMFS_NAME" ||
  die "cpio failed"
# Pad to a whole number of 4 KiB pages (the kernel skips zeros after an archive). QEMU's -M microvm
# puts the initrd's end right below the top of RAM, in the page where its ACPI tables live: an
# initrd whose size is not page-aligned can overwrite them, and the guest then hangs in ACPI set-up
# (measured: every size tried that ended past the tables' start, 3264 bytes into that page, hung;
# those ending before it booted; see agent/guest/IMAGE.md). Page-aligned, it ends below the page.
cpio_size=$(stat -c %s "$stage/$INITRAMFS_NAME")
head -c $(((4096 - cpio_size % 4096) % 4096)) /dev/zero >>"$stage/$INITRAMFS_NAME"
cp "$vmlinuz_src" "$stage/vmlinuz"
extract_vmlinux "$stage/vmlinuz" "$stage/vmlinux"
printf '%s\n' "$inputs" >"$stage/inputs.txt"

sha() { sha256sum <"$1" | cut -d' ' -f1; }
json_list() { local s="" x; for x in "$@"; do s+="${s:+, }\"$x\""; done; echo "[$s]"; }
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat >"$stage/manifest.json" <<EOF
{
  "format": $FORMAT_VERSION,
  "name": "$image_name",
  "input_hash": "$input_hash",
  "kernel_version": "$kver",
  "kernel": "vmlinux",
  "kernel_bzimage": "vmlinuz",
  "initramfs": "$INITRAMFS_NAME",
  "boot": {
    "protocol": "pvh",
    "machine": "$BOOT_MACHINE",
    "cmdline": "$BOOT_CMDLINE",
    "cmdline_host": "tsc_early_khz=<host TSC kHz>"
  },
  "packages": [
    {"name": "$KPKG", "version": "$KVER_DEB", "architecture": "$KARCH", "sha256": "$KSHA"},
    {"name": "$BUSYBOX_PKG", "version": "$BBVER", "architecture": "$BBARCH", "sha256": "$BBSHA"}
  ],
  "agent_sha256": "$agent_sha",
  "agent_stripped": $agent_stripped,
  "script_sha256": "$script_sha",
  "modules": $(json_list "${BOOT_ORDER[@]}"),
  "rootfs_modules": $(json_list "${ROOTFS_ORDER[@]}"),
  "module_signatures_stripped": $([[ $STRIP_MODULE_SIGNATURES -eq 1 ]] && echo true || echo false),
  "busybox_applets": $n_applets,
  "files": {
    "vmlinuz": "$(sha "$stage/vmlinuz")",
    "vmlinux": "$(sha "$stage/vmlinux")",
    "$INITRAMFS_NAME": "$(sha "$stage/$INITRAMFS_NAME")",
    "inputs.txt": "$(sha "$stage/inputs.txt")"
  },
  "built_at": "$built_at"
}
EOF
chmod 0644 "$stage"/*
chmod 0755 "$stage"
# Publish atomically: the manifest marks a complete image.
rm -rf "$image_dir"
mv "$stage" "$image_dir"
t1=$(date +%s%N)
log "built $image_dir in $(( (t1 - t0) / 1000000 )) ms ($(du -k "$image_dir/$INITRAMFS_NAME" | cut -f1) KiB initramfs)"
echo "$image_dir"
