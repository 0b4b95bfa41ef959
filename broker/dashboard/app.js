// The Paddock dashboard: a page per hash route (#/overview, #/workers, #/jobs, #/jobs/<id>), each
// drawn from the broker's JSON API (/api/v1/...) and redrawn every POLL_MS. Everything shown is
// put in the page as text (never as HTML): job ids, argv and messages come from submitters.
"use strict";

const POLL_MS = 2000;
const main = document.getElementById("main");
const statusLine = document.getElementById("status");
let pollTimer = null;
let generation = 0;  // bumped on every navigation: answers for an older page are dropped
let jobsFilter = "";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "testid") e.dataset.testid = v;
    else if (k === "style") e.style.cssText = v;  // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) {
    let message = r.statusText;
    try {
      message = (await r.json()).error || message;
    } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, message);
  }
  return r.json();
}

// --- formatting -------------------------------------------------------------------------------

function fmtNumber(v, digits) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits ?? 0 });
}
function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 10000) return (v / 1000).toFixed(1) + " s";
  if (v >= 100) return v.toFixed(0) + " ms";
  if (v >= 1) return v.toFixed(1) + " ms";
  return v.toFixed(2) + " ms";
}
function fmtTime(unixMs) {
  if (!unixMs) return "–";
  return new Date(unixMs).toLocaleTimeString("en-GB", { hour12: false });
}
function fmtAgo(ms) {
  if (ms < 1000) return "now";
  if (ms < 60000) return Math.round(ms / 1000) + " s ago";
  return Math.round(ms / 60000) + " min ago";
}
function badge(status) {
  const label = { ok: "ok", exit_nonzero: "exit ≠ 0", error: "error", running: "running",
                  held: "held" }[status] || status;
  return el("span", { class: "badge " + status, text: label, testid: "status-badge" });
}
function backendName(b) {
  return b === "memory" ? "memory (test double)" : b || "–";
}
// A job's link goes by its key, "<tenant>/<job_id>": two tenants may use one job_id.
function jobLink(j) {
  return el("a", { href: "#/jobs/" + encodeURIComponent(j.key || j.job_id), text: j.job_id });
}
function outcomeText(job) {
  if (job.variant) return job.variant + " (" + job.code + ")";
  if (job.exit_code !== null && job.exit_code !== undefined) return "exit " + job.exit_code;
  return "";
}
function table(headers, rows, testid, emptyText) {
  const head = el("tr", {}, headers.map(h => el("th", { class: h.num ? "num" : null, text: h.label ?? h })));
  const body = rows.length ? rows
      : [el("tr", {}, el("td", { class: "empty", colspan: headers.length, text: emptyText || "none" }))];
  return el("table", { testid }, el("thead", {}, head), el("tbody", {}, body));
}
function card(label, value, sub, testid) {
  return el("div", { class: "card", testid },
            el("div", { class: "label", text: label }),
            el("div", { class: "value", text: value, testid: testid ? testid + "-value" : null }),
            sub ? el("div", { class: "sub", text: sub }) : null);
}
function chart(title, legend, draw) {
  const canvas = el("canvas");
  const box = el("div", { class: "chart" }, el("h3", { text: title }),
                 el("div", { class: "legend" },
                    legend.map(([name, color]) => el("span", {}, el("i", { style: "background:" + color }), name))),
                 canvas);
  requestAnimationFrame(() => draw(canvas));
  return box;
}

// --- pages ------------------------------------------------------------------------------------

