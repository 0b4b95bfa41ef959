#!/usr/bin/env bash
# Image definitions and the root filesystem cache key (tools/images/image_def.py,
# tools/build-image.sh), without building anything: the shipped definitions parse; bad ones are
# refused naming what is wrong; the key changes with a package, with the file's text and with the
# package index, and not otherwise; a root filesystem already in the cache is found, not rebuilt.
# The cache part needs root (the builder does); it is skipped (77) as another user.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
helper="$repo/tools/images/image_def.py"
builder="$repo/tools/build-image.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-imagedef-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

for def in "$repo"/tools/images/*.image "$repo"/tests/vm/test-minimal.image; do
  python3 "$helper" check "$def" >/dev/null || fail "shipped definition $def does not parse"
done
ok "shipped definitions parse"
python3 "$helper" check "$repo/tools/images/python.image" | grep -q '"python3"' || fail "python image lists no python3"

minimal() {  # a valid rootfs definition, with $1 added at the top level
  printf 'format = 1\nname = "t"\nkind = "rootfs"\n%s\n' "$1"
  printf '[debian]\nsuite = "bookworm"\nvariant = "minbase"\npackages = ["python3"]\n'
  printf '[env]\nPATH = "/usr/bin:/bin"\n'
}
refused() {  # refused WHAT TEXT EXPECTED-IN-MESSAGE
  printf '%s\n' "$2" >"$tmp/bad.image"
  local msg
  if msg=$(python3 "$helper" check "$tmp/bad.image" 2>&1); then fail "$1 was accepted"; fi
  [[ "$msg" == *"$3"* ]] || fail "$1: message '$msg' does not say '$3'"
  ok "refused: $1"
}
minimal "" >"$tmp/good.image"
python3 "$helper" check "$tmp/good.image" >/dev/null || fail "the minimal definition is refused"
refused "an unknown key" "$(minimal 'colour = "red"')" "unknown key(s) colour"
refused "a bad name" "$(minimal "" | sed 's/name = "t"/name = "Bad Name"/')" "name: 'Bad Name'"
refused "a bad package" "$(minimal "" | sed 's/"python3"/"python3 rm"/')" "is not a Debian package name"
refused "another suite" "$(minimal "" | sed 's/bookworm/trixie/')" "debian.suite: 'trixie'"
refused "format 2" "$(minimal "" | sed 's/format = 1/format = 2/')" "format: must be 1"
refused "a file under /proc" "$(minimal ""; printf '[[files]]\npath = "/proc/x"\ncontent = "x"\n')" "mounted over or written by Paddock"
refused "a file path with .." "$(minimal ""; printf '[[files]]\npath = "/etc/../x"\ncontent = "x"\n')" "is not absolute and normal"
refused "packages in an initramfs image" "$(printf 'format = 1\nname = "d"\nkind = "initramfs"\n[debian]\nsuite = "bookworm"\n')" "an initramfs image takes none"
refused "a bad env name" "$(minimal ""; printf '"BAD-NAME" = "x"\n')" "is not a variable name"
refused "not TOML" "name = " "not TOML"
refused "a warm-up that is not a list" "$(minimal 'warmup = "python3 -c pass"')" "warmup: must be a list"
refused "a warm-up without a program" "$(minimal 'warmup = ["", "x"]')" "warmup[0]: names no program"
refused "a warm-up in an initramfs image" "$(printf 'format = 1\nname = "d"\nkind = "initramfs"\nwarmup = ["true"]\n')" "an initramfs image takes none"
python3 "$helper" check "$repo/tools/images/python.image" | grep -q '"warmup": \["python3", "-c"' ||
  fail "the python image's warm-up is not in its canonical form"
ok "the warm-up: a list of strings, rootfs images only, kept in the canonical form"

# stage: the files and the environment file land in the tree, with their modes.
printf '[[files]]\npath = "/etc/x/y"\nmode = "0600"\ncontent = "hello"\n' >>"$tmp/good.image"
mkdir "$tmp/tree"
python3 "$helper" stage "$tmp/good.image" "$tmp/tree"
[[ $(cat "$tmp/tree/etc/x/y") == hello && $(stat -c %a "$tmp/tree/etc/x/y") == 600 ]] || fail "stage: /etc/x/y"
grep -qx 'PATH=/usr/bin:/bin' "$tmp/tree/etc/paddock/image.env" || fail "stage: image.env"
ok "stage writes the files and image.env"

# The key, offline (--index-sha256): nothing is fetched.
idx1=$(printf '1%.0s' {1..64}) idx2=$(printf '2%.0s' {1..64})
key() { "$builder" --print-key --index-sha256 "$1" "$2"; }
k1=$(key "$idx1" "$tmp/good.image")
[[ "$k1" =~ ^[0-9a-f]{64}$ ]] || fail "key '$k1' is not a sha256"
[[ $(key "$idx1" "$tmp/good.image") == "$k1" ]] || fail "the same inputs gave another key"
[[ $(key "$idx2" "$tmp/good.image") != "$k1" ]] || fail "another package index gave the same key"
sed 's/"python3"/"python3", "python3-yaml"/' "$tmp/good.image" >"$tmp/more.image"
[[ $(key "$idx1" "$tmp/more.image") != "$k1" ]] || fail "another package list gave the same key"
{ cat "$tmp/good.image"; echo "# a comment"; } >"$tmp/comment.image"
[[ $(key "$idx1" "$tmp/comment.image") != "$k1" ]] || fail "another file text gave the same key"
ok "the key follows the definition file, its packages and the package index"

if [[ $(id -u) -ne 0 ]]; then echo "skipped: the cache check needs root (the builder does)"; exit 77; fi
# A root filesystem in the cache under its key is found, not rebuilt.
cache="$tmp/cache"
mkdir -p "$cache/rootfs/$k1"
echo '{}' >"$cache/rootfs/$k1/rootfs.json"
: >"$cache/rootfs/$k1/rootfs.ext4"
out=$("$builder" --rootfs-only --index-sha256 "$idx1" --cache-dir "$cache" "$tmp/good.image" 2>"$tmp/log") ||
  { cat "$tmp/log" >&2; fail "the builder failed on a cached root filesystem (exit $?)"; }
[[ "$out" == "$cache/rootfs/$k1" ]] || { cat "$tmp/log" >&2; fail "a cached root filesystem was not found: '$out'"; }
grep -q "cached root filesystem" "$tmp/log" || fail "the builder did not say it used the cache"
ok "a cached root filesystem is found by its key"
