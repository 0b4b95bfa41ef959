#!/usr/bin/env bash
# Tests tools/build-guest-image.sh end to end: a bogus --agent is refused clearly; an image is built
# into a temp cache; a second run finds it without rebuilding; a forced rebuild in another cache
# gives the same hash directory and a byte-identical initramfs; the manifest, the files and the
# initramfs' contents are what the agent and the QEMU backend rely on.
#
# usage: test_build_guest_image.sh BUILDER DEB_DIR [AGENT]
#   BUILDER  tools/build-guest-image.sh
#   DEB_DIR  where the .deb files are kept between runs (saves a 70 MB download per run)
#   AGENT    the paddock-agent binary; without it a stub /init script is used
# Needs root (the builder creates /dev/console in the image) and Debian's apt mirror.
# Exit 77 (skipped) when not root.
set -uo pipefail
export LC_ALL=C

builder=${1:?usage: $0 BUILDER DEB_DIR [AGENT]}
deb_dir=${2:?usage: $0 BUILDER DEB_DIR [AGENT]}
agent=${3:-}

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (the image builder creates a device node)"
  exit 77
fi

passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
bad() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit $?
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-image-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$deb_dir" "$tmp/tmpdir"
export TMPDIR="$tmp/tmpdir"  # the builder's scratch space: must be empty after every run

if [[ -z "$agent" ]]; then
  agent="$tmp/stub-agent"
  printf '#!/bin/sh\necho stub agent\nexec /bin/sh\n' >"$agent"
  chmod 0755 "$agent"
  echo "# no agent given: using a stub /init script"
fi
[[ -f "$agent" ]] || { bad "agent '$agent' exists (build paddock-agent first)"; finish; }

if ! "$builder" --check --agent "$agent" --cache-dir "$tmp/cache-check" 2>"$tmp/check.err"; then
  bad "builder --check passes: $(cat "$tmp/check.err")"
  finish
fi
ok "builder --check passes"

# ---- a bogus --agent gives a clear error, nothing on stdout, and builds nothing -------------------
out=$("$builder" --agent "$tmp/no-such-agent" --cache-dir "$tmp/cache-bogus" --deb-dir "$deb_dir" 2>"$tmp/bogus.err")
rc=$?
check "bogus --agent: non-zero exit" test $rc -ne 0
check "bogus --agent: nothing on stdout" test -z "$out"
check "bogus --agent: error names the path and says it does not exist" \
  grep -q "agent '$tmp/no-such-agent' does not exist" "$tmp/bogus.err"
check "bogus --agent: no image built" test ! -e "$tmp/cache-bogus"
check "bogus --agent: no temp dir left behind" test -z "$(ls -A "$TMPDIR")"

out=$("$builder" --cache-dir "$tmp/cache-bogus" --deb-dir "$deb_dir" 2>"$tmp/noagent.err")
check "no --agent: refused with a message" grep -q 'no --agent given' "$tmp/noagent.err"

if command -v readelf >/dev/null && readelf -lW /bin/true 2>/dev/null | grep -q 'program interpreter'; then
  "$builder" --agent /bin/true --cache-dir "$tmp/cache-bogus" --deb-dir "$deb_dir" >/dev/null 2>"$tmp/dyn.err"
  check "dynamically linked --agent: refused" grep -q 'dynamically linked' "$tmp/dyn.err"
fi

# ---- first build --------------------------------------------------------------------------------
t0=$(date +%s%N)
"$builder" --agent "$agent" --cache-dir "$tmp/cache" --deb-dir "$deb_dir" >"$tmp/out1" 2>"$tmp/err1"
rc=$?
t1=$(date +%s%N)
echo "# first build: $(((t1 - t0) / 1000000)) ms"
if [[ $rc -ne 0 ]]; then
  bad "first build exits 0: $(tail -n 5 "$tmp/err1")"
  finish
