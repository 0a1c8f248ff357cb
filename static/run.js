// Page `/runs/{id}`: a snapshot from WS /ws/runs/{id}, then live messages. Incoming metric rows are buffered and
// merged once per animation frame, with one setData per chart per frame, so a fast run never floods the page.
"use strict";

const runId = Number(document.getElementById("run").dataset.runId);
const SERIES = ["loss_d", "loss_g", "d_x", "d_g_z"];
const data = { step: [], loss_d: [], loss_g: [], d_x: [], d_g_z: [] };  // raw, in step order, no duplicates
let run = null;
let samples = [];      // [{epoch, name, url}] sorted by epoch, all kept
let checkpoints = [];
let socket = null;
let retryMs = 500;

const $ = (id) => document.getElementById(id);

// ---- smoothing -------------------------------------------------------------------------------------------------------

// TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled towards zero.
// Kept incrementally: appending points only extends it; a new weight or a rewind recomputes it.
const ema = { weight: NaN, upto: 0, loss_d: null, loss_g: null };

function resetEma(weight) {
  ema.weight = weight;
  ema.upto = 0;
  for (const s of ["loss_d", "loss_g"]) ema[s] = { last: 0, count: 0, out: [] };
}

function updateEma() {
  const weight = Number($("smoothing").value);
  if (weight !== ema.weight || ema.upto > data.step.length) resetEma(weight);
  for (const s of ["loss_d", "loss_g"]) {
    const e = ema[s], values = data[s], out = e.out;
    for (let i = ema.upto; i < values.length; i++) {
      const v = values[i];
      if (v === null || v === undefined || !Number.isFinite(v)) { out.push(null); continue; }
      e.last = e.last * weight + (1 - weight) * v;
      e.count += 1;
      out.push(e.last / (1 - Math.pow(weight, e.count)));
    }
  }
  ema.upto = data.step.length;
}

// ---- charts ----------------------------------------------------------------------------------------------------------

const lossBox = $("loss-chart");
const dgzBox = $("dgz-chart");
const chartHeight = () => (window.innerWidth < 600 ? 190 : 230);
const STEP_INCRS = [];  // whole steps only on the x axis
for (let p = 1; p <= 1e9; p *= 10) STEP_INCRS.push(p, 2 * p, 5 * p);

function stepLabel(v) {
  const a = Math.abs(v);
  return a >= 1e6 ? `${+(v / 1e6).toFixed(2)}M` : a >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : String(v);
}

function lastIndexes(u) {  // per series, the newest point that has a value (loss_g is null where G did not step)
  return u.data.map((values) => {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return i;
    return null;
  });
}

function showLatestInLegend(u) {  // with the cursor off the chart, the legend shows the newest values
  if (u.cursor.idx === null || u.cursor.idx === undefined || u.cursor.left < 0) u.setLegend({ idxs: lastIndexes(u) }, false);
}

// Before the first point, charts draw their axes over steps 0..1, so nothing moves when the data arrives.
const placeholder = (n) => [[0, 1], ...Array.from({ length: n }, () => [null, null])];

function autoRange(u, min, max) {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 2];
  return uPlot.rangeNum(min, max, 0.1, true);
}

function makeChart(box, yLabel, series, extra = {}) {
  const opts = {
    width: box.clientWidth,
    height: chartHeight(),
    scales: { x: { time: false }, y: { range: autoRange }, ...(extra.scales || {}) },
    axes: [
      { label: "step", labelSize: 18, size: 34, incrs: STEP_INCRS, values: (u, ticks) => ticks.map(stepLabel) },
      { label: yLabel, labelSize: 18, size: 46 },
    ],
    legend: { live: true },
    cursor: {
      sync: { key: `run-${runId}` },      // hover one chart, see the same step on the other
      drag: { x: true, y: false },         // drag to zoom into steps, double-click to zoom out
      hover: { skip: [null] },             // a step where a series has no value shows its nearest value
      points: { size: 7 },
    },
    series: [{ label: "step", value: (u, v) => (v === null || v === undefined || !data.step.length ? "–" : v.toLocaleString()) }, ...series],
    hooks: {
      setCursor: [showLatestInLegend],
      setScale: [(u, key) => {
        if (key !== "x" || !u.data[0].length) return;
        const xs = u.data[0];
        u.zoomed = u.scales.x.min > xs[0] || u.scales.x.max < xs[xs.length - 1];
      }],
      ...(extra.hooks || {}),
    },
  };
  const chart = new uPlot(opts, placeholder(series.length), box);
  chart.zoomed = false;
  return chart;
}

