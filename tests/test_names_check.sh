#!/usr/bin/env bash
# ctest runs each doctest case by name, and a ';' in a name splits it into several ctest entries
# that match no case and "pass" without running anything. Refuse such names.
status=0
for bin in "$@"; do
  if bad=$("$bin" --list-test-cases --no-version 2>/dev/null | grep ';'); then
    echo "test names with ';' in $(basename "$bin") (ctest would split them into tests that run nothing):"
    echo "$bad"
    status=1
  fi
done
[ $status -eq 0 ] && echo "every doctest case name is safe for ctest"
exit $status
