#!/usr/bin/env bash
# ctest fixture: builds (or finds in the cache) the default guest image and writes its directory
# to a file the VM tests read.
set -euo pipefail
agent=$1 cache=$2 out=$3
dir=$("$(dirname "$0")/../../tools/build-guest-image.sh" --agent "$agent" --cache-dir "$cache" | tail -n 1)
[ -f "$dir/vmlinuz" ] || { echo "image build gave no vmlinuz in '$dir'" >&2; exit 1; }
echo "$dir" > "$out"
echo "guest image: $dir"