function overviewPage(o) {
  const pts = o.series.points;
  const xLabels = pts.length
      ? [fmtTime(pts[0].t * 1000), fmtTime(pts[pts.length - 1].t * 1000)] : ["", ""];
  const priorities = o.queue.by_priority.map(p =>
      el("tr", { "data-priority": p.priority }, el("td", { text: p.priority }),
         el("td", { class: "num", text: fmtNumber(p.queued) })));
  const tenants = (o.queue.by_tenant || []).map(t =>
      el("tr", { "data-tenant": t.tenant }, el("td", { text: t.tenant }),
         el("td", { class: "num", text: fmtNumber(t.queued) }),
         el("td", { class: "num", text: fmtNumber(t.running) }),
         el("td", { class: "num", text: fmtNumber(t.completed) }),
         el("td", { class: "num", text: fmtNumber(t.failed) })));
  const errors = o.errors.map(e =>
      el("tr", { "data-variant": e.variant, "data-code": e.code },
         el("td", { text: e.variant }), el("td", { class: "num", text: e.code }),
         el("td", { class: "num", text: fmtNumber(e.count) })));
  return [
    el("h2", { text: "Throughput (last " + o.rates.window_s + " s) and totals" }),
    el("div", { class: "cards" },
       card("accepted / s", fmtNumber(o.rates.accepted_per_s, 1), fmtNumber(o.totals.accepted) + " accepted", "card-accepted"),
       card("completed / s", fmtNumber(o.rates.completed_per_s, 1), fmtNumber(o.totals.completed) + " completed (RESULT)", "card-completed"),
       card("failed / s", fmtNumber(o.rates.failed_per_s, 1), fmtNumber(o.totals.failed) + " failed (ERROR)", "card-failed"),
       card("latency p50", fmtMs(o.latency.p50_ms), "acceptance → answer, last " + o.latency.window_s / 60 + " min", "card-p50"),
       card("latency p99", fmtMs(o.latency.p99_ms), fmtNumber(o.latency.jobs) + " jobs in the window", "card-p99"),
       card("queued", fmtNumber(o.queue.queued), fmtNumber(o.queue.held) + " held, " + fmtNumber(o.queue.waiting_retry) + " waiting for a retry", "card-queued"),
       card("running", fmtNumber(o.queue.running), fmtNumber(o.workers.slots_free) + " slots free", "card-running"),
       card("workers", fmtNumber(o.workers.connected), o.journal ? "journal on" : "no journal", "card-workers")),
    el("div", { class: "charts" },
       chart("Jobs per second", [["accepted", "#2f6fde"], ["completed", "#1a8f4c"], ["failed", "#c2332f"]],
             c => lineChart(c, [
               { color: "#2f6fde", values: pts.map(p => p.accepted) },
               { color: "#1a8f4c", values: pts.map(p => p.completed) },
               { color: "#c2332f", values: pts.map(p => p.failed) }], { xLabels })),
       chart("End-to-end latency per second", [["p50", "#2f6fde"], ["p99", "#b7791f"]],
             c => lineChart(c, [
               { color: "#2f6fde", values: pts.map(p => p.p50_ms) },
               { color: "#b7791f", values: pts.map(p => p.p99_ms) }], { xLabels, format: v => v ? fmtMs(v) : "0" }))),
    el("div", { class: "two" },
       el("div", {}, el("h2", { text: "Queue depth by priority" }),
          table(["priority", { label: "queued", num: true }], priorities, "priority-table", "nothing queued")),
       el("div", {}, el("h2", { text: "Errors by variant" }),
          table(["variant", { label: "code", num: true }, { label: "jobs", num: true }], errors, "errors-table", "no errors"))),
    el("h2", { text: "Tenants" }),
    table(["tenant", { label: "queued", num: true }, { label: "running", num: true },
           { label: "completed", num: true }, { label: "failed", num: true }],
          tenants, "tenants-table", "no jobs yet"),
  ];
}

// A worker's warm pools as "template ready/target", one per pool.
function fmtPools(pools) {
  if (pools === null) return "not reported";
  if (!pools.length) return "none";
  return pools.map(p => p.template + " " + p.ready + "/" + p.target).join(", ");
}

function fmtCapacity(c) {
  if (!c) return "–";
  const part = (used, cap) => fmtNumber(used) + " / " + (cap === null ? "any" : fmtNumber(cap));
  return part(c.used_vcpus, c.vcpus) + ", " + part(c.used_mem_mib, c.mem_mib);
}

function workersPage(w) {
  const rows = w.workers.map(x => {
    const total = x.slots.total;
    const pct = total ? Math.round((100 * x.slots.busy) / total) : 0;
    return el("tr", { "data-worker": x.worker_id },
      el("td", { text: x.worker_id }),
      el("td", { text: x.hostname || "–" }),
      el("td", { text: x.host || "–" }),
      el("td", { text: backendName(x.backend) }),
      el("td", { text: x.images.join(", ") }),
      el("td", {}, el("span", { class: "bar" }, el("i", { style: "width:" + pct + "%" })),
         x.slots.busy + " / " + total),
      el("td", { text: fmtCapacity(x.capacity) }),
      el("td", { class: "num", text: fmtNumber(x.jobs_answered) }),
      el("td", { text: fmtAgo(x.last_heard_ms_ago) }),
      el("td", { text: x.draining ? "draining" : "ready" }),
      el("td", { class: x.warm_pools === null ? "empty" : "", text: fmtPools(x.warm_pools) }));
  });
  return [
    el("h2", { text: "Workers (" + w.workers.length + ")" }),
    table(["worker", "host name", "peer address", "backend", "images", "slots busy / total", "vCPUs, MiB used / capacity", { label: "jobs answered", num: true },
           "last heard", "state", "warm pools (ready/target)"], rows, "workers-table", "no worker connected"),
  ];
}

