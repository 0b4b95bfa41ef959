#!/usr/bin/env bash
# Paddock's quick start: install what is missing, build a release build into build-demo/, build the
# guest image, start a broker and one worker on free loopback ports, run examples/vm-batch.jsonl
# through the paddock CLI (every job in its own QEMU microVM), print the results, and stop
# everything (also on error or Ctrl-C). When the python image is built on this machine
# (tools/build-image.sh python), the worker has it too and examples/python-batch.jsonl runs as
# well; otherwise the demo says how to build it.
#
#   tools/demo.sh            real microVMs (--backend qemu; TCG where KVM is not usable)
#   tools/demo.sh --memory   the in-memory TEST DOUBLE instead (--backend memory): it interprets each
#                            job's argv as a little script and executes nothing; examples/batch.jsonl
set -euo pipefail
mode=qemu
[[ "${1:-}" == "--memory" ]] && mode=memory
cd "$(dirname "$0")/.."
root=$(pwd)
build="$root/build-demo"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-demo.XXXXXX")
broker_pid=""
worker_pid=""

# stop PID NAME: SIGTERM, up to 15 s to exit, then SIGKILL. Prints nothing when all goes well.
stop() {
  local pid=$1 name=$2 status=0
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "demo: $name did not stop within 15 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || status=$?
  [[ $status -eq 0 ]] || echo "demo: $name exited with status $status" >&2
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop "$worker_pid" paddock-worker
  stop "$broker_pid" paddock-broker
  [[ -n "${host_netns:-}" ]] && ip netns delete "$host_netns" 2>/dev/null
  if [[ $status -ne 0 && $status -ne 130 ]]; then
    for log in "$tmp"/*.log; do
      [[ -s "$log" ]] && { echo "--- last lines of $(basename "$log"):" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted; stopping everything" >&2; exit 130' INT TERM

die() { echo "demo: $*" >&2; exit 1; }

tools/install-deps.sh

echo "== building build-demo/ (release; the first build takes a few minutes)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPADDOCK_TESTS=OFF -DPADDOCK_SANITIZE=OFF >"$tmp/build.log" 2>&1 || die "cmake configure failed (log below)"
ninja -C "$build" paddock paddock-broker paddock-worker paddock-agent paddock-jailer >>"$tmp/build.log" 2>&1 ||
  die "build failed (log below)"
paddock="$build/tools/paddock"
if [[ $mode == qemu ]]; then
  echo "== building the guest image (Debian kernel + busybox + paddock-agent; cached by input hash)"
  image=$(tools/build-guest-image.sh --agent "$build/agent/guest/paddock-agent" \
    --cache-dir "$build/images" 2>"$tmp/image.log" | tail -n 1) || die "guest image build failed: $(tail -n 5 "$tmp/image.log")"
  echo "   $image"
  # The python image (a few minutes to build, so never built here): used if this machine has it.
  image_cache=${PADDOCK_IMAGE_CACHE:-/var/cache/paddock/images}
  python_image=""
  if key=$(tools/build-image.sh --print-key --cache-dir "$image_cache" python 2>/dev/null) &&
     [[ -f "$image_cache/rootfs/$key/rootfs.json" ]]; then
    # Its root filesystem is built: assemble the image with this build's agent (seconds).
    python_image=$(tools/build-image.sh --agent "$build/agent/guest/paddock-agent" \
      --cache-dir "$image_cache" python 2>"$tmp/python-image.log" | tail -n 1) ||
      die "python image assembly failed: $(tail -n 5 "$tmp/python-image.log")"
    echo "== the python image is built: the worker has it too ($python_image)"
  else
    echo "== no python image on this machine: only 'default' jobs run. To run Python jobs too, build"
    echo "   it once (as root, about 3 minutes) and run the demo again:"
    echo "     tools/build-image.sh python --agent $build/agent/guest/paddock-agent"
  fi
fi

echo "== starting paddock-broker on free loopback ports"
"$build/broker/paddock-broker" --client-endpoint 'tcp://127.0.0.1:*' --worker-endpoint 'tcp://127.0.0.1:*' \
  --state-dir "$tmp/broker-state" --ready-file "$tmp/ready.json" >"$tmp/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do
  [[ -s "$tmp/ready.json" ]] && break
  kill -0 "$broker_pid" 2>/dev/null || die "paddock-broker exited at start"
  sleep 0.1
done
[[ -s "$tmp/ready.json" ]] || die "paddock-broker wrote no ready file within 10 s"
endpoint() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$tmp/ready.json"; }
client=$(endpoint client)
worker=$(endpoint worker)
[[ -n "$client" && -n "$worker" ]] || die "unexpected ready file: $(cat "$tmp/ready.json")"
echo "   clients: $client   workers: $worker"

if [[ $mode == qemu ]]; then
  echo "== starting paddock-worker (2 slots, backend: qemu: each job in a fresh microVM)"
  # The VMs' host side (veth ends, NAT) goes into a namespace of the demo's own, so the demo never
  # touches this machine's firewall; its template snapshots go into the demo's temp directory.
  host_netns="paddock-demo-$$"
  ip netns add "$host_netns" || die "ip netns add $host_netns failed (the demo runs as root)"
  image_args=()
  batch=examples/vm-batch.jsonl
  if [[ -n "$python_image" ]]; then
    image_args=(--image "python=$python_image")
    batch="$tmp/batch.jsonl"
    cat examples/vm-batch.jsonl examples/python-batch.jsonl >"$batch"
  fi
  "$build/worker/paddock-worker" --broker "$worker" --slots 2 --worker-id demo-worker --backend qemu \
    --image-dir "$image" "${image_args[@]}" --run-dir "$tmp/vms" --snapshot-dir "$tmp/snapshots" \
    --net-host-netns "$host_netns" >"$tmp/worker.log" 2>&1 &
  worker_pid=$!
  echo
  echo "== running examples/vm-batch.jsonl${python_image:+ and examples/python-batch.jsonl (image: python)}"
  cat <<'NOTE'
   Every job below runs in its own QEMU microVM (software emulation (TCG) where KVM is not usable)
   through the guest agent, and the VM is torn down. The worker first cold-boots one template VM
   and snapshots it (a few seconds); jobs that come before it is ready wait for it, then all run
   in clones restored from it (warm, tens of milliseconds). Each VM has its own network namespace
   with a default-deny firewall; these jobs ask for no egress, so they have no way out.

NOTE
else
  echo "== starting paddock-worker (4 slots, backend: memory = the in-memory TEST DOUBLE)"
  "$build/worker/paddock-worker" --broker "$worker" --slots 4 --worker-id demo-worker --backend memory \
    >"$tmp/worker.log" 2>&1 &
  worker_pid=$!
  batch=examples/batch.jsonl
  cat <<'NOTE'

== running examples/batch.jsonl
   NOTE: these jobs run on the in-memory TEST DOUBLE. It reads each job's argv as a script
   (echo, cat, env, exit N, sleep MS, fail VARIANT ...) and executes NOTHING: no VM is started,
   no program runs. The results show what Paddock's broker, worker and CLI do with each outcome.

NOTE
fi
status=0
# The batch waits for its results; if the worker dies (say it cannot start its VMs), say so
# instead of waiting for ever.
"$paddock" batch --broker "$client" "$batch" &
batch_pid=$!
while kill -0 "$batch_pid" 2>/dev/null; do
  if ! kill -0 "$worker_pid" 2>/dev/null; then
    kill "$batch_pid" 2>/dev/null
    wait "$batch_pid" 2>/dev/null
    worker_pid=""
    die "paddock-worker exited; its log ends: $(tail -n 5 "$tmp/worker.log")"
  fi
  sleep 0.2
done
wait "$batch_pid" || status=$?
if [[ $mode == memory ]]; then
  cat <<'NOTE'

   Reminder: every job above ran on the in-memory TEST DOUBLE (BACKEND "memory"); nothing was
   executed in a VM. "ok" rows are results (the job's own exit code), "error" rows are Paddock
   errors with their variant and code.
NOTE
fi
[[ $status -eq 0 ]] || die "paddock batch exited with status $status"

echo
echo "== stopping the worker (SIGTERM: it drains and exits 0) and the broker"
stop "$worker_pid" paddock-worker
worker_pid=""
stop "$broker_pid" paddock-broker
broker_pid=""
echo "== done. Try it yourself:"
echo "   $build/broker/paddock-broker &"
echo "   $build/worker/paddock-worker --broker tcp://127.0.0.1:5556 --backend qemu --image-dir ${image:-<image dir>} &"
echo "   $build/tools/paddock submit -- echo hi"
