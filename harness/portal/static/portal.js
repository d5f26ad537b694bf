// swarmtwin portal: the live run view, the history, the reports and a live coordinator.
//
// Everything comes from the portal's own API (/api, schema at /openapi.json) and
// its live WebSocket (/ws/live). Charts are uPlot. Each frame the server pushes
// carries its wall-clock stamp; once the page has drawn a frame's points it
// records now - stamp (push-to-render latency), shows the p95 in the header and
// reports it to the server (POST /api/render-stats) every few seconds.
"use strict";

const $ = (id) => document.getElementById(id);
const token = (() => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("swarmtwin-token", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  return (
    sessionStorage.getItem("swarmtwin-token") ||
    document.querySelector('meta[name="swarmtwin-token"]').content ||
    ""
  );
})();

const HEADLINE = [
  ["p50_ms", "latency p50", "ms"],
  ["p95_ms", "latency p95", "ms"],
  ["p99_ms", "latency p99", "ms"],
  ["deliveries_per_s", "deliveries", "msg/s"],
  ["ops_per_s", "operations completed", "ops/s"],
  ["reliability", "reliability", "%"],
  ["shed", "shed", "ops"],
  ["lost", "not delivered by end", "msgs"],
  ["duplicates", "duplicates", "msgs"],
  ["uptime", "uptime", "%"],
  ["agents_coordinated", "agents coordinated", "agents"],
];
const PERCENT = new Set(["reliability", "uptime", "data_integrity"]);

const state = {
  job: null, // the job this page follows
  labels: [],
  tables: {}, // label -> {t, thr, p50, p95, p99, rel, up, agents, shed}: one entry per point
  charts: {},
  faults: [],
  recoveries: [], // measured at the end: {label, at, recovery_s, kind, status}
  seq: 0,
  renders: [],
  dirty: false,
  pendingStamps: [],
};

function banner(text) {
  const el = $("banner");
  el.textContent = text;
  el.hidden = !text;
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (options.method && options.method !== "GET" && token) {
    headers.Authorization = `Bearer ${token}`;
  }
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function fmt(value, unit) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string") return value === "inf" ? "∞" : value;
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (unit === "%") return `${(value * 100).toFixed(3)} %`;
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en-US");
  return Number(value.toPrecision(4)).toString();
}

// --- tabs ----------------------------------------------------------------------------

const TABS = ["live", "history", "reports", "system"];
function showTab() {
  const wanted = location.hash.slice(1);
  const tab = TABS.includes(wanted) ? wanted : "live";
  for (const name of TABS) $(`tab-${name}`).hidden = name !== tab;
  for (const a of document.querySelectorAll(".tab")) {
    a.classList.toggle("active", a.dataset.tab === tab);
  }
  if (tab === "history") loadHistory();
  if (tab === "system") {
    loadSystem();
    loadLists();
  }
  if (tab === "reports") loadReports();
}
window.addEventListener("hashchange", showTab);

// --- scenarios and the start form ----------------------------------------------------------

let scenarios = [];
async function loadScenarios() {
  scenarios = await api("/api/scenarios");
  const select = $("scenario");
  select.innerHTML = "";
  for (const s of scenarios) {
    const option = document.createElement("option");
    option.value = s.name;
    option.textContent = s.name;
    select.appendChild(option);
  }
  select.value = scenarios.some((s) => s.name === "smoke") ? "smoke" : select.value;
  describeScenario();
}

function describeScenario() {
  const s = scenarios.find((x) => x.name === $("scenario").value);
  $("scenario-about").textContent = s
    ? `${s.description} ${s.agents} agents, ${s.duration} s, ${s.transport}, backends ${s.backends.join(" and ")}` +
      (s.faults ? `, ${s.faults} fault(s)` : "")
    : "";
}
$("scenario").addEventListener("change", describeScenario);

$("start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { scenario: $("scenario").value };
  for (const key of ["backend", "transport"]) {
    if ($(key).value) body[key] = $(key).value;
  }
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("duration").value !== "") body.duration = Number($("duration").value);
  try {
    banner("");
    const job = await api("/api/jobs", { method: "POST", body: JSON.stringify(body) });
    follow(job);
  } catch (error) {
    banner(`cannot start: ${error.message}`);
  }
});

