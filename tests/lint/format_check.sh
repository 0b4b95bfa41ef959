#!/usr/bin/env bash
# Every C++ file of the repository is formatted as .clang-format says (Debian 12's clang-format,
# 14). To fix: clang-format -i $(git ls-files '*.cc' '*.h').
set -euo pipefail
cd "${1:?usage: format_check.sh REPO}"
command -v clang-format >/dev/null || { echo "FAIL: clang-format is not installed (tools/install-deps.sh installs it)"; exit 1; }
mapfile -t files < <(git ls-files '*.cc' '*.h' | grep -v '/node_modules/')
[[ ${#files[@]} -gt 0 ]] || { echo "FAIL: no C++ files found (not a git checkout?)"; exit 1; }
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [[ ${#bad[@]} -gt 0 ]]; then
  printf 'not formatted: %s\n' "${bad[@]}"
  echo "FAIL: ${#bad[@]} of ${#files[@]} C++ files differ from .clang-format (clang-format -i FILE)"
  exit 1
fi
echo "ok: ${#files[@]} C++ files formatted"
