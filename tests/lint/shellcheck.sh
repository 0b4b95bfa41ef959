#!/usr/bin/env bash
# Runs shellcheck on every shell script of the repository: the tracked *.sh files and .ci/run.
# A finding fails the test; a check that is wrong for one line is disabled on that line with a
# `# shellcheck disable=SCnnnn  # reason` comment, never for a whole file or globally.
#   tests/lint/shellcheck.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: shellcheck.sh SOURCE_DIR}
command -v shellcheck >/dev/null || { echo "FAIL: shellcheck not installed (tools/install-deps.sh)" >&2; exit 1; }
cd "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t scripts < <(git ls-files '*.sh')
else  # an exported tree: the same files, found
  mapfile -t scripts < <(find . -name '*.sh' -not -path './build*' -not -path './.git/*' | sort)
fi
scripts+=(.ci/run)
echo "shellcheck $(shellcheck --version | sed -n 's/^version: //p') on ${#scripts[@]} scripts"
shellcheck "${scripts[@]}"
echo "ok: no findings"
