#!/usr/bin/env bash
# ctest fixture: builds (or finds in the cache) the small root filesystem image of
# tests/vm/test-minimal.image and writes its directory to a file the rootfs VM tests read. Also
# writes where the python image is, if its root filesystem is already built in the machine's image
# cache (it is assembled with this build's agent; never debootstrapped here: that takes minutes),
# or "none: why".
set -euo pipefail
agent=$1 cache=$2 out=$3 python_out=$4
here=$(dirname "$0")
tools="$here/../../tools"
dir=$("$tools/build-image.sh" --agent "$agent" --cache-dir "$cache" "$here/test-minimal.image" | tail -n 1)
[ -f "$dir/rootfs.ext4" ] || { echo "image build gave no rootfs.ext4 in '$dir'" >&2; exit 1; }
echo "$dir" > "$out"
echo "rootfs test image: $dir"
machine_cache=${PADDOCK_IMAGE_CACHE:-/var/cache/paddock/images}
if key=$("$tools/build-image.sh" --print-key --cache-dir "$machine_cache" python 2>/dev/null) &&
   [ -f "$machine_cache/rootfs/$key/rootfs.json" ]; then
  pdir=$("$tools/build-image.sh" --agent "$agent" --cache-dir "$machine_cache" python | tail -n 1)
  echo "$pdir" > "$python_out"
  echo "python image: $pdir"
else
  echo "none: no python root filesystem for the current definition in $machine_cache" > "$python_out"
  echo "python image: not built (tools/build-image.sh python); its test will say it skipped"
fi
