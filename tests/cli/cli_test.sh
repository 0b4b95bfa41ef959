#!/usr/bin/env bash
# End-to-end tests of the paddock CLI against a real paddock-broker and paddock-worker (the
# in-memory test double backend) on ephemeral loopback ports.
#
# Usage: cli_test.sh CASE   (a function case_CASE below; ctest runs each as "cli: CASE")
# Environment: PADDOCK_CLI, PADDOCK_BROKER_BIN, PADDOCK_WORKER_BIN, PADDOCK_LOAD_BIN (binaries),
# PADDOCK_SOURCE_DIR.
# Every process a case starts is stopped on exit, whatever happens.
set -euo pipefail

for var in PADDOCK_CLI PADDOCK_BROKER_BIN PADDOCK_WORKER_BIN PADDOCK_LOAD_BIN PADDOCK_SOURCE_DIR; do
  [[ -n "${!var:-}" ]] || { echo "FAIL: $var is not set (run through ctest)" >&2; exit 1; }
done
for bin in "$PADDOCK_CLI" "$PADDOCK_BROKER_BIN" "$PADDOCK_WORKER_BIN" "$PADDOCK_LOAD_BIN"; do
  [[ -x "$bin" ]] || { echo "FAIL: binary missing: $bin (build it: ninja paddock paddock-broker paddock-worker paddock-load)" >&2; exit 1; }
