// Page `/runs/{id}`: a snapshot from WS /ws/runs/{id}, then live messages. Incoming metric rows are buffered and
// merged once per animation frame, with one setData per chart per frame, so a fast run never floods the page.
// The series and charts come from protocol.METRICS, which the server puts into the page as JSON.
import { ACTIVE, addShortcuts, fetchJSON } from "../common.js";
import "../chartpng.js";  // the chart cards' PNG buttons
import { makeCharts } from "./charts.js";
import { showAlerts } from "./alerts.js";
import { showCheckpoints } from "./checkpoints.js";
import { setupCarry } from "./carry.js";
import { LogView } from "./log.js";
import { MachineCard } from "./machine.js";
import { setupOrganise, showOrganise } from "./organise.js";
import { renderHeader, showRun } from "./header.js";
import { QualityChart } from "./quality.js";
import { SamplePlayer } from "./samples.js";
import { Sampler } from "./sampler.js";
import { covers, fetchDetail, withDetail } from "./detail.js";
import { eventMarks, scoredEpochEnds, showMarkKey } from "./marks.js";
import { addBuckets, addRows, emptyHistory, lastStep, rowCount } from "./series.js";
import { RunSocket } from "./socket.js";

const $ = (id) => document.getElementById(id);
const runId = Number($("run").dataset.runId);
const METRICS = JSON.parse($("metric-spec").textContent);  // [{name, label, chart, optional}]
const names = METRICS.map((m) => m.name);

const charts = makeCharts(METRICS, `run-${runId}`);
const samples = new SamplePlayer();
const quality = new QualityChart($("quality-chart"));
const sampler = new Sampler(runId);
const machine = new MachineCard($("speed-chart"), $("usage-chart"), $("machine-empty"));
const log = new LogView(runId, $("log"), $("log-empty"));
let history = emptyHistory(names);
let run = null;
let pending = [];   // [kind, metrics] received since the last frame: kind "buckets" (a snapshot) or "rows" (live)
let frame = 0;
let redrawWanted = false;
let nextDrawAt = 0;
let detail = null;  // the raw rows of the range zoomed into (detail.js), drawn in place of its buckets
let zoomKey = null; // that range, "min,max", while zoomed

new ResizeObserver(() => [...Object.values(charts), quality, machine].forEach((c) => c.fit())).observe(document.querySelector("main"));

function schedule() {
  if (!frame) frame = requestAnimationFrame(flush);
}

function showChartNote() {  // over the empty loss chart: what comes next
  const note = $("chart-empty");
  note.hidden = history.step.length > 0 || pending.length > 0;
  if (note.hidden || !run) return;
  note.textContent = run.status === "queued" ? "Waiting for a free worker: the loss curves start with the first batches."
    : run.status === "running" ? "The first batches are on their way (the data set loads first)."
    : "No batches were recorded for this run.";
}

// The charts' marks: the run's alerts, stops and restarts, and the epochs scored with FID/KID (after the history's
// steps, so again whenever either changes); the key under the charts says what each is.
function showMarks() {
  const marks = { alerts: run?.alerts || [], events: run ? eventMarks(run) : [], scored: scoredEpochEnds(history, quality.byEpoch) };
  for (const chart of Object.values(charts)) chart.setMarks(marks);
  showMarkKey($("mark-key"), marks);
}

function draw() {
  showChartNote();
  showMarks();
  const shown = detail ? withDetail(history, detail) : history;
  for (const chart of Object.values(charts)) chart.draw(shown);
  if (history.step.length && !performance.getEntriesByName("first-chart-paint").length) {
    performance.mark("first-chart-paint");  // read by bench/first_paint.py
  }
}

// Frames are drawn at most once per animation frame, and never more than a fifth of the time: when a draw took
// 20 ms, the next waits 80 ms (rows keep being merged meanwhile), so the page always answers.
function flush(now) {
  frame = 0;
  const batch = pending;
  pending = [];
  for (const [kind, metrics] of batch) {
    const fits = kind === "buckets" ? addBuckets(history, metrics) : addRows(history, metrics);
    if (!fits) { resync(); return; }  // other bucket widths, or steps going back: start again from the whole history
  }
  if (!batch.length && !redrawWanted) return;
  if (now < nextDrawAt) { redrawWanted = true; schedule(); return; }
  redrawWanted = false;
  const t0 = performance.now();
  draw();
  // uPlot renders in a microtask queued by setData: this one runs after it
  queueMicrotask(() => { nextDrawAt = t0 + 4 * (performance.now() - t0); });
}

