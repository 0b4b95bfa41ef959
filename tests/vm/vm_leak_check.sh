#!/usr/bin/env bash
# Runs after the VM tests (the leak census): no QEMU, jailer, worker or recorder started by a test
# may be running, and no test run directory, network namespace, host link, iptables rule, cgroup
# or mount of a test's VMs may be left.
status=0
if pids=$(pgrep -f 'qemu-system-x86_64 .*(/run/paddock-test-|paddock-test-)'); then
  echo "LEAK: QEMU processes still running:"; ps -o pid,args -p "${pids//$'\n'/,}"; status=1
fi
left=$(ls -d /run/paddock-test-* /dev/shm/paddock-test-* 2>/dev/null)
if [ -n "$left" ]; then echo "LEAK: VM run directories left: $left"; status=1; fi
# A test must give its worker its own directories: the worker's defaults are for real workers.
for d in /dev/shm/paddock-snapshots /run/paddock-snapshots /dev/shm/paddock; do
  if [ -d "$d" ] && [ -n "$(ls -A "$d" 2>/dev/null)" ]; then
    echo "LEAK: a worker default directory was used (tests must pass their own): $d: $(ls -A "$d")"
    status=1
  fi
done
# Network namespaces of tests (pt*, t<digits>-vm*, wnet1-*) and of the workers they start
# (p + 5 hex digits: the prefix a worker derives from its id).
# shellcheck disable=SC2010  # namespace names are [a-z0-9-] (ip netns add takes no others)
if left_ns=$(ls /run/netns 2>/dev/null | grep -E '^(pt[a-z]*[0-9]+$|t[0-9]+-vm|wnet1-|pbench|p[0-9a-f]{5}-vm)'); then
  echo "LEAK: network namespaces left: $left_ns"; status=1
fi
# Jails' cgroups (paddock*/<provider>/<jail>): a provider removes each with its VM.
if left_cg=$(find /sys/fs/cgroup -mindepth 3 -maxdepth 4 -type d -path '*/paddock*/*/*' 2>/dev/null | grep .); then
  echo "LEAK: jail cgroups left: $left_cg"; status=1
fi
# Every other process a VM test starts names a test run directory (jailers, workers) or is an
# escape-suite recorder (tests/vm/escape_recorder.py) in a test namespace.
if pids=$(pgrep -f '(/run/paddock-test-|/dev/shm/paddock-test-|escape_recorder\.py)'); then
  echo "LEAK: processes of VM tests still running:"; ps -o pid,args -p "${pids//$'\n'/,}"; status=1
fi
# Tests give their VMs a namespace of their own as the host: nothing of a VM may appear in the
# machine's own namespace (host links <prefix>h<n>, iptables rules tagged <prefix>:<n>).
test_prefix='(t[0-9]+|wnet1|p[0-9a-f]{5})'
if left_links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
                grep -E "^${test_prefix}h[0-9]+$"); then
  echo "LEAK: VM host links in the machine's own namespace: $left_links"; status=1
fi
if command -v iptables-save >/dev/null &&
   left_rules=$(iptables-save 2>/dev/null | grep -E -- "--comment \"?${test_prefix}:[0-9]+"); then
  echo "LEAK: VM iptables rules in the machine's own namespace:"; echo "$left_rules"; status=1
fi
# Mounts below a test run directory (a jail's mounts live in its own mount namespace only).
if left_mounts=$(grep -E ' /(run|dev/shm)/paddock-test-' /proc/self/mountinfo); then
  echo "LEAK: mounts below test run directories: $left_mounts"; status=1
fi
[ $status -eq 0 ] && echo "no QEMU process or VM directory left behind"
exit $status