const valueOf = (digits) => (u, v) => (v === null || v === undefined ? "–" : fmt(v, digits));
const smoothedValue = (raw) => (u, v, si, idx) => {
  if (v === null || v === undefined) return "–";
  const r = idx === null || idx === undefined ? null : data[raw][idx];
  return Number($("smoothing").value) > 0 && r !== null && r !== undefined ? `${fmt(v)} (raw ${fmt(r)})` : fmt(v);
};

// Raw losses drawn faintly under their smoothed lines, as TensorBoard does; the legend lists the smoothed ones.
const lossChart = makeChart(lossBox, "loss", [
  { label: "loss_D raw", stroke: COLORS.dRaw, width: 1, spanGaps: true, points: { show: false } },
  { label: "loss_G raw", stroke: COLORS.gRaw, width: 1, spanGaps: true, points: { show: false } },
  { label: "loss_D", stroke: COLORS.d, width: 2, spanGaps: true, value: smoothedValue("loss_d") },
  { label: "loss_G", stroke: COLORS.g, width: 2, spanGaps: true, value: smoothedValue("loss_g") },
]);
lossChart.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => { if (i === 1 || i === 2) row.hidden = true; });

function drawGuide(u) {  // the 0.5 line: where D cannot tell real from generated
  const y = Math.round(u.valToPos(0.5, "y", true)) + 0.5;
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = COLORS.guide;
  ctx.lineWidth = Math.max(1, devicePixelRatio);
  ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
  ctx.beginPath();
  ctx.moveTo(u.bbox.left, y);
  ctx.lineTo(u.bbox.left + u.bbox.width, y);
  ctx.stroke();
  ctx.restore();
}

const dgzChart = makeChart(dgzBox, "D output", [
  { label: "D(x)", stroke: COLORS.d, width: 1.5, spanGaps: true, value: valueOf(3) },
  { label: "D(G(z))", stroke: COLORS.g, width: 1.5, spanGaps: true, value: valueOf(3) },
], { scales: { y: { range: [0, 1] } }, hooks: { draw: [drawGuide] } });

const charts = [[lossChart, lossBox], [dgzChart, dgzBox]];
new ResizeObserver(() => {
  for (const [chart, box] of charts) {
    if (box.clientWidth && (chart.width !== box.clientWidth || chart.height !== chartHeight())) {
      chart.setSize({ width: box.clientWidth, height: chartHeight() });
    }
  }
}).observe(document.querySelector("main"));

function draw() {
  showChartNote();
  updateEma();
  const x = data.step;
  if (!x.length) {  // emptied by a resync
    for (const [chart] of charts) chart.setData(placeholder(chart.series.length - 1));
    return;
  }
  lossChart.setData([x, data.loss_d, data.loss_g, ema.loss_d.out, ema.loss_g.out], !lossChart.zoomed);
  dgzChart.setData([x, data.d_x, data.d_g_z], !dgzChart.zoomed);
  for (const [chart] of charts) showLatestInLegend(chart);
  if (x.length && !performance.getEntriesByName("first-chart-paint").length) {
    performance.mark("first-chart-paint");  // read by bench/first_paint.py
  }
}

// ---- merging metric rows, once per frame -----------------------------------------------------------------------------

let pending = [];   // [mode, rows] received since the last frame
let frame = 0;
let redrawWanted = false;

function schedule() {
  if (!frame) frame = requestAnimationFrame(flush);
}

function receive(rows, mode) {
  if (rows && rows.step && rows.step.length) {
    pending.push([mode, rows]);
    schedule();
  }
}