function receive(kind, metrics) {
  if (metrics && metrics.step && metrics.step.length) {
    pending.push([kind, metrics]);
    schedule();
  }
}

function redraw() {
  redrawWanted = true;
  schedule();
}

for (const chart of Object.values(charts)) {
  chart.slider.addEventListener("input", () => {
    $(`${chart.slider.id}-value`).textContent = chart.weight().toFixed(2);
    redraw();
  });
}
// Zoomed into a range of few steps: its raw rows, fetched once (synced charts report the same range), until reset.
async function zoomTo(range) {
  const key = range && range.join();
  if (key === zoomKey) return;
  zoomKey = key;
  if (range && detail && covers(detail, ...range)) return;
  const next = range && (await fetchDetail(runId, names, history.width, ...range).catch(() => null));  // else buckets
  if (zoomKey !== key || next === detail) return;  // zoomed elsewhere meanwhile, or nothing to change
  detail = next;
  redraw();
}
for (const chart of Object.values(charts)) chart.onZoom = zoomTo;

$("log-y").addEventListener("change", (e) => { charts.loss.setLog(e.target.checked); draw(); });
window.addEventListener("themechange", () => [...Object.values(charts), quality, machine].forEach((c) => c.recolour()));

// Smoothing off on every chart, or back to the values it had.
function toggleSmoothing() {
  const on = Object.values(charts).some((c) => c.weight() > 0);
  for (const { slider } of Object.values(charts)) {
    if (on) slider.dataset.last = slider.value;
    slider.value = on ? "0" : slider.dataset.last || slider.defaultValue;
    slider.dispatchEvent(new Event("input"));
  }
}

addShortcuts([
  { keys: ["ArrowLeft"], help: "previous sample grid", run: () => samples.step(-1) },
  { keys: ["ArrowRight"], help: "next sample grid", run: () => samples.step(1) },
  { keys: ["s"], help: "smoothing off, or back on", run: toggleSmoothing },
  { keys: ["g", "l"], help: "go to the run list", run: () => { window.location.href = "/"; } },
]);

// ---- the run ---------------------------------------------------------------------------------------------------------

function onRun(next) {
  const previous = run;
  run = next;
  showRun(run, previous);
  showOrganise(run);
  showAlerts(run.alerts || []);
  showConnection();
  quality.setResolution(run.fid_at);
  showMarks();
  samples.totalEpochs = run.total_epochs ?? run.config.epochs;
  showChartNote();
  log.follow(ACTIVE.includes(run.status));
  machine.setActive(ACTIVE.includes(run.status));
  const rewound = previous && previous.status !== "running" && run.status === "running" && history.step.length;
  const replanned = (run.total_steps ?? null) !== history.totalSteps;  // e.g. a queued run that starts
  if (rewound || replanned) resync();  // resumed from its checkpoint, or buckets made for another number of steps
}
setInterval(() => renderHeader(run), 1000);  // the running time ticks between messages

