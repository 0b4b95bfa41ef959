#!/usr/bin/env bash
# Runs after the VM tests: no QEMU started by a test may be running, and no test run directory
# may be left.
status=0
if pids=$(pgrep -f 'qemu-system-x86_64 .*(/run/paddock-test-|paddock-test-)'); then
  echo "LEAK: QEMU processes still running:"; ps -o pid,args -p "${pids//$'\n'/,}"; status=1
fi
left=$(ls -d /run/paddock-test-* 2>/dev/null)
if [ -n "$left" ]; then echo "LEAK: VM run directories left: $left"; status=1; fi
[ $status -eq 0 ] && echo "no QEMU process or VM directory left behind"
exit $status