fi
ok "first build exits 0"
check "first build: exactly one line on stdout" test "$(wc -l <"$tmp/out1")" -eq 1
dir=$(tail -n 1 "$tmp/out1")
hash=${dir##*/}
check "image dir is <cache>/<sha256>" test "$dir" = "$tmp/cache/$hash"
check "image dir name is a sha256" grep -qE '^[0-9a-f]{64}$' <<<"$hash"
for f in vmlinuz vmlinux initramfs.cpio manifest.json inputs.txt; do
  check "image has $f" test -s "$dir/$f"
done
check "no staging dir left in the cache" test -z "$(find "$tmp/cache" -maxdepth 1 -name '.build.*')"
check "no temp dir left behind" test -z "$(ls -A "$TMPDIR")"

# ---- second run: cached, fast, same bytes -------------------------------------------------------
stat_before=$(stat -c '%i %Y %s' "$dir/initramfs.cpio" "$dir/manifest.json")
sha_before=$(sha256sum <"$dir/initramfs.cpio")
t0=$(date +%s%N)
"$builder" --agent "$agent" --cache-dir "$tmp/cache" --deb-dir "$deb_dir" >"$tmp/out2" 2>"$tmp/err2"
rc=$?
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
echo "# second run: $ms ms"
check "second run exits 0" test $rc -eq 0
check "second run: same image dir" test "$(cat "$tmp/out2")" = "$dir"
check "second run: says it is cached" grep -q "cached: $dir" "$tmp/err2"
check "second run: files untouched (no rebuild)" \
  test "$(stat -c '%i %Y %s' "$dir/initramfs.cpio" "$dir/manifest.json")" = "$stat_before"
check "second run: initramfs byte-identical" test "$(sha256sum <"$dir/initramfs.cpio")" = "$sha_before"
check "second run: under 5 s ($ms ms)" test $ms -lt 5000

# ---- forced rebuild elsewhere: reproducible -----------------------------------------------------
"$builder" --agent "$agent" --cache-dir "$tmp/cache2" --deb-dir "$deb_dir" --force >"$tmp/out3" 2>"$tmp/err3"
check "rebuild in another cache exits 0" test $? -eq 0
dir2=$(tail -n 1 "$tmp/out3")
check "rebuild: same input hash" test "${dir2##*/}" = "$hash"
check "rebuild: initramfs byte-identical" cmp -s "$dir/initramfs.cpio" "$dir2/initramfs.cpio"
check "rebuild: vmlinux byte-identical" cmp -s "$dir/vmlinux" "$dir2/vmlinux"
check "rebuild: vmlinuz byte-identical" cmp -s "$dir/vmlinuz" "$dir2/vmlinuz"
rm -rf "$tmp/cache2"

# ---- a changed agent is a new image -------------------------------------------------------------
cp "$agent" "$tmp/agent-changed"
printf '\n# changed\n' >>"$tmp/agent-changed"  # appended bytes: still a valid script or ELF
"$builder" --agent "$tmp/agent-changed" --cache-dir "$tmp/cache" --deb-dir "$deb_dir" >"$tmp/out4" 2>"$tmp/err4"
dir4=$(tail -n 1 "$tmp/out4")
check "changed agent: new image dir" test -n "$dir4" -a "$dir4" != "$dir" -a -f "$dir4/manifest.json"
rm -rf "$dir4"

# ---- manifest -----------------------------------------------------------------------------------
agent_sha=$(sha256sum <"$agent" | cut -d' ' -f1)
if python3 - "$dir" "$hash" "$agent_sha" >"$tmp/manifest.check" 2>&1 <<'EOF'
import hashlib, json, os, re, sys
d, want_hash, agent_sha = sys.argv[1:4]
m = json.load(open(os.path.join(d, "manifest.json")))
errors = []
def need(cond, what):
    if not cond: errors.append(what)
need(m.get("name") == "default", "name is 'default'")
need(m.get("input_hash") == want_hash, "input_hash is the directory name")
need(re.fullmatch(r"6\.1\.\d+-\d+-amd64", m.get("kernel_version", "")), "kernel_version is 6.1.*-amd64")
need(m.get("agent_sha256") == agent_sha, "agent_sha256 is the agent's sha256")
need(re.fullmatch(r"[0-9a-f]{64}", m.get("script_sha256", "")), "script_sha256 is a sha256")
need(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m.get("built_at", "")), "built_at is an ISO UTC time")
pk = {p["name"]: p for p in m.get("packages", [])}
kp = [n for n in pk if re.fullmatch(r"linux-image-6\.1\.\d+-\d+-amd64", n)]
need(len(kp) == 1, "packages has one linux-image-6.1.*-amd64")
need("busybox-static" in pk, "packages has busybox-static")
for p in pk.values():
    need(p.get("version") and re.fullmatch(r"[0-9a-f]{64}", p.get("sha256", "")), f"package {p['name']} has version and sha256")
mods = m.get("modules", [])
for want in ["virtio_ring", "virtio", "virtio_mmio", "virtio_console", "virtio_blk", "virtio_net"]:
    need(want in mods, f"modules has {want}")
if all(x in mods for x in ["virtio_ring", "virtio", "virtio_console"]):
    need(mods.index("virtio_ring") < mods.index("virtio") < mods.index("virtio_console"), "modules in dependency order")
need(m.get("kernel") == "vmlinux" and m.get("initramfs") == "initramfs.cpio", "kernel and initramfs names")
b = m.get("boot", {})
need(b.get("protocol") == "pvh" and "microvm" in b.get("machine", "") and "console=ttyS0" in b.get("cmdline", ""), "boot section")
files = m.get("files", {})
for name in ["vmlinuz", "vmlinux", "initramfs.cpio"]:
    p = os.path.join(d, name)
    need(name in files and os.path.exists(p) and hashlib.sha256(open(p, "rb").read()).hexdigest() == files[name], f"files.{name} is the file's sha256")