$("stop-button").addEventListener("click", async () => {
  if (!state.job) return;
  try {
    await api(`/api/jobs/${state.job.job_id}/stop`, { method: "POST" });
  } catch (error) {
    banner(`cannot stop: ${error.message}`);
  }
});

// --- following a job ----------------------------------------------------------------

function follow(job) {
  state.job = job;
  state.labels = [];
  state.tables = {};
  state.faults = [];
  state.recoveries = [];
  $("now").innerHTML = "";
  $("recoveries").hidden = true;
  for (const chart of Object.values(state.charts)) chart.destroy();
  state.charts = {};
  $("job").hidden = false;
  $("final").hidden = true;
  $("progress").innerHTML = "";
  const kind = job.request.kind && job.request.kind !== "run" ? `${job.request.kind} ` : "";
  $("job-title").textContent = `${kind}${job.request.scenario} (job ${job.job_id})`;
  $("job-log").hidden = true;
  $("job-log").textContent = "";
  for (const line of job.log || []) logLine(line);
  setJobState(job.state, job.error);
  if (job.info && job.info.labels) started(job.info);
  for (const [label, fraction] of Object.entries(job.progress || {})) progress(label, fraction);
  for (const point of job.points || []) addPoint(point);
  redraw();
  if (job.result) finished(job);
}

function setJobState(value, error) {
  state.job.state = value;
  const el = $("job-state");
  el.dataset.state = value;
  el.textContent = value + (error ? `: ${error}` : "");
  const running = value === "running" || value === "starting";
  $("stop-button").disabled = !running;
  $("start-button").disabled = running;
}

function started(info) {
  state.job.info = info;
  if (state.job.state === "starting") setJobState("running");
  state.labels = info.labels;
  state.faults = info.faults || [];
  for (const label of info.labels) {
    state.tables[label] = {
      t: [], thr: [], p50: [], p95: [], p99: [], rel: [], up: [], agents: [], shed: [], last: null,
    };
    progressRow(label);
  }
  $("charts").hidden = !info.labels.length; // certify and regress: progress and log only
  if (info.labels.length) makeCharts();
}

function progressRow(label) {
  const row = document.createElement("div");
  row.className = "bar";
  row.dataset.label = label;
  row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct">0 %</span>`;
  row.querySelector(".name").textContent = label;
  $("progress").appendChild(row);
  return row;
}

function logLine(line) {
  const el = $("job-log");
  el.hidden = false;
  const lines = (el.textContent ? el.textContent.split("\n") : []).concat([line]);
  el.textContent = lines.slice(-30).join("\n");
}

function progress(label, fraction) {
  const row =
    $("progress").querySelector(`.bar[data-label="${CSS.escape(label)}"]`) || progressRow(label);
  row.querySelector(".fill").style.width = `${(fraction * 100).toFixed(1)}%`;
  row.querySelector(".pct").textContent = `${Math.round(fraction * 100)} %`;
}

function addPoint(p) {
  const table = state.tables[p.label];
  if (!table) return;
  table.t.push(p.t);
  table.thr.push(p.deliveries_per_s);
  table.p50.push(p.p50_ms);
  table.p95.push(p.p95_ms);
  table.p99.push(p.p99_ms);
  const pct = (v) => (v === null || v === undefined ? null : v * 100);
  table.rel.push(pct(p.reliability));
  table.up.push(pct(p.uptime));
  table.agents.push(p.agents);
  table.shed.push(p.shed_per_s);
  table.last = p;
  state.dirty = true;
}

// --- charts -------------------------------------------------------------------------------

// real runs blue, the model's replications orange and dashed; p50 light to p99 dark
const COLORS = { real: ["#9ecae1", "#3182bd", "#08519c"], sim: ["#fdae6b", "#e6550d", "#a63603"] };
const PCTS = ["p50", "p95", "p99"];