async function action(name, button, busyText) {
  button.disabled = true;
  button.textContent = busyText;
  try {
    onRun(await fetchJSON(`/api/runs/${runId}/${name}`, { method: "POST" }));
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
setupOrganise(runId, () => run, onRun);
setupCarry(runId, () => run, onRun);

// The exports of sample grids answer 404 until the first grid: their links show from then on.
// The grid exports take their room from the start and show once there is a grid: nothing below them moves.
function showExports(grids) {
  for (const item of document.querySelectorAll("#exports [data-needs-samples]")) item.classList.toggle("waiting", grids === 0);
}

// ---- live messages ---------------------------------------------------------------------------------------------------

function onMessage(msg) {
  if (msg.type === "snapshot") {
    if (!history.step.length && msg.metrics && !pending.length) {
      history = emptyHistory(names, msg.metrics.width, msg.metrics.total_steps ?? null);
    }
    receive("buckets", msg.metrics);
    onRun(msg.run);
    samples.add(msg.samples);
    quality.add(msg.samples);
    showExports(msg.samples.length);
    showCheckpoints(msg.checkpoints);
    sampler.setCheckpoints(msg.checkpoints);
    machine.set(msg.system || [], msg.run.config.batch_size);
  } else if (msg.type === "system") {
    machine.add(msg);
  } else if (msg.type === "batch") {
    receive("rows", msg.rows);
  } else if (msg.type === "epoch" || msg.type === "score") {  // a score: FID/KID of an earlier epoch, now ready
    if (msg.sample) {
      samples.add([msg.sample]);
      quality.add([msg.sample]);
      showMarks();
    }
    if (msg.type === "epoch") showExports(1);
    showCheckpoints(msg.checkpoints);
    sampler.setCheckpoints(msg.checkpoints);
  } else if (msg.type === "checkpoints") {  // written when a run stopped mid-epoch: the whole list
    showCheckpoints(msg.checkpoints);
    sampler.setCheckpoints(msg.checkpoints);
  } else if (msg.type === "alert" && run) {  // the run message that follows carries it too
    onRun({ ...run, alerts: [msg.alert, ...(run.alerts || [])] });
  } else if (msg.type === "run") {
    onRun(msg.run);
  }
}

// The connection's state beside the status: "live" only while the run can still change (beside "completed" it reads
// as if the run were); a drop shows whatever the run's status.
function setConnection(state, text = state) {
  const conn = $("conn");
  conn.textContent = text;
  conn.className = `conn ${state}`;
  showConnection();
}

function showConnection() {
  const conn = $("conn");
  conn.hidden = conn.classList.contains("live") && run && !ACTIVE.includes(run.status);
}

// The newest step held or on its way: a reconnect asks for what came after it.
function heldStep() {
  const queued = pending.length ? pending[pending.length - 1][1].step : [];
  return Math.max(lastStep(history), queued.length ? queued[queued.length - 1] : 0);
}

const socket = new RunSocket(runId, { after: heldStep, onMessage, onState: setConnection });

// Forget the history and ask for all of it again.
function resync() {
  pending = [];
  detail = null;
  zoomKey = null;
  history = emptyHistory(names);
  samples.clear();
  quality.clear();
  redrawWanted = true;
  schedule();
  socket.reconnectNow();
}

// For the browser tests and anyone curious in the console.
window.ganboard = {
  pointCount: () => history.step.length,
  rowCount: () => rowCount(history),
  lastStep: () => lastStep(history),
  steps: () => history.step.slice(),
  bucketWidth: () => history.width,
  smoothed: (name) => charts[METRICS.find((m) => m.name === name).chart].smoothed(history, name),
  sampleCount: () => samples.count,
  qualityEpochs: () => quality.byEpoch.size,
  fidTicks: (ticks) => quality.uplot.axes[2].values(quality.uplot, ticks),
  machineCount: () => machine.count,
  logText: () => log.text,
  imagesPerSecond: () => machine.imagesPerSecond(),
  machineSeriesShown: () => machine.usage.series.slice(1).map((s) => s.show),
  machineSeconds: () => [machine.speed.scales.x.min, machine.speed.scales.x.max],
  machineScales: () => Object.fromEntries(Object.entries(machine.usage.scales).map(([k, s]) => [k, [s.min, s.max]])),
  status: () => (run ? run.status : null),
  dropConnection: () => socket.drop(),
  socket,
  feed: onMessage,  // a message as if the server sent it
  alertSteps: () => Object.fromEntries(Object.entries(charts).map(([k, c]) => [k, c.alerts.map((a) => a.step)])),
  marks: (chart = "loss") =>  // [label, step] where attempts stopped and began; the steps of the epoch ends scored
    ({ events: charts[chart].events.map((m) => [m.label, m.step]), scored: charts[chart].scored.map((m) => m.step) }),
  get charts() {  // read each time: the log-scale toggle makes the loss chart anew
    return Object.fromEntries(Object.entries(charts).map(([k, c]) => [k === "d" ? "dgz" : k, c.uplot]));
  },
};

socket.open();
