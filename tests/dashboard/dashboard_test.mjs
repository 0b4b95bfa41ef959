// The broker's dashboard in a real browser (issue 13): Debian's chromium, driven by
// playwright-core, against a real paddock-broker and two workers on the memory backend — an
// in-memory TEST DOUBLE that executes nothing (runtime/README.md): the dashboard shows the queue,
// not VMs. A batch with failing jobs goes through; the test checks what each page shows and saves
// a screenshot of each in $PADDOCK_SCREENSHOT_DIR.
//
// Environment: PADDOCK_BROKER_BIN, PADDOCK_WORKER_BIN, PADDOCK_CLI_BIN, PADDOCK_SCREENSHOT_DIR.
// Exits 0 when every check passed; 1 (naming the check) otherwise, including when chromium or
// playwright-core is missing: never a silent pass.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const CHROMIUM = "/usr/bin/chromium";
const env = name => {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
};
function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}
let checks = 0;
function check(ok, what) {
  if (!ok) fail(what);
  checks++;
  console.log(`ok ${checks} - ${what}`);
}

const children = [];
function start(bin, args, log) {
  const out = fs.openSync(log, "w");
  const child = spawn(bin, args, { stdio: ["ignore", out, out] });
  children.push(child);
  return child;
}
function exited(child) {
  return new Promise(resolve => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", code => resolve(code));
  });
}
async function waitFor(what, probe, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  fail(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

async function main() {
  const brokerBin = env("PADDOCK_BROKER_BIN");
  const workerBin = env("PADDOCK_WORKER_BIN");
  const cliBin = env("PADDOCK_CLI_BIN");
  const shots = env("PADDOCK_SCREENSHOT_DIR");
  if (!fs.existsSync(CHROMIUM)) {
    fail(`${CHROMIUM} is missing: install Debian's chromium (tools/install-deps.sh does)`);
  }
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    fail(`playwright-core is not installed in tests/dashboard (run npm ci there; tools/install-deps.sh does): ${e.message}`);
  }
  fs.mkdirSync(shots, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "paddock-dashboard-"));
  let browser;
  try {
    // The broker, with the dashboard on an ephemeral loopback port.
    const ready = path.join(dir, "broker.ready");
    const broker = start(brokerBin, ["--client-endpoint", "tcp://127.0.0.1:*", "--worker-endpoint",
                                     "tcp://127.0.0.1:*", "--metrics-address", "127.0.0.1:0",
                                     "--state-dir", path.join(dir, "broker-state"),
                                     "--ready-file", ready], path.join(dir, "broker.log"));
    const endpoints = await waitFor("the broker's ready file", () => {
      if (broker.exitCode !== null) fail(`the broker exited: ${fs.readFileSync(path.join(dir, "broker.log"), "utf8")}`);
      return fs.existsSync(ready) && JSON.parse(fs.readFileSync(ready, "utf8"));
    });
    const base = `http://${endpoints.metrics}`;
    const api = async p => {
      const r = await fetch(base + p);
      if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
      return r.json();
    };

    // A batch before any worker: 25 at priority 0, 5 at priority 5, of which 5 fail on purpose
    // (the test double's `fail VARIANT`) and 3 exit 3; one prints a line to find it by.
    const lines = [];
    for (let i = 0; i < 21; i++) lines.push({ job_id: `ok-${i}`, argv: ["echo", "hello", String(i)] });
    lines.push({ job_id: "lookup-me", argv: ["echo", "found by id"] });
    // A job with steps (the second fails, so the third is not run).
    lines.push({ job_id: "steps-me", steps: [{ argv: ["echo", "built"] }, { argv: ["exit", "2"] },
                                               { argv: ["echo", "never"] }] });
    for (let i = 0; i < 5; i++) lines.push({ job_id: `bad-${i}`, argv: ["fail", "InvalidTransition", "on", "purpose"], priority: 5 });
    for (let i = 0; i < 3; i++) lines.push({ job_id: `exit-${i}`, argv: ["exit", "3"] });
    const total = lines.length;
    const batchFile = path.join(dir, "batch.jsonl");
    fs.writeFileSync(batchFile, lines.map(l => JSON.stringify(l)).join("\n") + "\n");
    const batch = start(cliBin, ["batch", "--broker", endpoints.client, "--json", batchFile],
                        path.join(dir, "batch.log"));
    await waitFor("30 queued jobs", async () => (await api("/api/v1/overview")).queue.queued === total);

    browser = await chromium.launchPersistentContext(path.join(dir, "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = browser.pages()[0] || await browser.newPage();
    const consoleErrors = [];
    page.on("console", m => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", e => consoleErrors.push(String(e)));
    const text = sel => page.locator(sel).first().innerText();
    // A page that shows "null" or "undefined" put a missing value on screen as is.
    const nothingMissing = async what => {
      const shown = await page.locator("main").innerText();
      check(!/null|undefined|NaN/.test(shown), `${what}: no null, undefined or NaN shown`);
    };

    // Overview while the jobs wait: the queue by priority.
    await page.goto(`${base}/`);
    await page.waitForSelector('[data-testid="priority-table"] tr[data-priority="5"]');
    check(await text('[data-testid="priority-table"] tr[data-priority="5"] td.num') === "5",
          "overview: 5 jobs queued at priority 5");
    check(await text('[data-testid="priority-table"] tr[data-priority="0"] td.num') === String(total - 5),
          `overview: ${total - 5} jobs queued at priority 0`);
    check(await text('[data-testid="card-queued-value"]') === String(total), `overview: ${total} queued`);
    await page.screenshot({ path: path.join(shots, "overview-queued.png"), fullPage: true });

    // Two workers take the batch.
    start(workerBin, ["--broker", endpoints.worker, "--worker-id", "w1", "--slots", "2", "--backend", "memory"],
          path.join(dir, "w1.log"));
    start(workerBin, ["--broker", endpoints.worker, "--worker-id", "w2", "--slots", "3", "--backend", "memory"],
          path.join(dir, "w2.log"));
    const batchCode = await Promise.race([exited(batch), sleep(20000).then(() => "timeout")]);
    check(batchCode === 0, `the batch was answered (paddock batch exited ${batchCode})`);

    // Overview after the run: the counts and the error by variant and code.
    await waitFor("the overview to show every job answered", async () =>
      (await text('[data-testid="card-completed"] .sub')).startsWith(`${total - 5} completed`));
    check(await text('[data-testid="card-accepted"] .sub') === `${total} accepted`, `overview: ${total} accepted`);
    check(await text('[data-testid="card-completed"] .sub') === `${total - 5} completed (RESULT)`,
          `overview: ${total - 5} completed`);
    check(await text('[data-testid="card-failed"] .sub') === "5 failed (ERROR)", "overview: 5 failed");
    const errRow = page.locator('[data-testid="errors-table"] tr[data-variant="InvalidTransition"]');
    check(await errRow.count() === 1, "overview: the errors table has InvalidTransition");
    const code = await errRow.getAttribute("data-code");
    check(/^\d+$/.test(code), `overview: InvalidTransition has a code (${code})`);
    check((await errRow.locator("td").nth(2).innerText()) === "5", "overview: InvalidTransition counted 5 times");
    check(await text('[data-testid="card-workers-value"]') === "2", "overview: 2 workers");
    await sleep(1200);  // a second more of the throughput chart
    await nothingMissing("overview");
    await page.screenshot({ path: path.join(shots, "overview.png"), fullPage: true });

    // Workers.
    await page.click('nav a[data-page="workers"]');
    await page.waitForSelector('[data-testid="workers-table"] tr[data-worker="w2"]');
    for (const [id, slots] of [["w1", 2], ["w2", 3]]) {
      const row = page.locator(`[data-testid="workers-table"] tr[data-worker="${id}"]`);
      const cells = await row.locator("td").allInnerTexts();
      check(cells[1] === os.hostname(), `workers: ${id}'s host name is this host's (${cells[1]})`);
      check(cells[2].startsWith("127.0.0.1"), `workers: ${id}'s peer address (${cells[2]})`);
      check(cells[3] === "memory (test double)", `workers: ${id}'s backend is memory, named a test double`);
      check(cells[4] === "default", `workers: ${id} has image default`);
      check(cells[5].trim() === `0 / ${slots}`, `workers: ${id} has 0 of ${slots} slots busy (${cells[5].trim()})`);
    }
    await nothingMissing("workers");
    await page.screenshot({ path: path.join(shots, "workers.png"), fullPage: true });

    // Recent jobs, filtered to errors; a failed job's page.
    await page.click('nav a[data-page="jobs"]');
    await page.waitForSelector('[data-testid="jobs-table"] tr[data-job]');
    check(await page.locator('[data-testid="jobs-table"] tr[data-job]').count() === total,
          `jobs: all ${total} finished jobs listed`);
    await nothingMissing("recent jobs");
    await page.screenshot({ path: path.join(shots, "jobs.png"), fullPage: true });
    await page.selectOption('[data-testid="status-filter"]', "error");
    await waitFor("the error filter", async () =>
      await page.locator('[data-testid="jobs-table"] tr[data-job]').count() === 5);
    const failedRow = page.locator('[data-testid="jobs-table"] tr[data-job="bad-2"]');
    check((await failedRow.locator('[data-testid="job-outcome"]').innerText()) === `InvalidTransition (${code})`,
          "jobs: a failed job shows its variant and code");
    await failedRow.locator("a").click();
    await page.waitForSelector('[data-testid="job-error-variant"]');
    check(await text('[data-testid="job-error-variant"]') === "InvalidTransition", "job page: the error's variant");
    check(await text('[data-testid="job-error-code"]') === code, "job page: the error's code");
    check((await text('[data-testid="job-error-message"]')).includes("invalid vm transition"), "job page: the error's message");
    check((await page.locator('[data-testid="attempts-table"] tbody tr').count()) === 1, "job page: one attempt");
    await nothingMissing("a failed job's page");
    await page.screenshot({ path: path.join(shots, "job-failed.png"), fullPage: true });

    // A job looked up by id shows its result.
    await page.fill("#find-job-id", "lookup-me");
    await page.click('#find-job button');
    await page.waitForSelector('[data-testid="job-stdout"]');
    check(await text('[data-testid="job-id"]') === "lookup-me", "lookup: the page is lookup-me's");
    check(await text('[data-testid="job-exit-code"]') === "0", "lookup: exit code 0");
    check((await text('[data-testid="job-stdout"]')).trim() === "found by id", "lookup: its stdout");
    await nothingMissing("a job's page");
    await page.screenshot({ path: path.join(shots, "job.png"), fullPage: true });

    // A job with steps: one row per step, what each did, and the one not run.
    await page.fill("#find-job-id", "steps-me");
    await page.click('#find-job button');
    await page.waitForSelector('[data-testid="steps-table"]');
    check(await text('[data-testid="job-steps-count"]') === "3 (below)", "steps: the summary counts 3");
    const stepRows = page.locator('[data-testid="steps-table"] tbody tr');
    check(await stepRows.count() === 3, "steps: a row per step");
    const cell = (row, col) => stepRows.nth(row).locator("td").nth(col).innerText();
    check((await cell(0, 4)).trim() === "built", "steps: step 1's stdout");
    check(await cell(1, 2) === "exit 2", "steps: step 2 exited 2");
    check(await cell(2, 2) === "not run", "steps: step 3 was not run");
    check(await text('[data-testid="job-exit-code"]') === "2", "steps: the job's exit code is the last step run's");
    await nothingMissing("a job with steps");
    await page.screenshot({ path: path.join(shots, "job-steps.png"), fullPage: true });

    // An unknown id says so.
    await page.fill("#find-job-id", "no-such-job");
    await page.click('#find-job button');
    await page.waitForSelector('[data-testid="job-not-found"]');
    check(true, "lookup: an unknown job is reported as not found");
    check(consoleErrors.filter(e => !e.includes("404")).length === 0,
          `no errors in the browser console (${consoleErrors.join("; ")})`);
  } finally {
    if (browser) await browser.close().catch(() => {});
    for (const c of children.reverse()) {
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
    }
    await Promise.race([Promise.all(children.map(exited)), sleep(5000)]);
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
    if (process.exitCode) {
      for (const f of ["broker.log", "batch.log", "w1.log", "w2.log"]) {
        const p = path.join(dir, f);
        if (fs.existsSync(p)) console.error(`--- ${f}\n${fs.readFileSync(p, "utf8").slice(-3000)}`);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`${checks} passed, 0 failed`);
}

main().catch(e => {
  if (!process.exitCode) console.error(`FAIL: ${e.stack || e}`);
  process.exitCode = 1;
});