function faultShading(u) {
  const ctx = u.ctx;
  ctx.save();
  ctx.fillStyle = "rgba(214, 39, 40, 0.10)";
  for (const f of state.faults) {
    const from = u.valToPos(f.at, "x", true);
    const to = u.valToPos(f.at + (f.duration || 0.2), "x", true);
    ctx.fillRect(from, u.bbox.top, Math.max(to - from, 2), u.bbox.height);
  }
  // measured recovery (at the end of the run): a bar from injection to back in band
  const labels = [...new Set(state.recoveries.map((r) => r.label))];
  const thick = 4 * devicePixelRatio;
  for (const r of state.recoveries) {
    if (r.recovery_s === null) continue;
    const from = u.valToPos(r.at, "x", true);
    const to = u.valToPos(r.at + r.recovery_s, "x", true);
    const row = labels.indexOf(r.label);
    ctx.fillStyle = COLORS[r.label.startsWith("sim") ? "sim" : "real"][1];
    ctx.fillRect(from, u.bbox.top + row * (thick + 2), Math.max(to - from, 2), thick);
  }
  ctx.restore();
}

function makeCharts() {
  const width = Math.max(320, Math.min(720, $("job").clientWidth / 2 - 24));
  const base = (title, yLabel, series) => ({
    width,
    height: 260,
    scales: { x: { time: false } },
    axes: [{ label: "run time (s)" }, { label: yLabel, size: 60 }],
    series: [{ label: "t" }, ...series],
    hooks: { draw: [faultShading] },
  });
  const style = (label, pct) => {
    const model = label.startsWith("sim");
    const shades = COLORS[model ? "sim" : "real"];
    const color = pct ? shades[PCTS.indexOf(pct)] : shades[1];
    return {
      label: pct ? `${label} ${pct}` : label,
      stroke: color,
      width: 1.5,
      dash: model ? [6, 4] : undefined,
      spanGaps: true,
    };
  };
  const thr = state.labels.map((label) => style(label));
  const lat = [];
  for (const label of state.labels) for (const pct of PCTS) lat.push(style(label, pct));
  state.charts.throughput = new uPlot(base("throughput", "deliveries/s", thr), [[]], $("chart-throughput"));
  state.charts.latency = new uPlot(base("latency", "ms", lat), [[]], $("chart-latency"));
  const health = [];
  for (const label of state.labels) {
    health.push({ ...style(label), label: `${label} reliability` });
    health.push({ ...style(label, "p99"), label: `${label} uptime`, width: 1 });
  }
  const healthOpts = base("health", "%", health);
  healthOpts.scales.y = { range: (u, lo, hi) => [Math.min(lo ?? 100, 90), 100.5] };
  state.charts.health = new uPlot(healthOpts, [[]], $("chart-health"));
  const agents = [];
  for (const label of state.labels) {
    agents.push({ ...style(label), label: `${label} agents` });
    agents.push({ ...style(label, "p50"), label: `${label} shed/s`, scale: "shed" });
  }
  const agentOpts = base("agents", "agents", agents);
  agentOpts.scales.y = { range: (u, lo, hi) => [0, Math.max(hi ?? 1, 1) * 1.05] };
  agentOpts.axes.push({ scale: "shed", side: 1, label: "shed ops/s", size: 60, grid: { show: false } });
  state.charts.agents = new uPlot(agentOpts, [[]], $("chart-agents"));
}

function nowTable() {
  const table = $("now");
  table.innerHTML = "";
  const head = table.insertRow();
  const names = ["now", "run time s", "deliveries/s", "p95 ms", "reliability so far", "uptime so far", "shed ops/s", "agents active"];
  for (const h of names) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  for (const label of state.labels) {
    const p = state.tables[label].last;
    if (!p) continue;
    const row = table.insertRow();
    row.dataset.label = label;
    const cells = [
      label, fmt(p.t), fmt(p.deliveries_per_s), fmt(p.p95_ms), fmt(p.reliability, "%"),
      fmt(p.uptime, "%"), fmt(p.shed_per_s), fmt(p.agents),
    ];
    for (const text of cells) row.insertCell().textContent = text;
  }
}

function redraw() {
  if (!state.dirty || !state.charts.throughput) return;
  state.dirty = false;
  const thr = state.labels.map((l) => [state.tables[l].t, state.tables[l].thr]);
  const lat = state.labels.map((l) => {
    const t = state.tables[l];
    return [t.t, t.p50, t.p95, t.p99];
  });
  state.charts.throughput.setData(uPlot.join(thr));
  state.charts.latency.setData(uPlot.join(lat));
  const health = state.labels.map((l) => [state.tables[l].t, state.tables[l].rel, state.tables[l].up]);
  state.charts.health.setData(uPlot.join(health));
  const agents = state.labels.map((l) => [state.tables[l].t, state.tables[l].agents, state.tables[l].shed]);
  state.charts.agents.setData(uPlot.join(agents));
  nowTable();
}