function firstIndexAtOrAfter(step) {
  let lo = 0, hi = data.step.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (data.step[mid] < step) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// "snapshot": history (downsampled) or, after a reconnect, only what came after our last step: keep ours, add newer.
// "live": full-resolution rows from the worker; they replace whatever we hold from their first step on (a run
// resumed from a checkpoint repeats steps, and a catch-up snapshot may overlap the first live rows).
function merge(mode, rows) {
  const n = rows.step.length;
  if (mode === "live" && data.step.length && rows.step[0] <= data.step[data.step.length - 1]) {
    const k = firstIndexAtOrAfter(rows.step[0]);
    for (const key of ["step", ...SERIES]) data[key].length = k;
    ema.weight = NaN;  // smoothed again from the start on the next draw
  }
  let last = data.step.length ? data.step[data.step.length - 1] : -Infinity;
  for (let i = 0; i < n; i++) {
    if (rows.step[i] <= last) continue;
    last = rows.step[i];
    data.step.push(last);
    for (const s of SERIES) data[s].push(rows[s] ? rows[s][i] ?? null : null);
  }
}

// A page left open on a long run keeps at most ~COMPACT_AT points: past that, everything but the newest KEEP_RECENT
// is thinned to KEEP_OLD points, keeping each series' min and max per bucket of steps (as the server's snapshot does,
// so spikes survive). Memory stays bounded and a frame stays cheap, however long the run.
const KEEP_RECENT = 4000, KEEP_OLD = 4000, COMPACT_AT = 16000;

function thinHistory() {
  const n = data.step.length, end = n - KEEP_RECENT;
  const buckets = Math.floor(KEEP_OLD / (2 * SERIES.length));
  const s0 = data.step[0], width = (data.step[end - 1] - s0 + 1) / buckets;
  const keep = new Uint8Array(n).fill(1, end);
  keep[0] = 1;
  for (const s of SERIES) {
    const v = data[s];
    let bucket = -1, iMin = -1, iMax = -1;
    for (let i = 0; i <= end; i++) {
      const b = i < end ? Math.floor((data.step[i] - s0) / width) : -2;
      if (b !== bucket) {
        if (iMin >= 0) keep[iMin] = keep[iMax] = 1;
        bucket = b; iMin = iMax = -1;
      }
      const x = v[i];
      if (i === end || x === null || x === undefined || !Number.isFinite(x)) continue;
      if (iMin < 0 || x < v[iMin]) iMin = i;
      if (iMax < 0 || x > v[iMax]) iMax = i;
    }
  }
  for (const key of ["step", ...SERIES]) data[key] = data[key].filter((_, i) => keep[i] === 1);
}

// Frames are drawn at most once per animation frame, and never more than a fifth of the time: when a draw took
// 20 ms, the next waits 80 ms (rows keep being merged meanwhile), so the page always answers.
let nextDrawAt = 0;

function flush(now) {
  frame = 0;
  for (const [mode, rows] of pending) merge(mode, rows);
  if (data.step.length > COMPACT_AT) thinHistory();
  const changed = pending.length > 0 || redrawWanted;
  pending = [];
  if (!changed) return;
  if (now < nextDrawAt) { redrawWanted = true; schedule(); return; }
  redrawWanted = false;
  const t0 = performance.now();
  draw();
  // uPlot renders in a microtask queued by setData: this one runs after it
  queueMicrotask(() => { nextDrawAt = t0 + 4 * (performance.now() - t0); });
}

$("smoothing").addEventListener("input", () => {
  $("smoothing-value").textContent = Number($("smoothing").value).toFixed(2);
  redrawWanted = true;
  schedule();
});

// ---- header: status, progress, ETA, actions --------------------------------------------------------------------------

const observed = [];  // [ms, step] while running, the last minute: this page's own measure of the speed

function observe() {
  if (!run || run.status !== "running") { observed.length = 0; return; }
  const now = performance.now();
  if (!observed.length || observed[observed.length - 1][1] !== run.step) observed.push([now, run.step]);
  while (observed.length > 2 && now - observed[0][0] > 60_000) observed.shift();
}

function stepsPerSecond() {
  if (observed.length >= 2) {
    const [t0, s0] = observed[0], [t1, s1] = observed[observed.length - 1];
    if (t1 - t0 >= 5000 && s1 > s0) return ((s1 - s0) * 1000) / (t1 - t0);
  }
  if (run.images_per_s && run.config.batch_size) return run.images_per_s / run.config.batch_size;
  return null;
}

function renderHeader() {
  if (!run) return;
  let text = progressLabel(run);
  if (run.images_per_s) text += ` · ${run.images_per_s.toFixed(0)} images/s`;
  if (run.status === "running" && run.total_steps) {
    const rate = stepsPerSecond();
    text += rate ? ` · ETA ${humanSeconds((run.total_steps - run.step) / rate)}` : " · ETA after a few seconds";
  }
  $("progress-text").textContent = text;
  let times;
  if (run.status === "queued") times = `queued at ${localTime(run.created_at)}: it starts when a worker is free`;
  else if (!run.started_at) times = `created ${localTime(run.created_at)}`;
  else if (run.finished_at) times = `started ${localTime(run.started_at)} · ${run.status} ${localTime(run.finished_at)} after ${duration(run.started_at, run.finished_at)}`;
  else times = `started ${localTime(run.started_at)} · running for ${duration(run.started_at, null)}`;
  if (run.device) times += ` · on ${run.device}`;
  $("run-times").textContent = times;
}
setInterval(renderHeader, 1000);  // the running time and ETA tick between messages

function showChartNote() {  // over the empty loss chart: what comes next
  const note = $("chart-empty");
  note.hidden = data.step.length > 0 || pending.length > 0;
  if (note.hidden || !run) return;
  note.textContent = run.status === "queued" ? "Waiting for a free worker: the loss curves start with the first batches."
    : run.status === "running" ? "The first batches are on their way (the data set loads first)."
    : "No batches were recorded for this run.";
}

function showRun(next) {
  const previous = run;
  run = next;
  $("run-name").textContent = run.name;
  document.title = `${run.name} · GANboard`;
  setBadge($("status"), run.status);
  const progress = $("progress");
  progress.dataset.step = run.step;
  progress.dataset.epoch = run.epoch;
  const percent = progressFraction(run) * 100;
  progress.setAttribute("aria-valuenow", percent.toFixed(0));
  progress.querySelector(".bar").style.width = `${percent.toFixed(1)}%`;
  progress.classList.toggle("done", run.status === "completed");
  observe();
  renderHeader();
  const error = $("error");
  error.textContent = run.status === "failed" ? run.error || "failed (no error text)" : "";
  error.hidden = !error.textContent;
  const cancel = $("cancel-button"), resume = $("resume-button");
  cancel.hidden = !ACTIVE.includes(run.status);
  resume.hidden = !RESUMABLE.includes(run.status);
  if (!previous || previous.status !== run.status) {
    cancel.disabled = resume.disabled = false;
    cancel.textContent = "Cancel";
    resume.textContent = "Resume";
  }
  showConfig(run.config);
  showChartNote();
  // A resumed run starts again from its last checkpoint: the server drops what came after it, so do we.
  if (previous && previous.status !== "running" && run.status === "running" && data.step.length) resync();
}

let configShown = false;
function showConfig(config) {
  if (configShown) return;
  configShown = true;
  const box = $("config");
  for (const [key, value] of Object.entries(config)) {
    box.append(el("div", { class: "kv" }, el("span", { class: "k", text: key }), el("span", { class: "v", text: value === null ? "–" : String(value) })));
  }
}

async function action(name, button, busyText) {
  button.disabled = true;
  button.textContent = busyText;
  try {
    showRun(await fetchJSON(`/api/runs/${runId}/${name}`, { method: "POST" }));
  } catch (error) {
    const box = $("error");
    box.textContent = `${name} failed: ${error.message}`;
    box.hidden = false;
    button.disabled = false;
    button.textContent = name === "cancel" ? "Cancel" : "Resume";
  }
}
$("cancel-button").addEventListener("click", (e) => action("cancel", e.currentTarget, "Cancelling…"));
$("resume-button").addEventListener("click", (e) => action("resume", e.currentTarget, "Resuming…"));

// ---- samples ---------------------------------------------------------------------------------------------------------

const slider = $("epoch-slider");
const sampleImg = $("sample-img");
const playButton = $("play-button");
let following = true;  // the slider follows the newest grid until the person moves it
let playTimer = null;
const preloaded = new Map();

function preload(sample) {
  if (!preloaded.has(sample.url)) {
    const img = new Image();
    img.src = sample.url;
    preloaded.set(sample.url, img);
  }
}

sampleImg.addEventListener("load", () => {  // small grids scaled up stay crisp; large ones scaled down stay smooth
  sampleImg.classList.toggle("pixelated", sampleImg.naturalWidth < sampleImg.clientWidth);
});

function showSample(index) {
  const sample = samples[index];
  if (!sample) return;
  if (sampleImg.getAttribute("src") !== sample.url) sampleImg.src = sample.url;
  sampleImg.hidden = false;
  $("sample-empty").hidden = true;
  const total = run && (run.total_epochs ?? run.config.epochs);
  $("sample-label").textContent = `epoch ${sample.epoch}${total ? ` of ${total}` : ""}`;
  slider.value = String(index + 1);
  slider.setAttribute("aria-valuetext", `epoch ${sample.epoch}`);
}

function addSamples(list) {
  for (const sample of list || []) {
    if (!sample) continue;
    const i = samples.findIndex((s) => s.epoch === sample.epoch);
    if (i >= 0) samples[i] = sample; else samples.push(sample);
  }
  samples.sort((a, b) => a.epoch - b.epoch);
  slider.max = String(Math.max(1, samples.length));
  slider.disabled = samples.length < 2;
  playButton.disabled = samples.length < 2;
  if (following && samples.length && !playTimer) showSample(samples.length - 1);
}

slider.addEventListener("input", () => {
  stopPlaying();
  following = Number(slider.value) === samples.length;
  showSample(Number(slider.value) - 1);
});

function stopPlaying() {
  if (!playTimer) return;
  clearInterval(playTimer);
  playTimer = null;
  playButton.textContent = "▶ Play";
  playButton.setAttribute("aria-label", "play through the epochs");
}

playButton.addEventListener("click", () => {
  if (playTimer) { stopPlaying(); return; }
  samples.forEach(preload);
  playButton.textContent = "❚❚ Pause";
  playButton.setAttribute("aria-label", "pause");
  let i = Number(slider.value) >= samples.length ? 0 : Number(slider.value) - 1;
  following = false;
  showSample(i);
  playTimer = setInterval(() => {
    i += 1;
    if (i >= samples.length) {  // stop on the newest grid, and follow new ones again
      stopPlaying();
      following = true;
      return;
    }
    showSample(i);
  }, 400);
});

// ---- checkpoints -----------------------------------------------------------------------------------------------------

// The latest netg.pth, netd.pth and resume.pt first, then the per-epoch copies, newest first (G before D).
function checkpointOrder(a, b) {
  const rank = (c) => ["netg", "netd", "resume"].findIndex((prefix) => c.name.startsWith(prefix));
  const perEpoch = (c) => /_\d+\.pth$/.test(c.name);
  return perEpoch(a) - perEpoch(b) || (b.epoch ?? 0) * perEpoch(b) - (a.epoch ?? 0) * perEpoch(a) || rank(a) - rank(b);
}

function showCheckpoints(list) {
  if (!list) return;
  checkpoints = [...list].sort(checkpointOrder);
  const ul = $("checkpoints");
  if (!checkpoints.length) return;
  ul.textContent = "";
  for (const c of checkpoints) {
    const note = /_\d+\.pth$/.test(c.name) ? `epoch ${c.epoch}` : c.name === "resume.pt" ? "for Resume" : "latest";
    ul.append(el("li", {},
      el("a", { href: c.url, download: c.name, text: c.name }),
      el("span", { class: "muted small", text: note }),
      el("span", { class: "size", text: humanSize(c.size) })));
  }
}

// ---- live connection -------------------------------------------------------------------------------------------------

function setConnection(state, text = state) {
  const conn = $("conn");
  conn.textContent = text;
  conn.className = `conn ${state}`;
}

function lastStep() {
  const queued = pending.length ? pending[pending.length - 1][1].step : [];
  const mine = data.step.length ? data.step[data.step.length - 1] : 0;
  return Math.max(mine, queued.length ? queued[queued.length - 1] : 0);
}

function onMessage(event) {
  const msg = JSON.parse(event.data);
  if (msg.type === "snapshot") {
    receive(msg.metrics, "snapshot");
    showRun(msg.run);
    addSamples(msg.samples);
    showCheckpoints(msg.checkpoints);
  } else if (msg.type === "batch") {
    receive(msg.rows, "live");
  } else if (msg.type === "epoch") {
    addSamples([msg.sample]);
    showCheckpoints(msg.checkpoints);
  } else if (msg.type === "run") {
    showRun(msg.run);
  }
}

function connect() {
  const after = lastStep();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  setConnection(socket ? "reconnecting" : "connecting", socket ? "reconnecting" : "connecting");
  const ws = new WebSocket(`${scheme}://${location.host}/ws/runs/${runId}${after ? `?after=${after}` : ""}`);
  let opened = false;
  socket = ws;
  ws.onopen = () => { opened = true; setConnection("live"); retryMs = 500; };
  ws.onmessage = onMessage;
  ws.onclose = async () => {
    if (!opened) {  // refused at the handshake: ask the API why (401 goes to the login page, 404 means deleted)
      try {
        await fetchJSON(`/api/runs/${runId}`);
      } catch (error) {
        if (error.status === 404) { setConnection("gone", "run not found"); return; }
      }
    }
    if (socket !== ws) return;  // replaced meanwhile (resync)
    setConnection("reconnecting", `reconnecting in ${Math.round(retryMs / 1000) || 1} s`);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10_000);
  };
}

// Forget everything and ask for the whole history again (after a resume rewound the run to its checkpoint).
function resync() {
  if (socket) { socket.onclose = null; socket.onmessage = null; socket.close(); }
  pending = [];
  for (const key of ["step", ...SERIES]) data[key].length = 0;
  samples = [];
  addSamples([]);
  redrawWanted = true;
  schedule();
  connect();
}

// For the browser tests and anyone curious in the console.
window.ganboard = {
  pointCount: () => data.step.length,
  lastStep: () => (data.step.length ? data.step[data.step.length - 1] : 0),
  steps: () => data.step.slice(),
  sampleCount: () => samples.length,
  status: () => (run ? run.status : null),
  dropConnection: () => socket && socket.close(),
  charts: { loss: lossChart, dgz: dgzChart },
};

connect();
