// Page `/compare?runs=3,7,9`: one WS /ws/runs/{id} per run (a snapshot, then live messages, as on the run page), each
// run's history held in the run page's bucketed form (static/run/series.js), drawn overlaid, one colour per run (or,
// seeds grouped, per group of runs whose configs differ only in their seed: its mean with a min-max band). Rows that
// arrive are merged and drawn once per animation frame. The x axis and the grouping are kept in the page's address
// (`&x=images&group=seeds`), so that a link opens the same view.
import { ACTIVE, addShortcuts, el } from "../common.js";
import { showConfigDiff } from "./config.js";
import { GridRow } from "./grids.js";
import { OverlayChart, runColor, xValues } from "./overlay.js";
import { addBuckets, addRows, emptyHistory, lastStep, means, smooth } from "../run/series.js";
import { RunSocket } from "../run/socket.js";
import { groupBy, spread } from "../seeds.js";

const $ = (id) => document.getElementById(id);
const METRICS = JSON.parse($("metric-spec").textContent);  // [{name, label, chart, optional}]
const names = METRICS.map((m) => m.name);
const metric = (name) => METRICS.find((m) => m.name === name);

// Per run: {id, index (its colour), colour (drawn in: its own, or seeds grouped, its group's), run (the run JSON, once
// known), history, samples, socket, state, snapshotted}
const runs = $("compare").dataset.runIds.split(",").map((id, index) => ({
  id: Number(id), index, colour: runColor(index), run: null, history: emptyHistory(names), samples: [], socket: null, state: "connecting", snapshotted: false,
}));

const charts = {
  loss: new OverlayChart($("loss-chart"), [metric("loss_d"), metric("loss_g")], { yLabel: "loss" }),
  d: new OverlayChart($("dgz-chart"), [metric("d_x"), metric("d_g_z")], { yLabel: "D output", range: [0, 1], guide: 0.5 }),
};
const quality = new OverlayChart($("quality-chart"), [{ name: "swd", label: "SWD ×1e3" }, { name: "fid", label: "FID" }], {
  wholeX: true, scaleOf: (m) => m.name, scales: { swd: { label: "SWD ×1e3" }, fid: { label: "FID", side: 1, optional: true } },
});
quality.setAxis("epoch");
const grids = new GridRow($("grids"), $("grid-epoch"), $("grid-epoch-value"), runs);
let frame = 0;

new ResizeObserver(() => [...Object.values(charts), quality].forEach((c) => c.fit())).observe(document.querySelector("main"));
window.addEventListener("themechange", () => [...Object.values(charts), quality].forEach((c) => c.recolour()));

const weight = () => Number($("smoothing").value);
const grouped = () => $("group-seeds").checked;

// A config without its seed, keys sorted: equal for runs that differ only in their seed.
const withoutSeed = (config) => JSON.stringify(Object.keys(config).filter((k) => k !== "seed").sort().map((k) => [k, config[k]]));

// The lines drawn: one per run, or seeds grouped, one per group of runs (a run not loaded yet is alone), each in its
// first run's colour.
function groups() {
  const keyOf = (r) => (grouped() && r.run ? withoutSeed(r.run.config) : `#${r.id}`);
  return groupBy(runs, keyOf).map(({ items }) => ({
    runs: items, index: items[0].index,
    label: items.length > 1 ? `${items.map((r) => `#${r.id}`).join(" ")} (${items.length} seeds)` : `#${items[0].id} ${items[0].run ? items[0].run.name : ""}`,
  }));
}

// A line's table for a chart: [x, then per metric its values]; for a group, per metric the mean, min and max over its
// runs at each step (runs of one config share their steps), at the runs' mean x (wall time differs per run).
function table(g, metrics, axis) {
  const ys = (r, m) => smooth(means(r.history, m.name), weight());
  if (g.runs.length === 1) {
    const [r] = g.runs;
    return [r.run ? xValues(r.history, r.run, axis) : [], ...metrics.map((m) => (r.run ? ys(r, m) : []))];
  }
  const over = (f) => spread(g.runs.map((r) => [r.history.step, f(r)]));  // grouped runs are loaded: they have configs
  return [over((r) => xValues(r.history, r.run, axis)).mean, ...metrics.flatMap((m) => {
    const c = over((r) => ys(r, m));
    return [c.mean, c.lo, c.hi];
  })];
}

// The same for the quality chart: scores per epoch.
function qualityTable(g) {
  const scored = g.runs.map((r) => r.samples.filter((s) => s.swd !== undefined && s.swd !== null));
  if (g.runs.length < 2) return [scored[0].map((s) => s.epoch), scored[0].map((s) => s.swd), scored[0].map((s) => s.fid ?? null)];
  const over = (name) => spread(scored.map((list) => [list.map((s) => s.epoch), list.map((s) => s[name] ?? null)]));
  const swd = over("swd"), fid = over("fid");
  return [swd.xs, swd.mean, swd.lo, swd.hi, fid.mean, fid.lo, fid.hi];
}

// The view in the address, so that a link opens it again: the runs, then the x axis and the grouping when not the default.
function keepInAddress() {
  const params = [`runs=${runs.map((r) => r.id).join(",")}`];
  if ($("x-axis").value !== "step") params.push(`x=${$("x-axis").value}`);
  if (grouped()) params.push("group=seeds");
  history.replaceState(null, "", `${location.pathname}?${params.join("&")}`);
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  const axis = $("x-axis").value;
  const lines = groups();
  const shown = lines.map((g) => ({ label: g.label, colour: runColor(g.index), band: g.runs.length > 1 }));
  for (const chart of Object.values(charts)) {
    chart.setAxis(axis);
    chart.setLines(shown);
    chart.draw(lines.map((g) => table(g, chart.metrics, axis)));
  }
  quality.setLines(shown);
  quality.draw(lines.map(qualityTable));
  if (runs.every((r) => r.snapshotted) && !performance.getEntriesByName("first-compare-paint").length) {
    performance.mark("first-compare-paint");  // every run's snapshot drawn: read by bench/first_paint.py
  }
}