// --- the end of a run -----------------------------------------------------------------------

async function finished(job) {
  const result = job.result;
  if (!result) return;
  $("final").hidden = false;
  $("cli-table").textContent = result.table || "";
  if (!result.run_id) {
    // certify or regress: the verdict, the CLI's table and a link to the report
    $("final").querySelector("details").open = true;
    $("figures").innerHTML = "";
    const link = $("final-link");
    link.textContent = `${result.report.kind} ${result.report.id}`;
    link.href = "#reports";
    link.onclick = null;
    notes($("final-notes"), {}, result.warnings || []);
    const verdict = document.createElement("li");
    verdict.className = "verdict";
    verdict.textContent = result.verdict || (result.regressed ? "REGRESSED" : "no regression");
    $("final-notes").prepend(verdict);
    return;
  }
  const link = $("final-link");
  link.textContent = result.run_id;
  link.href = `#history`;
  link.onclick = () => setTimeout(() => openRun(result.run_id), 0);
  try {
    const run = await api(`/api/runs/${encodeURIComponent(result.run_id)}`);
    figuresTable($("figures"), run);
    notes($("final-notes"), run, result.warnings || []);
    recoveries(run);
  } catch (error) {
    banner(`cannot read the run's summary: ${error.message}`);
  }
}

function figuresTable(table, run) {
  const backends = Object.keys(run.figures || {});
  table.innerHTML = "";
  const head = table.insertRow();
  for (const h of ["figure", "unit", ...backends.map((b) => (b === "sim" ? "model (sim)" : b))]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  for (const [key, name, unit] of HEADLINE) {
    const row = table.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = unit;
    for (const backend of backends) {
      const cell = row.insertCell();
      const value = run.figures[backend][key];
      cell.dataset.figure = key;
      cell.dataset.backend = backend;
      cell.dataset.value = value === null || value === undefined ? "" : String(value);
      cell.textContent = fmt(value, PERCENT.has(key) ? "%" : unit);
    }
  }
}

// each run's measured fault recovery (summary.json), drawn on the charts and tabled
function recoveries(run) {
  state.recoveries = [];
  for (const [backend, data] of Object.entries((run.summary || {}).backends || {})) {
    const runs = data.repetitions ? data.repetitions : [data];
    runs.forEach((r, i) => {
      const label = runs.length > 1 ? `${backend} #${i + 1}` : backend;
      for (const f of ((r.faults || {}).faults || [])) {
        state.recoveries.push({ label, at: f.at, recovery_s: f.recovery_s, kind: f.kind, status: f.status });
      }
    });
  }
  const table = $("recoveries");
  table.innerHTML = "";
  table.hidden = !state.recoveries.length;
  if (state.recoveries.length) {
    const head = table.insertRow();
    for (const h of ["fault", "run", "injected at s", "recovery s", "status"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.appendChild(th);
    }
    for (const r of state.recoveries) {
      const row = table.insertRow();
      for (const text of [r.kind, r.label, fmt(r.at), fmt(r.recovery_s), r.status]) {
        row.insertCell().textContent = text;
      }
    }
  }
  for (const chart of Object.values(state.charts)) chart.redraw(false, false);
}

function notes(list, run, warnings) {
  list.innerHTML = "";
  const add = (text) => {
    const li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
  };
  for (const w of warnings) add(`warning: ${w}`);
  const summary = run.summary || {};
  for (const [backend, data] of Object.entries(summary.backends || {})) {
    const runs = data.repetitions ? data.repetitions : [data];
    const seen = new Set();
    for (const r of runs) for (const n of r.notes || []) {
      if (!seen.has(n)) { seen.add(n); add(`${backend}: ${n}`); }
    }
  }
}

// --- the live socket ------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/live`);
  socket.onopen = () => {
    $("connection").dataset.state = "open";
    $("connection").textContent = "live";
  };
  socket.onclose = () => {
    $("connection").dataset.state = "closed";
    $("connection").textContent = "reconnecting";
    setTimeout(connect, 1000);
  };
  socket.onmessage = (message) => onFrame(JSON.parse(message.data));
}

async function resync() {
  if (!state.job) return;
  const job = await api(`/api/jobs/${state.job.job_id}?points=true`);
  follow(job);
}

function onFrame(frame) {
  const gap = state.seq && frame.seq !== state.seq + 1;
  state.seq = frame.seq;
  let drew = false;
  for (const event of frame.events) {
    if (!state.job || event.job !== state.job.job_id) {
      if (event.type === "state" && event.state === "starting" && (!state.job || state.job.state !== "running")) {
        api(`/api/jobs/${event.job}?points=true`).then(follow).catch(() => {});
      }
      continue;
    }
    switch (event.type) {
      case "started":
        started(event);
        break;
      case "progress":
        progress(event.label, Math.min(Math.max(event.fraction, 0), 1));
        break;
      case "point":
        addPoint(event);
        drew = true;
        break;
      case "done":
        state.job.result = event;
        break;
      case "state":
        setJobState(event.state, event.error);
        if (event.state !== "running" && state.job.result) finished(state.job);
        break;
      case "error":
        banner(event.message);
        break;
      case "log":
        logLine(event.line);
        break;
    }
  }
  if (gap) {
    resync();
    return;
  }
  if (drew) {
    redraw();
    const stamp = frame.stamp_ms;
    // uPlot draws on setData; the frame that paints it starts at the next animation frame
    requestAnimationFrame(() => recordRender(Date.now() - stamp));
  }
}

// --- push-to-render latency ---------------------------------------------------------------

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function renderStats() {
  const sorted = [...state.renders].sort((a, b) => a - b);
  return {
    frames: sorted.length,
    p50_ms: quantile(sorted, 0.5),
    p95_ms: quantile(sorted, 0.95),
    max_ms: sorted.length ? sorted[sorted.length - 1] : null,
  };
}

function recordRender(ms) {
  state.renders.push(Math.max(0, ms));
  if (state.renders.length > 5000) state.renders.shift();
  const stats = renderStats();
  const el = $("render");
  el.textContent = `render p95 ${stats.p95_ms.toFixed(1)} ms (${stats.frames} frames)`;
  el.dataset.p95 = String(stats.p95_ms);
  el.dataset.frames = String(stats.frames);
}
window.swarmtwinRenderStats = renderStats;

setInterval(() => {
  if (state.renders.length && token) {
    api("/api/render-stats", { method: "POST", body: JSON.stringify(renderStats()) }).catch(() => {});
  }
}, 3000);

// --- history ---------------------------------------------------------------------------------

async function loadHistory() {
  const params = new URLSearchParams({ limit: "100" });
  if ($("filter-scenario").value) params.set("scenario", $("filter-scenario").value);
  if ($("filter-backend").value) params.set("backend", $("filter-backend").value);
  if ($("filter-since").value) params.set("since", $("filter-since").value);
  let rows;
  try {
    rows = await api(`/api/runs?${params}`);
  } catch (error) {
    banner(`cannot read the history: ${error.message}`);
    return;
  }
  const table = $("history");
  table.innerHTML = "";
  const cols = [
    ["created", "created"], ["scenario", "scenario"], ["backend", "backend"], ["transport", "transport"],
    ["p95_ms", "p95 ms"], ["deliveries_per_s", "deliveries/s"], ["reliability", "reliability"],
  ];
  cellsRow(table, ["", ...cols.map(([, h]) => h)], true);
  for (const row of rows) {
    const tr = table.insertRow();
    tr.className = "run";
    tr.dataset.run = row.run_id;
    const tick = document.createElement("input");
    tick.type = "checkbox";
    tick.className = "pick";
    tick.value = row.run_id;
    tick.onclick = (event) => {
      event.stopPropagation();
      const picked = new Set([...document.querySelectorAll(".pick:checked")].map((x) => x.value));
      $("compare-button").disabled = picked.size !== 2;
    };
    tr.insertCell().appendChild(tick);
    for (const [key] of cols) {
      tr.insertCell().textContent = key === "reliability" ? fmt(row[key], "%") : fmt(row[key]);
    }
    tr.onclick = () => openRun(row.run_id);
  }
}

$("compare-button").addEventListener("click", async () => {
  const picked = [...new Set([...document.querySelectorAll(".pick:checked")].map((x) => x.value))];
  if (picked.length !== 2) return;
  const [a, b] = picked.sort();
  let found;
  try {
    found = await api(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  } catch (error) {
    banner(`cannot compare: ${error.message}`);
    return;
  }
  $("compare-view").hidden = false;
  $("compare-title").textContent = `${a} → ${b}`;
  const table = $("compare");
  table.innerHTML = "";
  cellsRow(table, ["backend", "figure", a, b, "change"], true);
  for (const row of found.rows) {
    const unit = PERCENT.has(row.figure) ? "%" : "";
    const change = row.change_pct === null ? "—" : `${row.change_pct >= 0 ? "+" : ""}${row.change_pct.toFixed(1)} %`;
    const tr = cellsRow(table, [row.backend, row.figure, fmt(row.a, unit), fmt(row.b, unit), change]);
    tr.dataset.figure = row.figure;
  }
});

// --- reports ----------------------------------------------------------------------------------

async function loadSuites() {
  const suites = await api("/api/suites");
  for (const [id, names] of [["certify-suite", suites.certify], ["regress-baseline", suites.regress]]) {
    const select = $(id);
    select.innerHTML = "";
    for (const name of names) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      select.appendChild(option);
    }
  }
  if (suites.certify.includes("certification/quick/suite")) $("certify-suite").value = "certification/quick/suite";
}

async function startJob(body) {
  try {
    banner("");
    const job = await api("/api/jobs", { method: "POST", body: JSON.stringify(body) });
    location.hash = "#live";
    follow(job);
  } catch (error) {
    banner(`cannot start: ${error.message}`);
  }
}

for (const [form, kind, select, reps] of [
  ["certify-form", "certify", "certify-suite", "certify-reps"],
  ["regress-form", "regress", "regress-baseline", "regress-reps"],
]) {
  $(form).addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { kind, scenario: $(select).value };
    if ($(reps).value) body.repetitions = Number($(reps).value);
    startJob(body);
  });
}

