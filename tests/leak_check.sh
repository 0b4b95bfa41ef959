#!/usr/bin/env bash
# Runs after every test that starts processes (a ctest fixture cleanup): fails if any broker or
# worker started from this build (or a test's PostgreSQL server) is still running, or a test's temp directory was left behind.
set -u
build_dir=$1
status=0
if pids=$(pgrep -f "^${build_dir}/(broker/paddock-broker|worker/paddock-worker)"); then
  echo "LEAK: processes still running:"; ps -o pid,args -p "${pids//$'\n'/,}"; status=1
fi
# The shared-queue tests' PostgreSQL servers (tests/integration/postgres_server.cc): data in a
# test directory under /tmp.
if pids=$(pgrep -f "postgres -D /tmp/paddock-test-"); then
  echo "LEAK: PostgreSQL servers of tests still running:"; ps -o pid,args -p "${pids//$'\n'/,}"; status=1
fi
# Simulated hosts (tests/integration/netns_hosts.cc): namespaces named pdk<pid>-…
if left_ns=$(ip netns list 2>/dev/null | grep -E '^pdk[0-9]+-'); then
  echo "LEAK: network namespaces of simulated hosts left behind:"; echo "$left_ns"; status=1
fi
left=$(find /tmp -maxdepth 1 -name 'paddock-test-*' -newer "${build_dir}/CMakeCache.txt" 2>/dev/null)
if [ -n "$left" ]; then
  echo "LEAK: test directories left behind:"; echo "$left"; status=1
fi
[ $status -eq 0 ] && echo "no processes or temp directories left behind"
exit $status