function jobRow(j) {
  return el("tr", { "data-job": j.job_id, "data-status": j.status },
    el("td", {}, jobLink(j)),
    el("td", {}, badge(j.status)),
    el("td", { text: j.image }),
    el("td", { text: outcomeText(j), testid: "job-outcome" }),
    el("td", { text: j.worker_id || "–" }),
    el("td", { class: "num", text: j.attempts }),
    el("td", { text: j.warm === null ? "–" : j.warm ? "warm" : "cold" }),
    el("td", { class: "num", text: fmtMs(j.timings ? j.timings.exec_ms : null) }),
    el("td", { class: "num", text: fmtMs(j.latency_ms) }),
    el("td", { text: fmtTime(j.finished_unix_ms || j.accepted_unix_ms) }),
    el("td", { text: j.tenant || "–", testid: "job-tenant" }));
}

function jobsPage(d) {
  const select = el("select", { testid: "status-filter", onchange: e => { jobsFilter = e.target.value; refresh(); } },
    [["", "all"], ["ok", "ok"], ["exit_nonzero", "exit ≠ 0"], ["error", "error"]].map(([v, label]) => {
      const o = el("option", { value: v, text: label });
      if (v === jobsFilter) o.selected = true;
      return o;
    }));
  const headers = ["job", "status", "image", "exit / error", "worker", { label: "attempts", num: true },
                   "start", { label: "exec", num: true }, { label: "end to end", num: true }, "time",
                   "tenant"];
  return [
    el("h2", { text: "Running (" + d.running_total + ")" }),
    table(headers, d.running.map(jobRow), "running-table", "nothing running"),
    el("h2", { text: "Recent jobs (" + d.held + " kept of the last " + d.capacity + " finished)" }),
    el("div", { class: "filters" }, "status ", select),
    table(headers, d.jobs.map(jobRow), "jobs-table", "no finished job"),
  ];
}

function kv(pairs, testid) {
  return el("dl", { class: "kv", testid },
            pairs.filter(p => p).map(([k, v, id]) => [el("dt", { text: k }), el("dd", { text: v, testid: id })]));
}

function jobPage(j) {
  const q = j.request;
  const parts = [
    el("h2", {}, "Job ", el("span", { text: j.job_id, testid: "job-id" }), " ", badge(j.status)),
    kv([["status", j.status, "job-status"],
        ["tenant", j.tenant || "–", "job-tenant"],
        ["image", q.image],
        q.steps && q.steps.length ? ["steps", q.steps.length + " (below)", "job-steps-count"]
          : ["argv", q.argv.join(" ") + (q.argv_truncated ? " …" : "")],
        ["priority", String(q.priority)],
        ["vcpus / memory", q.vcpus + " / " + q.mem_mib + " MiB"],
        ["timeout", q.timeout_ms + " ms"],
        q.env_names.length ? ["env (names)", q.env_names.join(", ")] : null,
        ["stdin / files in / files out", q.stdin_bytes + " B / " + q.files_in + " / " + q.files_out],
        q.egress_rules ? ["egress rules", String(q.egress_rules)] : null,
        Object.keys(q.tags).length ? ["tags", Object.entries(q.tags).map(([k, v]) => k + "=" + v).join(", ")] : null,
        ["accepted", fmtTime(j.accepted_unix_ms)],
        ["finished", fmtTime(j.finished_unix_ms)],
        ["end to end", fmtMs(j.latency_ms)],
        ["found in", j.source + (j.recovered ? " (recovered from the journal at a restart)" : "")]], "job-summary"),
  ];
  if (j.result) {
    const r = j.result;
    parts.push(el("h2", { text: "Result" }),
      kv([["exit code", String(r.exit_code), "job-exit-code"],
          r.signal ? ["signal", String(r.signal)] : null,
          r.timed_out ? ["timed out", "yes"] : null,
          r.oom_killed ? ["killed for memory", "yes"] : null,
          ["worker", r.worker_id + " (attempt " + r.attempt + ")"],
          ["backend", backendName(r.backend)],
          ["start", (r.warm ? "warm" : "cold") + (r.template ? ", from " + r.template : "")],
          ["timings", ["queued " + fmtMs(r.timings.queued_ms), "start " + fmtMs(r.timings.start_ms),
                       "exec " + fmtMs(r.timings.exec_ms), "teardown " + fmtMs(r.timings.teardown_ms),
                       "total " + fmtMs(r.timings.total_ms)].join(", ")]], "job-result"),
      el("h2", { text: "stdout (" + r.stdout_bytes + " B" + (r.stdout_bytes > r.stdout_head.length ? ", first " + r.stdout_head.length + " shown" : "") + ")" }),
      el("pre", { text: r.stdout_head, testid: "job-stdout" }),
      r.stderr_bytes ? el("h2", { text: "stderr (" + r.stderr_bytes + " B)" }) : null,
      r.stderr_bytes ? el("pre", { text: r.stderr_head, testid: "job-stderr" }) : null);
  }
  if (q.steps && q.steps.length) {
    // One row per step asked for; those after a failed one (stop_on_failure) did not run.
    const ran = j.result ? j.result.steps : [];
    const outcome = s => s.timed_out ? "timed out" : s.oom_killed ? "killed for memory"
      : s.signal ? "signal " + s.signal : "exit " + s.exit_code;
    const head = (text, more) => text + (more ? " …" : "");
    parts.push(el("h2", { text: "Steps" }),
      table(["step", "command", "outcome", "time", "stdout", "stderr"], q.steps.map((cmd, i) => {
        const s = ran[i];
        return el("tr", {}, el("td", { text: String(i + 1) }), el("td", { text: cmd }),
          el("td", { text: s ? outcome(s) : (j.result ? "not run" : "–") }),
          el("td", { text: s ? fmtMs(s.exec_ms) : "" }),
          el("td", {}, el("pre", { text: s ? head(s.stdout_head, s.stdout_more) : "" })),
          el("td", {}, el("pre", { text: s ? head(s.stderr_head, s.stderr_more) : "" })));
      }), "steps-table", "no steps"));
  }
  if (j.error) {
    const e = j.error;
    parts.push(el("h2", { text: "Error" }),
      kv([["variant", e.variant, "job-error-variant"],
          ["code", String(e.code), "job-error-code"],
          ["message", e.message, "job-error-message"],
          ["retryable", e.retryable ? "yes" : "no"],
          e.worker_id ? ["worker", e.worker_id] : null,
          e.vm_id ? ["vm", e.vm_id] : null,
          e.snapshot_id ? ["snapshot", e.snapshot_id] : null,
          e.from ? ["transition", e.from + " → " + e.to] : null], "job-error"));
  }
  parts.push(el("h2", { text: "Attempts" }),
    table(["attempt", "worker", "dispatched", "outcome"], j.attempts.map(a =>
      el("tr", {}, el("td", { text: a.attempt }), el("td", { text: a.worker_id }),
         el("td", { text: fmtTime(a.dispatched_unix_ms) }),
         el("td", { text: a.outcome + (a.detail ? ": " + a.detail : "") }))),
      "attempts-table", j.source === "journal" ? "not kept in the journal" : "never dispatched"));
  return parts;
}