async function loadReports() {
  loadSuites().catch((error) => banner(error.message));
  let reports;
  try {
    reports = await api("/api/reports");
  } catch (error) {
    banner(`cannot list the reports: ${error.message}`);
    return;
  }
  const table = $("reports");
  table.innerHTML = "";
  cellsRow(table, ["kind", "report", "files"], true);
  for (const report of reports) {
    const tr = cellsRow(table, [report.kind, report.id, ""]);
    tr.className = "run";
    const files = tr.cells[2];
    for (const name of report.files) {
      const a = document.createElement("a");
      a.href = reportFile(report, name);
      a.textContent = name;
      a.target = "_blank";
      files.appendChild(a);
      files.appendChild(document.createTextNode(" "));
    }
    tr.onclick = () => openReport(report);
  }
}

function reportFile(report, name) {
  return `/api/reports/${report.kind}/${encodeURIComponent(report.id)}/files/${encodeURIComponent(name)}`;
}

function openReport(report) {
  const view = $("report-view");
  view.innerHTML = "";
  const title = document.createElement("h2");
  title.textContent = `${report.kind} ${report.id}`;
  view.appendChild(title);
  for (const name of report.files.filter((f) => f.endsWith(".png"))) {
    const img = document.createElement("img");
    img.src = reportFile(report, name);
    img.alt = name;
    img.style.maxWidth = "100%";
    view.appendChild(img);
  }
}
$("filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadHistory();
});