inputs = open(os.path.join(d, "inputs.txt"), "rb").read()
need(hashlib.sha256(inputs).hexdigest() == want_hash, "input hash is the sha256 of inputs.txt")
for line in [f"agent {agent_sha}", f"script {m.get('script_sha256')}"]:
    need(line.encode() in inputs, f"inputs.txt has '{line}'")
need(all(f"{p['sha256']}".encode() in inputs for p in pk.values()), "inputs.txt has the .deb sha256s")
print("\n".join(errors))
sys.exit(1 if errors else 0)
EOF
then ok "manifest fields"; else bad "manifest fields: $(tr '\n' ';' <"$tmp/manifest.check")"; fi

# ---- files --------------------------------------------------------------------------------------
check "vmlinuz is a bzImage" test "$(od -An -c -j 514 -N 4 "$dir/vmlinuz" | tr -d ' ')" = HdrS
check "vmlinux is an ELF" test "$(od -An -c -N 4 "$dir/vmlinux" | tr -d ' ')" = '177ELF'
if command -v readelf >/dev/null; then
  check "vmlinux has the PVH entry note" bash -c "readelf -n '$dir/vmlinux' | grep -q 'Unknown note type: (0x00000012)\|PHYS32_ENTRY'"
fi
check "initramfs size is a multiple of 4096" test $(($(stat -c %s "$dir/initramfs.cpio") % 4096)) -eq 0
check "initramfs is a newc cpio" test "$(head -c 6 "$dir/initramfs.cpio")" = 070701

# ---- initramfs contents -------------------------------------------------------------------------
kver=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kernel_version"])' "$dir/manifest.json")
cpio -it --quiet <"$dir/initramfs.cpio" >"$tmp/list" 2>/dev/null
# shellcheck disable=SC2317  # called through check, which shellcheck does not follow
has() { grep -qxF "$1" "$tmp/list" || grep -qxF "./$1" "$tmp/list"; }
for f in init bin/busybox bin/sh dev/console etc/paddock/modules "lib/modules/$kver/modules.dep" proc sys tmp; do
  check "initramfs has /$f" has "$f"
done
mkdir "$tmp/root"
(cd "$tmp/root" && cpio -idm --quiet --no-absolute-filenames <"$dir/initramfs.cpio") 2>/dev/null
stripped=$(python3 -c 'import json,sys; print(str(json.load(open(sys.argv[1]))["agent_stripped"]).lower())' "$dir/manifest.json")
if [[ "$stripped" == true ]]; then
  strip --strip-all -o "$tmp/agent-stripped" "$agent"
  check "/init is the stripped agent, executable" bash -c "cmp -s '$tmp/agent-stripped' '$tmp/root/init' && test -x '$tmp/root/init'"
else
  check "/init is the agent, executable" bash -c "cmp -s '$agent' '$tmp/root/init' && test -x '$tmp/root/init'"
fi
check "/bin/sh is a link to busybox" test "$(readlink "$tmp/root/bin/sh")" = /bin/busybox
check "/dev/console is a character device" test -c "$tmp/root/dev/console"
check "/bin/busybox runs" bash -c "'$tmp/root/bin/busybox' true"
listed=$(grep -v '^#' "$tmp/root/etc/paddock/modules" | tr '\n' ' ')
check "/etc/paddock/modules lists virtio_console" grep -qw virtio_console <<<"$listed"
moddir="$tmp/root/lib/modules/$kver"
all_present=1 all_plain=1 all_unsigned=1 n=0
while IFS= read -r line; do
  for p in ${line/:/ }; do
    n=$((n + 1))
    [[ -f "$moddir/$p" ]] || { all_present=0; echo "# missing $p"; }
    [[ "$p" == *.ko ]] || all_plain=0
    [[ -f "$moddir/$p" ]] && tail -c 28 "$moddir/$p" | grep -aq 'Module signature appended' && all_unsigned=0
  done
done <"$moddir/modules.dep"
check "the $n module paths in modules.dep are all in the image" test $all_present -eq 1 -a $n -gt 0
check "modules are plain .ko (not compressed)" test $all_plain -eq 1
check "module signatures are stripped" test $all_unsigned -eq 1
for m in $listed; do
  check "module $m is in modules.dep" grep -qE "(^|/)${m}\.ko:" "$moddir/modules.dep"
done
check "virtio_console's modules.dep entry lists virtio and virtio_ring" \
  grep -qE '/virtio_console\.ko: .*/virtio\.ko.*/virtio_ring\.ko' "$moddir/modules.dep"
check "modules are ELF" bash -c "for f in \$(find '$moddir' -name '*.ko'); do [ \"\$(od -An -c -N 4 \$f | tr -d ' ')\" = '177ELF' ] || exit 1; done"
check "all entries owned by root" bash -c "! cpio -itv --quiet <'$dir/initramfs.cpio' 2>/dev/null | awk '{print \$3, \$4}' | grep -qv '^root root\$'"

finish
