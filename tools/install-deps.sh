#!/usr/bin/env bash
# Installs the Debian packages Paddock needs to build and test. Idempotent: when everything is
# present it prints nothing and exits 0. Must run as root (or with sudo available) on Debian 12.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ninja-build ccache
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libspdlog-dev libfmt-dev
  libboost-dev libboost-filesystem-dev libxxhash-dev libsqlite3-dev libpq-dev postgresql
  doctest-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libcurl4-openssl-dev
  clang-14 libclang-rt-14-dev clang-format
  python3 python3-zmq python3-msgpack python3-yaml
  procps iproute2 iptables libnl-3-dev libnl-route-3-dev libtomlplusplus-dev
  shellcheck
  cpio gzip xz-utils zstd
  debootstrap e2fsprogs
  chromium fonts-dejavu-core
)
# QEMU >= 8.2 comes from bookworm-backports (7.2, bookworm's own, cannot give a jailed
# QEMU a read-only template).
BACKPORTS_PACKAGES=(qemu-system-x86)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
qemu_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || return 1
  dpkg --compare-versions "$v" ge 1:8.2
}
need_backports=0
qemu_ok || need_backports=1
# The dashboard's browser test drives Debian's chromium with playwright-core (tests/dashboard/,
# pinned in its package-lock.json), installed with the machine's Node.js and npm.
dashboard_tests="$(cd "$(dirname "$0")/.." && pwd)/tests/dashboard"
install_dashboard_test_modules() {
  [[ -d "$dashboard_tests/node_modules/playwright-core" ]] && return 0
  if ! command -v npm >/dev/null; then
    # This kind of machine's apt has Node.js 20 with npm (playwright-core needs >= 20).
    echo "install-deps: npm is missing; installing nodejs with apt"
    ${SUDO:-$( [[ $(id -u) -ne 0 ]] && echo sudo)} apt-get install -y -qq nodejs >/dev/null ||
      { echo "install-deps: npm is missing (Node.js >= 20 with npm is needed for tests/dashboard)" >&2; exit 1; }
    command -v npm >/dev/null || { echo "install-deps: nodejs from apt brought no npm" >&2; exit 1; }
  fi
  echo "install-deps: npm ci in tests/dashboard"
  (cd "$dashboard_tests" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}
if [[ ${#missing[@]} -eq 0 && $need_backports -eq 0 ]]; then
  install_dashboard_test_modules
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive

# A bookworm-backports entry that reuses the mirror this machine's apt sources already use.
add_backports_source() {
  local list=/etc/apt/sources.list.d/paddock-backports.sources uri
  grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
  uri=$(grep -hs "^URIs:" /etc/apt/sources.list.d/*.sources | grep -v security | head -n 1 | awk '{print $2}')
  [[ -n "$uri" ]] || uri=$(grep -hs "^deb .* bookworm " /etc/apt/sources.list | head -n 1 | awk '{print $2}')
  [[ -n "$uri" ]] || { echo "install-deps: no Debian mirror found in the apt sources" >&2; exit 1; }
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" | $SUDO tee "$list" >/dev/null
  $SUDO apt-get update -qq
}

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  # The apt lists may be missing or stale on a fresh machine: on failure, refresh and retry once.
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [[ $need_backports -eq 1 ]]; then
  echo "install-deps: installing ${BACKPORTS_PACKAGES[*]} from bookworm-backports"
  add_backports_source
  if ! $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports \
      "${BACKPORTS_PACKAGES[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports \
      "${BACKPORTS_PACKAGES[@]}" >/dev/null
  fi
  qemu_ok || { echo "install-deps: qemu-system-x86 >= 8.2 could not be installed" >&2; exit 1; }
fi

install_dashboard_test_modules