async function openRun(runId) {
  const run = await api(`/api/runs/${encodeURIComponent(runId)}`);
  $("run-view").hidden = false;
  $("run-title").textContent = runId;
  figuresTable($("run-figures"), run);
  notes($("run-notes"), run, []);
  const plots = $("run-plots");
  plots.innerHTML = "";
  for (const name of run.files.filter((f) => f.endsWith(".png"))) {
    const img = document.createElement("img");
    img.src = `/api/runs/${encodeURIComponent(runId)}/files/${encodeURIComponent(name)}`;
    img.alt = name;
    plots.appendChild(img);
  }
  const files = $("run-files");
  files.innerHTML = "files: ";
  for (const name of run.files) {
    const a = document.createElement("a");
    a.href = `/api/runs/${encodeURIComponent(runId)}/files/${encodeURIComponent(name)}`;
    a.textContent = name;
    files.appendChild(a);
    files.appendChild(document.createTextNode(" "));
  }
}

// --- the live coordinator (serve --coordinator) ------------------------------------------------

const AGENT_COLUMNS = ["inflight", "credit", "backlog", "tasks", "subscriptions", "last_seen_s", "linked"];

function cellsRow(table, values, header = false) {
  const row = table.insertRow();
  for (const value of values) {
    const cell = header ? document.createElement("th") : row.insertCell();
    cell.textContent = value;
    if (header) row.appendChild(cell);
  }
  return row;
}

