#!/usr/bin/env bash
# The one Firecracker test that needs a real Firecracker and KVM. Without PADDOCK_FIRECRACKER_BIN
# it exits 77, which ctest reports as SKIPPED (never as passed), and says what is missing. With it,
# a broken Firecracker, image or KVM fails the test.
# usage: real_firecracker.sh <paddock_firecracker_tests binary>
if [[ -z "${PADDOCK_FIRECRACKER_BIN:-}" ]]; then
  echo "SKIPPED: no real Firecracker here: set PADDOCK_FIRECRACKER_BIN (the firecracker binary)" \
       "and PADDOCK_FIRECRACKER_IMAGE (vmlinux + initramfs) on a KVM host to run it" >&2
  exit 77
fi
exec "$1" --no-skip --test-case="firecracker real: *"