// ---- the legend above the charts: each run's colour, name, status and connection ------------------------------------

// The connection's state ("live", "reconnecting") is shown while a run is loading, queued or running: next to a run that
// has ended it would read as if the run were live, and nothing more comes for it.
function showLegend() {
  for (const g of groups()) for (const r of g.runs) r.colour = runColor(g.index);  // the grids and config follow
  $("compare-legend").replaceChildren(...runs.map((r) => el("li", { "data-run-id": r.id },
    el("span", { class: "swatch", style: `background: ${r.colour}` }),
    el("a", { href: `/runs/${r.id}`, text: `#${r.id} ${r.run ? r.run.name : ""}` }),
    el("span", { class: `badge ${r.run ? r.run.status : ""}`, text: r.run ? r.run.status : "loading" }),
    ...(!r.run || ACTIVE.includes(r.run.status)
      ? [el("span", { class: `conn ${r.state}`, title: "connection to the server", text: r.state })] : []))));
}

function showConfig() {
  showConfigDiff($("config-diff"), $("config-same"), runs, $("config-all").checked);
}

function onRun(r, next) {
  const replanned = (next.total_steps ?? null) !== r.history.totalSteps;  // e.g. a queued run that starts
  const configChanged = !r.run || JSON.stringify(r.run.config) !== JSON.stringify(next.config) || r.run.name !== next.name;
  r.run = next;
  showLegend();
  if (configChanged) { showConfig(); grids.show(); }  // the grids' titles hold the name too
  if (replanned) resync(r);  // buckets made for another number of steps
}

function addSamples(r, list) {
  for (const s of list || []) {
    if (!s) continue;
    const i = r.samples.findIndex((x) => x.epoch === s.epoch);
    if (i >= 0) r.samples[i] = s; else r.samples.push(s);
  }
  r.samples.sort((a, b) => a.epoch - b.epoch);
  grids.update();
}

function onMessage(r, msg) {
  let fits = true;
  if (msg.type === "snapshot") {
    if (!r.history.step.length && msg.metrics) r.history = emptyHistory(names, msg.metrics.width, msg.metrics.total_steps ?? null);
    fits = addBuckets(r.history, msg.metrics);
    addSamples(r, msg.samples);
    r.snapshotted = true;
    onRun(r, msg.run);  // after the buckets: a run planned anew starts again from a fresh snapshot
  } else if (msg.type === "batch") {
    fits = addRows(r.history, msg.rows);
  } else if (msg.type === "epoch") {
    addSamples(r, [msg.sample]);
  } else if (msg.type === "run") {
    onRun(r, msg.run);
  }
  if (!fits) { resync(r); return; }  // another bucket width, or steps going back (a resumed run)
  schedule();
}

function resync(r) {
  r.history = emptyHistory(names);
  r.samples = [];
  r.socket.reconnectNow();
}

function setState(r, state) {
  r.state = state;
  showLegend();
}

for (const r of runs) {
  r.socket = new RunSocket(r.id, { after: () => lastStep(r.history), onMessage: (msg) => onMessage(r, msg), onState: (s) => setState(r, s) });
}

$("smoothing").addEventListener("input", () => {
  $("smoothing-value").textContent = weight().toFixed(2);
  schedule();
});
$("x-axis").addEventListener("change", () => { keepInAddress(); schedule(); });
$("group-seeds").addEventListener("change", () => { keepInAddress(); showLegend(); showConfig(); grids.show(); schedule(); });
$("config-all").addEventListener("change", showConfig);
addShortcuts([
  { keys: ["ArrowLeft"], help: "previous epoch's grids", run: () => { $("grid-epoch").stepDown(); $("grid-epoch").dispatchEvent(new Event("input")); } },
  { keys: ["ArrowRight"], help: "next epoch's grids", run: () => { $("grid-epoch").stepUp(); $("grid-epoch").dispatchEvent(new Event("input")); } },
  { keys: ["g", "l"], help: "go to the run list", run: () => { window.location.href = "/"; } },
]);

// For the browser tests and anyone curious in the console.
window.compare = {
  runIds: () => runs.map((r) => r.id),
  pointCount: (id) => runs.find((r) => r.id === id).history.step.length,
  lastStep: (id) => lastStep(runs.find((r) => r.id === id).history),
  lastTime: (id) => runs.find((r) => r.id === id).history.time.at(-1),
  xs: () => charts.loss.uplot.data[0],
  data: (chart) => (chart === "quality" ? quality : charts[chart]).uplot.data,  // x, then each series' column
  bands: (chart) => (chart === "quality" ? quality : charts[chart]).uplot.bands.map((b) => b.series),  // [max, min] series
  series: () => Object.fromEntries(Object.entries({ ...charts, quality }).map(([k, c]) => [k, c.seriesLabels()])),
  drawnPoints: (chart) => (chart === "quality" ? quality : charts[chart]).uplot.data.slice(1).map((col) => col.filter((v) => v !== null && v !== undefined).length),
  smoothed: (id, name) => smooth(means(runs.find((r) => r.id === id).history, name), weight()),
  qualityXTicks: () => quality.uplot.axes[0]._values,  // the epoch labels drawn (uPlot keeps them there)
  gridSrcs: () => [...document.querySelectorAll("#grids figure img")].map((img) => (img.hidden ? null : img.getAttribute("src"))),
};

showLegend();
for (const r of runs) r.socket.open();
