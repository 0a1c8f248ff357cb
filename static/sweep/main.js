// Page `/sweeps/{id}`: a sweep's runs as a table, a parallel-coordinates plot and a scatter of the settings against the
// score, and the best runs' scores while they train by images seen. Live as the run list is: GET /api/sweeps/{id}
// every 2 s while any of its runs is queued or running (or trials are left to ask), drawn once per change.
import { cssVar, el, fetchJSON, fmt, isResumable, setBadge } from "../common.js";
import { axesOf, score, scoreCurves } from "./data.js";
import { drawParallel, drawScatter } from "./plots.js";
import { showTable } from "./table.js";
import { addBand } from "../seeds.js";

const $ = (id) => document.getElementById(id);
const sweepId = $("sweep").dataset.sweepId;
const POLL_MS = 2000;
const TOP = 5;
let sweep = null;
let curves = null;
let curvesOf = "";  // the runs the curves chart was made for

function summary(s) {
  const counts = Object.entries(s.counts).map(([status, n]) => `${n} ${status}`).join(", ");
  const method = { grid: "grid", random: "random search", optuna: "Optuna (TPE" + (s.spec.pruning ? ", median pruner)" : ")") }[s.spec.method];
  return `${method} · ${s.runs.length} of ${s.planned} runs made${counts ? `: ${counts}` : ""}`;
}

function best(s, k) {
  return s.runs.filter((r) => score(r) !== null && score(r) !== undefined).sort((a, b) => score(a) - score(b)).slice(0, k);
}

function showHead(s) {
  $("sweep-name").textContent = s.name;
  document.title = `${s.name} · GANboard`;
  setBadge($("sweep-status"), s.status);
  $("sweep-summary").textContent = summary(s);
  $("sweep-best").replaceChildren(...(s.best ? ["best so far: ", el("a", { href: `/runs/${s.best.run_id}`, text: s.best.name }),
    ` (SWD ×1e3 ${fmt(s.best.best_swd, 2)})`] : []));
  $("sweep-cancel").hidden = s.status !== "active";
  $("sweep-resume").hidden = s.status === "active" || !(s.stopped || s.runs.some(isResumable));
  $("sweep-delete").hidden = s.status === "active";
  const top = best(s, TOP);
  $("sweep-compare").hidden = top.length < 2;
  $("sweep-compare").href = `/compare?runs=${top.map((r) => r.id).join(",")}&x=images`;  // as the curves here
  $("sweep-compare").textContent = `Compare the best ${top.length}`;
}

// The best runs' SWD by images seen; with "group seeds", the best settings' mean over their seeds with a min-max band.
function showCurves(s, axes, grouped) {
  const lines = scoreCurves(s.runs, axes, grouped, TOP);
  const data = lines.length ? uPlot.join(lines.map((l) => (grouped ? [l.xs, l.mean, l.lo, l.hi] : [l.xs, l.mean]))) : [[]];
  const colour = (i, alpha = 1) => `hsla(${(i * 360) / TOP + 210}, 70%, 50%, ${alpha})`;
  const series = [{ label: "images seen" }];
  const bands = [];
  lines.forEach((l, i) => {
    const line = { label: l.label, stroke: colour(i), width: 2, spanGaps: true, points: { show: true } };
    if (grouped) addBand(series, bands, line, colour(i, 0.4), colour(i, 0.12)); else series.push(line);
  });
  const of = `${grouped}:${lines.map((l) => l.label).join("|")}`;
  if (curves && of === curvesOf) { curves.setData(data); return; }
  if (curves) curves.destroy();
  curvesOf = of;
  curves = new uPlot({
    width: $("curves").clientWidth || 600, height: 240, series, bands,
    axes: [{ label: "images seen", stroke: cssVar("--chart-axis") }, { label: "SWD ×1e3", stroke: cssVar("--chart-axis") }],
    scales: { x: { time: false } },
  }, data, $("curves"));
}

function showScatterChoices(axes) {
  const select = $("scatter-x");
  if (select.options.length === axes.length) return;
  select.replaceChildren(...axes.map((a) => el("option", { value: a.name, text: a.name })));
}

function draw() {
  const axes = axesOf(sweep);
  showHead(sweep);
  showScatterChoices(axes);
  drawParallel($("parallel"), sweep, axes);
  drawScatter($("scatter"), sweep, axes, $("scatter-x").value);
  showCurves(sweep, axes, $("group-seeds").checked);
  showTable($("sweep-table"), sweep, axes, $("group-seeds").checked);
  if (!performance.getEntriesByName("first-sweep-paint").length) performance.mark("first-sweep-paint");  // bench/first_paint.py
}

async function refresh() {
  try {
    const next = await fetchJSON(`/api/sweeps/${sweepId}`);
    $("sweep-offline").hidden = true;
    if (JSON.stringify(next) !== JSON.stringify(sweep)) {
      sweep = next;
      draw();
    }
  } catch (error) {
    if (error.status === 404) { $("sweep-summary").textContent = "This sweep was deleted."; return false; }
    $("sweep-offline").hidden = false;
  }
  return true;
}

async function poll() {
  if (await refresh() && (!sweep || sweep.status === "active")) setTimeout(poll, POLL_MS);
}

async function act(action, button) {
  $("sweep-error").hidden = true;
  button.disabled = true;
  try {
    if (action === "delete") {
      if (!confirm(`Delete sweep ${sweep.name} and its ${sweep.runs.length} runs, with their files?`)) return;
      await fetchJSON(`/api/sweeps/${sweepId}`, { method: "DELETE" });
      window.location.href = "/";
      return;
    }
    sweep = await fetchJSON(`/api/sweeps/${sweepId}/${action}`, { method: "POST" });
    draw();
    if (action === "resume") setTimeout(poll, POLL_MS);
  } catch (error) {
    $("sweep-error").textContent = `${action} failed: ${error.message}`;
    $("sweep-error").hidden = false;
  } finally {
    button.disabled = false;
  }
}

for (const action of ["cancel", "resume", "delete"]) {
  const button = $(`sweep-${action}`);
  button.addEventListener("click", () => act(action, button));
}
$("scatter-x").addEventListener("change", () => sweep && draw());
$("group-seeds").addEventListener("change", () => sweep && draw());
window.addEventListener("themechange", () => { curvesOf = ""; if (sweep) draw(); });  // axes take the new colours
new ResizeObserver(() => {
  if (!sweep) return;
  if (curves) curves.setSize({ width: $("curves").clientWidth, height: 240 });
  draw();
}).observe(document.querySelector("main"));

poll();