async function loadSystem() {
  if ($("tab-system").hidden) return;
  let found;
  try {
    found = await api("/api/system");
  } catch (error) {
    $("system-where").textContent = error.message;
    return;
  }
  $("system-where").textContent = `coordinator ${found.coordinator}, read ${new Date().toLocaleTimeString()}`;
  const components = $("components");
  const agents = $("agents");
  components.innerHTML = "";
  agents.innerHTML = "";
  cellsRow(components, ["component", "health", "metrics"], true);
  cellsRow(agents, ["agent", "health", ...AGENT_COLUMNS], true);
  for (const [name, part] of Object.entries(found.status)) {
    if (name.startsWith("agent:")) {
      const row = cellsRow(agents, [name.slice(6), part.health, ...AGENT_COLUMNS.map((k) => fmt(part.metrics[k]))]);
      row.dataset.agent = name.slice(6);
    } else {
      const metrics = Object.entries(part.metrics).map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
      const row = cellsRow(components, [name, part.health, metrics]);
      row.dataset.component = name;
    }
  }
}
setInterval(loadSystem, 1000);

async function loadLists() {
  if ($("tab-system").hidden) return;
  try {
    const topics = await api("/api/system/topics");
    const spaces = await api("/api/system/namespaces");
    listTable($("topics"), $("topics-total"), topics, "pattern", "subscribers", "subscription patterns");
    listTable($("namespaces"), $("namespaces-total"), spaces, "namespace", "keys", "namespaces");
    for (const row of $("namespaces").rows) {
      if (!row.dataset.name) continue;
      row.className = "run";
      row.onclick = () => showKeys(row.dataset.name);
    }
  } catch (error) {
    $("topics-total").textContent = error.message;
  }
}
setInterval(loadLists, 3000);

function listTable(table, total, found, label, count, what) {
  table.innerHTML = "";
  cellsRow(table, [label, count], true);
  for (const item of [...found.items].sort((a, b) => a.name.localeCompare(b.name))) {
    const row = cellsRow(table, [item.name, fmt(item[count])]);
    row.dataset.name = item.name;
  }
  const shown = found.items.length < found.total ? ` (the first ${found.items.length} shown)` : "";
  total.textContent = `${found.total} ${what}${shown}`;
}

async function showKeys(namespace) {
  const found = await api(`/api/system/keys?namespace=${encodeURIComponent(namespace)}`);
  const table = $("keys");
  table.innerHTML = "";
  cellsRow(table, [`keys of ${namespace} (${found.total})`, "version"], true);
  for (const item of [...found.items].sort((a, b) => a.name.localeCompare(b.name))) {
    const row = cellsRow(table, [item.name, fmt(item.version)]);
    row.className = "run";
    row.onclick = () => {
      $("mem-verb").value = "get";
      $("mem-namespace").value = namespace;
      $("mem-key").value = item.name;
    };
  }
}

$("memory").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {
    verb: $("mem-verb").value,
    namespace: $("mem-namespace").value,
    key: $("mem-key").value,
    value: $("mem-value").value,
    expected_version: Number($("mem-version").value || 0),
  };
  try {
    const reply = await api("/api/system/memory", { method: "POST", body: JSON.stringify(body) });
    $("mem-result").textContent = JSON.stringify(reply, null, 2);
  } catch (error) {
    $("mem-result").textContent = error.message;
  }
});

// --- start ---------------------------------------------------------------------------------

async function main() {
  if (typeof uPlot === "undefined") {
    banner("the chart library is missing: run `make run` or `bash scripts/install-web.sh` once");
  }
  showTab();
  connect();
  try {
    await loadScenarios();
    const jobs = await api("/api/jobs");
    if (jobs.length) follow(await api(`/api/jobs/${jobs[0].job_id}?points=true`));
  } catch (error) {
    banner(error.message);
  }
}
main();
