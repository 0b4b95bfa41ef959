#!/usr/bin/env bash
# Runs after the VM tests: no QEMU started by a test may be running, and no test run directory
# may be left.
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
if left_ns=$(ls /run/netns 2>/dev/null | grep -E '^(pt[a-z]*[0-9]+$|t[0-9]+-vm|wnet1-|pbench|p[0-9a-f]{5}-vm)'); then
  echo "LEAK: network namespaces left: $left_ns"; status=1
fi
# Jails' cgroups (paddock*/<provider>/<jail>): a provider removes each with its VM.
if left_cg=$(find /sys/fs/cgroup -mindepth 3 -maxdepth 4 -type d -path '*/paddock*/*/*' 2>/dev/null | grep .); then
  echo "LEAK: jail cgroups left: $left_cg"; status=1
fi
[ $status -eq 0 ] && echo "no QEMU process or VM directory left behind"
exit $status
