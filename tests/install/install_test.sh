#!/usr/bin/env bash
# `cmake --install` lays out what packaging/README.md says: installs BUILD_DIR into a temporary
# prefix, checks every expected file, that the units name the prefix's binaries, and that the
# installed worker and broker run (--help). Removes the prefix.
#   tests/install/install_test.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: install_test.sh BUILD_DIR}
prefix=$(mktemp -d /tmp/paddock-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$prefix.log" 2>&1 || { cat "$prefix.log" >&2; rm -f "$prefix.log"; fail "cmake --install failed"; }
rm -f "$prefix.log"
for f in bin/paddock-broker bin/paddock-worker bin/paddock-jailer bin/paddock bin/paddock-load \
         libexec/paddock/paddock-agent share/paddock/tools/build-guest-image.sh \
         share/paddock/tools/build-image.sh share/paddock/tools/images/default.image; do
  [[ -x "$prefix/$f" || ( -f "$prefix/$f" && $f == *.image ) ]] || fail "$f missing (or not executable)"
done
for f in lib/systemd/system/paddock-broker.service lib/systemd/system/paddock-worker.service \
         lib/sysusers.d/paddock.conf etc/default/paddock-broker etc/default/paddock-worker \
         share/doc/paddock/README.md share/doc/paddock/PROTOCOL.md \
         share/doc/paddock/broker/README.md share/doc/paddock/worker/README.md \
         share/doc/paddock/packaging/README.md; do
  [[ -f "$prefix/$f" ]] || fail "$f missing"
done
for unit in broker worker; do
  file="$prefix/lib/systemd/system/paddock-$unit.service"
  grep -qx "ExecStart=$prefix/bin/paddock-$unit \$PADDOCK_${unit^^}_ARGS" "$file" ||
    fail "paddock-$unit.service does not start $prefix/bin/paddock-$unit: $(grep ExecStart "$file")"
  grep -qx "EnvironmentFile=-/etc/default/paddock-$unit" "$file" || fail "paddock-$unit.service: no EnvironmentFile"
  ! grep -qE '@[A-Z_]+@' "$file" || fail "paddock-$unit.service has an unreplaced @VARIABLE@"
done
grep -qx 'User=root' "$prefix/lib/systemd/system/paddock-worker.service" || fail "the worker unit is not root"
grep -qx 'User=paddock' "$prefix/lib/systemd/system/paddock-broker.service" || fail "the broker unit is not paddock"
help=$("$prefix/bin/paddock-worker" --help) || fail "the installed worker's --help exits $?"
grep -q -- '--backend' <<<"$help" || fail "the installed worker's --help lists no --backend"
help=$("$prefix/bin/paddock-broker" --help) || fail "the installed broker's --help exits $?"
grep -q -- '--state-dir' <<<"$help" || fail "the installed broker's --help lists no --state-dir"
echo "ok: installed layout under a temporary prefix"