done
PY=/usr/bin/python3
# Only in the foreground: in the background, $! would be the subshell, not the CLI.
paddock() { "$PADDOCK_CLI" "$@"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-cli-test.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    for log in "$tmp"/*.log; do [[ -s "$log" ]] && { echo "--- $log"; tail -n 30 "$log"; }; done
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_status() {  # expect_status WANT GOT WHAT
  [[ "$1" == "$2" ]] || fail "$3: exit status $2, expected $1"
}
expect_in() {  # expect_in NEEDLE FILE WHAT
  grep -qF -- "$1" "$2" || { echo "--- $2:"; cat "$2"; fail "$3: '$1' not found"; }
}
json_field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$2"; }

# start_broker [broker flags...]: sets CLIENT and WORKER endpoints.
start_broker() {
  rm -f "$tmp/ready.json"
  # The journal is on, as by default, in this test's own state directory.
  "$PADDOCK_BROKER_BIN" --client-endpoint 'tcp://127.0.0.1:*' --worker-endpoint 'tcp://127.0.0.1:*' \
    --state-dir "$tmp/broker-state" --ready-file "$tmp/ready.json" "$@" >"$tmp/broker.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    [[ -s "$tmp/ready.json" ]] && break
    kill -0 "${pids[-1]}" 2>/dev/null || fail "paddock-broker exited at start"
    sleep 0.1
  done
  [[ -s "$tmp/ready.json" ]] || fail "paddock-broker wrote no ready file within 10 s"
  CLIENT=$(json_field client "$tmp/ready.json")
  WORKER=$(json_field worker "$tmp/ready.json")
  [[ -n "$CLIENT" && -n "$WORKER" ]] || fail "ready file without endpoints: $(cat "$tmp/ready.json")"
}

# start_worker SLOTS: a memory-backend worker; returns once it runs jobs.
start_worker() {
  "$PADDOCK_WORKER_BIN" --broker "$WORKER" --slots "$1" --worker-id cli-test --backend memory \
    >"$tmp/worker.log" 2>&1 &
  pids+=($!)
  paddock submit --broker "$CLIENT" --wait-ms 20000 -- true >/dev/null ||
    fail "a first job did not run: is the worker connected?"
}

start_cluster() { start_broker; start_worker 4; }

# submit_until_rejected PREFIX: submits jobs PREFIX-1, PREFIX-2, ... (each waiting 300 ms for its
# answer) until one is REJECTED (exit 75), at most 50; returns the last exit status, its stderr in
# $tmp/err. For a queue that fills as jobs submitted in the background reach the broker.
submit_until_rejected() {
  local status=0
  for i in $(seq 50); do
    status=0
    paddock submit --broker "$CLIENT" --job-id "$1-$i" --wait-ms 300 -- true 2>"$tmp/err" >/dev/null ||
      status=$?
    [[ $status -eq 75 ]] && break
    sleep 0.1
  done
  return "$status"
}

case_submit_echo() {
  start_cluster
  local out status=0
  out=$(paddock submit --broker "$CLIENT" -- echo hi) || status=$?
  expect_status 0 "$status" "submit -- echo hi"
  [[ "$out" == "hi" ]] || fail "submit -- echo hi printed '$out'"
  # -v: where and how it ran, on stderr; stdout is still the job's alone. The worker's template
  # was built at start, so the job runs in a clone.
  status=0
  out=$(paddock submit --broker "$CLIENT" -v -- echo hi 2>"$tmp/err") || status=$?
  expect_status 0 "$status" "submit -v -- echo hi"
  [[ "$out" == "hi" ]] || fail "submit -v -- echo hi printed '$out'"
  expect_in "ran on cli-test, backend memory, warm (clone of tpl-default-1x128-" "$tmp/err" "submit -v"
}

case_submit_exit_codes() {
  start_cluster
  local status=0
  paddock submit --broker "$CLIENT" -- exit 7 || status=$?
  expect_status 7 "$status" "submit -- exit 7"
  status=0
  paddock submit --broker "$CLIENT" --timeout-ms 200 -- sleep 5000 2>"$tmp/err" || status=$?
  expect_status 124 "$status" "a job that times out"
  expect_in "timed out" "$tmp/err" "timeout message"
  status=0
  paddock submit --broker "$CLIENT" -- stderr oops >/dev/null 2>"$tmp/err" || status=$?
  expect_status 0 "$status" "submit -- stderr oops"
  expect_in "oops" "$tmp/err" "the job's stderr on ours"
}

case_submit_stdin_env() {
  start_cluster
  local out
  out=$(printf 'from stdin' | paddock submit --broker "$CLIENT" --stdin-file - -- cat)
  [[ "$out" == "from stdin" ]] || fail "cat printed '$out'"
  out=$(paddock submit --broker "$CLIENT" --env NAME=value -- env NAME)
  [[ "$out" == "value" ]] || fail "env NAME printed '$out'"
}

case_submit_steps() {
  start_cluster
  local out status=0
  # Steps run in order in one VM; the exit status is the last step run's, the failed step and
  # the steps not run are named on stderr.
  out=$(paddock submit --broker "$CLIENT" --step 'echo one' --step 'exit 3' --step 'echo three' \
    2>"$tmp/err") || status=$?
  expect_status 3 "$status" "submit --step 'echo one' --step 'exit 3' --step 'echo three'"
  [[ "$out" == "one" ]] || fail "the steps printed '$out' (the third must not run)"
  expect_in "step 2 of 3 exited 3" "$tmp/err" "the failed step"
  expect_in "steps 3 to 3 were not run" "$tmp/err" "the steps not run"
  status=0
  out=$(paddock submit --broker "$CLIENT" --keep-going --step 'exit 3' --step 'echo two' \
    2>"$tmp/err") || status=$?
  expect_status 0 "$status" "--keep-going: the last step's status"
  [[ "$out" == "two" ]] || fail "--keep-going printed '$out'"
  # The first step reads --stdin-file; a program and --step together are refused.
  out=$(printf 'in\n' | paddock submit --broker "$CLIENT" --stdin-file - --step cat --step 'echo x')
  [[ "$out" == "in"$'\n'"x" ]] || fail "the first step's stdin: '$out'"
  status=0
  paddock submit --broker "$CLIENT" --step 'echo x' -- echo y 2>"$tmp/err" || status=$?
  expect_status 64 "$status" "--step and a program"
  expect_in "not both" "$tmp/err" "--step and a program"
}

case_submit_paddock_error() {
  start_cluster
  local status=0
  paddock submit --broker "$CLIENT" -- fail Jailer x 2>"$tmp/err" || status=$?
  expect_status 125 "$status" "submit -- fail Jailer x"
  expect_in "error: Jailer (code 11): " "$tmp/err" "the error line"
}

case_submit_queue_full() {
  start_broker --max-queue 1  # no worker: the first job stays queued
  "$PADDOCK_CLI" submit --broker "$CLIENT" --job-id first --wait-ms 30000 -- true >/dev/null 2>&1 &
  pids+=($!)
  # Whichever job reaches the broker first fills its queue; a later one is REJECTED.
  local status=0
  submit_until_rejected second || status=$?
  expect_status 75 "$status" "submit to a full queue"
  expect_in "QueueFull (code 103)" "$tmp/err" "the REJECTED line"
}

case_submit_no_broker() {
  local status=0
  paddock submit --broker tcp://127.0.0.1:1 --broker-timeout-ms 500 -- echo hi 2>"$tmp/err" || status=$?
  expect_status 69 "$status" "submit without a broker"
  expect_in "did not answer" "$tmp/err" "the message"
  status=0
  paddock ping --broker tcp://127.0.0.1:1 --wait-ms 500 2>/dev/null || status=$?
  expect_status 69 "$status" "ping without a broker"
  status=0
  paddock submit --broker not-an-endpoint -- echo hi 2>/dev/null || status=$?
  expect_status 64 "$status" "a malformed endpoint"
}

case_submit_failover() {
  # Brokers as a comma-separated list: the first has nobody listening (port 1), so after a
  # silence the CLI moves to the next and submits the job there.
  start_cluster
  local out status=0
  out=$(paddock submit --broker "tcp://127.0.0.1:1,$CLIENT" --broker-timeout-ms 3000 -- echo hi) ||
    status=$?
  expect_status 0 "$status" "submit with a dead broker first"
  [[ "$out" == "hi" ]] || fail "submit with a dead broker first printed '$out'"
}

case_submit_live_output() {
  start_cluster
  local status=0
  # Five lines, 20 ms apart, printed live as OUTPUT chunks: each exactly once (the RESULT, which
  # holds them all too, adds nothing), nothing on stderr.
  printf 'tick\n%.0s' 1 2 3 4 5 >"$tmp/want"
  paddock submit --broker "$CLIENT" -- every 20 5 tick >"$tmp/out" 2>"$tmp/err" || status=$?
  expect_status 0 "$status" "submit -- every 20 5 tick"
  cmp -s "$tmp/want" "$tmp/out" || fail "submit -- every 20 5 tick printed '$(cat "$tmp/out")'"
  [[ ! -s "$tmp/err" ]] || fail "submit -- every 20 5 tick wrote on stderr: $(cat "$tmp/err")"
  # --no-stream: the same bytes, from the RESULT alone.
  status=0
  paddock submit --broker "$CLIENT" --no-stream -- every 20 5 tick >"$tmp/out.no-stream" \
    2>"$tmp/err" || status=$?
  expect_status 0 "$status" "submit --no-stream -- every 20 5 tick"
  cmp -s "$tmp/want" "$tmp/out.no-stream" ||
    fail "submit --no-stream -- every 20 5 tick printed '$(cat "$tmp/out.no-stream")'"
  [[ ! -s "$tmp/err" ]] || fail "submit --no-stream wrote on stderr: $(cat "$tmp/err")"
  # A job that prints a line, then times out (its next line is a minute away): the line shows
  # while the job still runs, once (the timed-out RESULT holds it too), and the status is 124.
  "$PADDOCK_CLI" submit --broker "$CLIENT" --timeout-ms 1500 -- every 60000 2 first \
    >"$tmp/first.out" 2>"$tmp/first.err" &
  local submitter=$!
  pids+=("$submitter")
  for _ in $(seq 1000); do
    grep -qx first "$tmp/first.out" && break
    kill -0 "$submitter" 2>/dev/null || break
    sleep 0.01
  done
  if ! grep -qx first "$tmp/first.out" || ! kill -0 "$submitter" 2>/dev/null; then
    fail "'first' was not printed live, while the job ran: stdout '$(cat "$tmp/first.out")'"
  fi
  status=0
  wait "$submitter" || status=$?
  expect_status 124 "$status" "submit --timeout-ms 1500 -- every 60000 2 first"
  [[ "$(cat "$tmp/first.out")" == first ]] ||
    fail "the timed-out job's stdout: '$(cat "$tmp/first.out")', expected 'first' once"
  expect_in "timed out" "$tmp/first.err" "the timeout message"
}

# load_summary FILE: prints FILE's (a paddock-load JSON summary) output_chunks and output_bytes,
# after checking that all 20 jobs ran and exited 0.
load_summary() {
  "$PY" - "$1" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["complete"] is True and s["answered"] == 20 and s["ok"] == 20, s
assert s["nonzero_exit"] == 0 and s["errors"] == 0, s
print(s["output_chunks"], s["output_bytes"])
PYEOF
}

case_load_stream() {
  start_cluster
  local status=0 chunks bytes
  # --json-out: the JSON summary in a file, the text one on stdout.
  "$PADDOCK_LOAD_BIN" --broker "$CLIENT" --stream --jobs 20 --concurrency 4 \
    --json-out "$tmp/stream.json" -- echo hi >"$tmp/stream.txt" 2>"$tmp/err" || status=$?
  expect_status 0 "$status" "paddock-load --stream --jobs 20 -- echo hi"
  read -r chunks bytes < <(load_summary "$tmp/stream.json") || fail "summary: $(cat "$tmp/stream.json")"
  [[ -n "$bytes" ]] || fail "summary: $(cat "$tmp/stream.json")"
  ((chunks >= 20 && bytes >= 60)) || fail "--stream: $chunks output chunks, $bytes bytes; expected >= 20, >= 60"
  expect_in "live output $chunks chunks, $bytes bytes" "$tmp/stream.txt" "the text summary"
  status=0
  "$PADDOCK_LOAD_BIN" --broker "$CLIENT" --jobs 20 --concurrency 4 \
    --json-out "$tmp/plain.json" -- echo hi >"$tmp/plain.txt" 2>"$tmp/err" || status=$?
  expect_status 0 "$status" "paddock-load --jobs 20 -- echo hi"
  read -r chunks bytes < <(load_summary "$tmp/plain.json") || fail "summary: $(cat "$tmp/plain.json")"
  [[ "$chunks $bytes" == "0 0" ]] || fail "without --stream: $chunks output chunks, $bytes bytes"
  if grep -q "live output" "$tmp/plain.txt"; then fail "without --stream: $(cat "$tmp/plain.txt")"; fi
}

case_batch_json() {
  start_cluster
  local file="$PADDOCK_SOURCE_DIR/examples/batch.jsonl" status=0
  paddock batch --broker "$CLIENT" --json "$file" >"$tmp/out" 2>"$tmp/err" || status=$?
  expect_status 0 "$status" "batch --json examples/batch.jsonl"
  "$PY" - "$file" "$tmp/out" <<'PYEOF' || fail "batch --json output (above)"
import json, sys
jobs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = [json.loads(l) for l in open(sys.argv[2])]
assert len(out) == len(jobs), f"{len(out)} answers for {len(jobs)} jobs"
ids = {j["job_id"] for j in jobs if "job_id" in j}
assert ids <= {o["job_id"] for o in out}, "some job_id has no answer"
errors = [o for o in out if o["status"] == "error"]
assert errors, "the example batch should contain Paddock errors"
for o in out:
    assert o["status"] in ("ok", "error"), o
    if o["status"] == "error":
        assert isinstance(o["variant"], str) and o["variant"], o
        assert isinstance(o["code"], int) and o["code"] > 0, o
    else:
        assert o["backend"] == "memory", o
        for k in ("exit_code", "signal", "timed_out", "stdout", "stderr", "timings", "worker_id", "attempt"):
            assert k in o, (k, o)
        assert isinstance(o["warm"], bool), o
        assert o["template"].startswith("tpl-default-") if o["warm"] else o["template"] == "", o
by_id = {o["job_id"]: o for o in out}
assert by_id["hello"]["stdout"] == "hello from paddock\n"
assert by_id["timeout"]["timed_out"] is True
assert by_id["network-setup"]["variant"] == "NetworkSetup" and by_id["network-setup"]["code"] == 13
PYEOF
  paddock batch --broker "$CLIENT" "$file" >"$tmp/table" || fail "batch (table) failed"
  expect_in "NetworkSetup (13)" "$tmp/table" "the table"
  expect_in "hello from paddock" "$tmp/table" "the table"
  expect_in "START" "$tmp/table" "the table"
}

case_batch_invalid_line() {
  start_cluster
  printf '%s\n' '{"job_id": "good", "argv": ["echo", "fine"]}' '{"job_id": "bad", "argv": "echo"}' \
    '{"job_id": "typo", "argv": ["echo"], "timeout": 5}' >"$tmp/batch.jsonl"
  local status=0
  paddock batch --broker "$CLIENT" --json "$tmp/batch.jsonl" >"$tmp/out" 2>"$tmp/err" || status=$?
  expect_status 1 "$status" "a batch with invalid lines"
  expect_in "batch.jsonl:2: " "$tmp/err" "line 2 reported"
  expect_in "argv: expected an array" "$tmp/err" "line 2's field"
  expect_in "batch.jsonl:3: invalid job, not submitted: timeout: unknown field" "$tmp/err" "line 3"
  expect_in '"job_id":"good"' "$tmp/out" "the valid job still ran"
  [[ $(wc -l <"$tmp/out") -eq 1 ]] || fail "expected one answer, got: $(cat "$tmp/out")"
}

case_batch_queue_full_resubmits() {
  start_broker --max-queue 3
  start_worker 2
  for i in $(seq 30); do echo "{\"job_id\": \"q$i\", \"argv\": [\"sleep\", \"20\"]}"; done >"$tmp/batch.jsonl"
  local status=0
  paddock batch --broker "$CLIENT" --json "$tmp/batch.jsonl" >"$tmp/out" 2>"$tmp/err" || status=$?
  expect_status 0 "$status" "batch against a small queue"
  [[ $(grep -c '"status":"ok"' "$tmp/out") -eq 30 ]] || fail "expected 30 results: $(cat "$tmp/out")"
  grep -q "[1-9][0-9]* resubmissions after QueueFull" "$tmp/err" || fail "no resubmission: $(cat "$tmp/err")"
}

case_quota_refusals() {
  # The local tenant may hold 2 queued jobs: a batch of 12 is held back by its quota, says so,
  # and still gets every answer; a submit past the limit says which limit.
  printf '[tenants.local]\nmax_queued = 2\n' >"$tmp/tenants.toml"
  start_broker --tenants "$tmp/tenants.toml"
  for i in $(seq 12); do echo "{\"job_id\": \"t$i\", \"argv\": [\"sleep\", \"20\"]}"; done >"$tmp/batch.jsonl"
  "$PADDOCK_CLI" submit --broker "$CLIENT" --job-id held-1 --wait-ms 30000 -- true >/dev/null 2>&1 &
  pids+=($!)
  "$PADDOCK_CLI" submit --broker "$CLIENT" --job-id held-2 --wait-ms 30000 -- true >/dev/null 2>&1 &
  pids+=($!)
  # Once both held jobs are queued (no worker yet), a third is refused.
  local status=0
  submit_until_rejected third || status=$?
  expect_status 75 "$status" "submit past max_queued"
  expect_in "QuotaExceeded (code 108)" "$tmp/err" "the REJECTED line"
  expect_in "max_queued" "$tmp/err" "the limit named"
  expect_in "your tenant is at one of its limits" "$tmp/err" "the hint"
  # The worker, without start_worker's first job (the queue is at the tenant's limit): the batch
  # below waits for it anyway.
  "$PADDOCK_WORKER_BIN" --broker "$WORKER" --slots 2 --worker-id cli-test --backend memory \
    >"$tmp/worker.log" 2>&1 &
  pids+=($!)
  status=0
  paddock batch --broker "$CLIENT" --json "$tmp/batch.jsonl" >"$tmp/out" 2>"$tmp/err" || status=$?
  expect_status 0 "$status" "batch held back by its quota"
  [[ $(grep -c '"status":"ok"' "$tmp/out") -eq 12 ]] || fail "expected 12 results: $(cat "$tmp/out")"
  expect_in "refused at your tenant's limit" "$tmp/err" "the quota note"
}

case_cancel() {
  start_cluster
  local status=0
  paddock cancel --broker "$CLIENT" no-such-job >"$tmp/out" 2>"$tmp/err" || status=$?
  expect_status 1 "$status" "cancel of an unknown job"
  expect_in "UnknownJob (code 105)" "$tmp/err" "cancel of an unknown job"
  "$PADDOCK_CLI" submit --broker "$CLIENT" --job-id long -- sleep 60000 2>"$tmp/submit.err" &
  local submitter=$!
  pids+=("$submitter")
  sleep 0.5
  status=0
  paddock cancel --broker "$CLIENT" long >"$tmp/out" 2>&1 || status=$?
  expect_status 0 "$status" "cancel of a running job"
  status=0
  wait "$submitter" || status=$?
  expect_status 125 "$status" "the cancelled job's submitter"
  expect_in "Cancelled (code 101)" "$tmp/submit.err" "the submitter's error line"
}

case_ping_and_help() {
  start_broker
  paddock ping --broker "$CLIENT" | grep -q "^pong from" || fail "ping"
  for cmd in "" submit batch cancel ping keys "keys generate"; do
    # shellcheck disable=SC2086  # split on purpose: "" is no word, "keys generate" two
    paddock $cmd --help >/dev/null || fail "paddock $cmd --help"
  done
  local status=0
  paddock submit --broker "$CLIENT" 2>/dev/null || status=$?
  expect_status 64 "$status" "submit without argv"
}

case_keys_and_curve() {
  local keys="$tmp/keys" status=0
  mkdir -p "$keys"
  for name in broker ci w1 stranger; do
    paddock keys generate --out "$keys" --name "$name" >"$tmp/$name.out" 2>/dev/null ||
      fail "keys generate $name"
  done
  [[ $(stat -c %a "$keys/ci.key") == 600 ]] || fail "ci.key mode $(stat -c %a "$keys/ci.key"), expected 600"
  # Quoted: unquoted, the right side of == is a glob pattern, and Z85 keys hold '[', ']', '*', '?'.
  local want got
  want=$(cat "$tmp/ci.out")
  got=$(paddock keys show-public "$keys/ci.key") || fail "show-public of ci.key failed"
  [[ "$got" == "$want" ]] || fail "show-public of ci.key: '$got', expected '$want'"
  got=$(paddock keys show-public "$keys/ci.pub") || fail "show-public of ci.pub failed"
  [[ "$got" == "$want" ]] || fail "show-public of ci.pub: '$got', expected '$want'"
  paddock keys allow "$tmp/clients.allow" "$keys/ci.pub" >/dev/null || fail "keys allow"
  paddock keys allow "$tmp/clients.allow" "$keys/ci.pub" | grep -q "already in" || fail "keys allow twice"
  [[ $(wc -l <"$tmp/clients.allow") == 1 ]] || fail "allowlist: $(cat "$tmp/clients.allow")"
  paddock keys allow "$tmp/workers.allow" "$keys/w1.pub" >/dev/null || fail "keys allow w1"
  cp "$keys/ci.key" "$tmp/open.key" && chmod 644 "$tmp/open.key"
  paddock keys show-public "$tmp/open.key" 2>"$tmp/err" || status=$?
  expect_status 66 "$status" "show-public of a 0644 secret key"
  expect_in "chmod 600" "$tmp/err" "the refusal"

  start_broker --curve-secret-key "$keys/broker.key" --client-allow "$tmp/clients.allow" \
    --worker-allow "$tmp/workers.allow"
  "$PADDOCK_WORKER_BIN" --broker "$WORKER" --slots 2 --worker-id cli-curve --backend memory \
    --broker-public-key "$keys/broker.pub" --curve-key "$keys/w1.key" >"$tmp/worker.log" 2>&1 &
  pids+=($!)
  local out
  out=$(paddock submit --broker "$CLIENT" --broker-public-key "$keys/broker.pub" \
    --curve-key "$keys/ci.key" --wait-ms 20000 -- echo over-curve) || fail "submit over CURVE"
  [[ "$out" == over-curve ]] || fail "submit over CURVE printed '$out'"
  PADDOCK_BROKER_KEY=$(cat "$tmp/broker.out") PADDOCK_CURVE_KEY="$keys/ci.key" \
    paddock ping --broker "$CLIENT" | grep -q "^pong from" || fail "ping with keys from the environment"
  status=0
  paddock submit --broker "$CLIENT" --broker-timeout-ms 2000 -- echo hi 2>"$tmp/err" || status=$?
  expect_status 69 "$status" "submit without a key to a CURVE broker"
  expect_in "--broker-public-key" "$tmp/err" "the hint"
  status=0
  paddock ping --broker "$CLIENT" --broker-public-key "$keys/broker.pub" --curve-key "$keys/stranger.key" \
    --wait-ms 2000 2>"$tmp/err" || status=$?
  expect_status 69 "$status" "ping with a key the broker does not allow"
  expect_in "client-allow" "$tmp/err" "the hint"
  expect_in "key not in the client allowlist" "$tmp/broker.log" "the broker's log"
  status=0
  paddock ping --broker "$CLIENT" --curve-key "$keys/ci.key" 2>"$tmp/err" || status=$?
  expect_status 64 "$status" "--curve-key without --broker-public-key"
}

[[ $# -eq 1 ]] || fail "usage: cli_test.sh CASE"
declare -F "case_$1" >/dev/null || fail "no such case: $1"
"case_$1"
echo "PASS: $1"