// --- routing and polling ----------------------------------------------------------------------

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  if (h.startsWith("jobs/")) return { page: "job", id: decodeURIComponent(h.slice(5)) };
  if (h === "workers" || h === "jobs") return { page: h };
  return { page: "overview" };
}

const pages = {
  overview: () => api("/api/v1/overview").then(overviewPage),
  workers: () => api("/api/v1/workers").then(workersPage),
  jobs: () => api("/api/v1/jobs?limit=200" + (jobsFilter ? "&status=" + encodeURIComponent(jobsFilter) : "")).then(jobsPage),
};

async function refresh() {
  clearTimeout(pollTimer);
  const mine = generation;
  const r = route();
  document.querySelectorAll("nav a").forEach(a =>
    a.classList.toggle("active", a.dataset.page === r.page || (r.page === "job" && a.dataset.page === "jobs")));
  try {
    const content = r.page === "job"
        ? await api("/api/v1/jobs/" + encodeURIComponent(r.id)).then(jobPage)
        : await pages[r.page]();
    if (mine !== generation) return;
    main.replaceChildren(...content.flat(Infinity).filter(c => c !== null && c !== undefined));
    main.dataset.page = r.page;
    statusLine.textContent = "updated " + fmtTime(Date.now());
    statusLine.classList.remove("error");
  } catch (e) {
    if (mine !== generation) return;
    if (r.page === "job" && e.status === 404) {
      main.replaceChildren(el("h2", { text: "Job not found" }),
                           el("p", { class: "error-text", text: e.message, testid: "job-not-found" }));
      main.dataset.page = r.page;
    } else if (e.status === 401) {
      main.replaceChildren(el("p", { class: "error-text", text: e.message }));
    }
    statusLine.textContent = "update failed" + (e.status ? " (HTTP " + e.status + ")" : ": " + e.message);
    statusLine.classList.add("error");
  }
  pollTimer = setTimeout(refresh, POLL_MS);
}

window.addEventListener("hashchange", () => {
  generation++;
  refresh();
});
document.getElementById("find-job").addEventListener("submit", e => {
  e.preventDefault();
  const id = document.getElementById("find-job-id").value.trim();
  if (id) location.hash = "#/jobs/" + encodeURIComponent(id);
});
refresh();
