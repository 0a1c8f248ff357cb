// The comparison page's overlaid charts: per line (a run, or a group of runs that differ only in their seed: their mean
// with a min-max band) one colour, per metric one dash style, all on one x axis (step, epoch, wall time or images seen).
// Lines have different x values, so their columns are merged with uPlot.join (a line has no value at another's x;
// spanGaps draws it across). Rendering only: the caller hands each chart the lines to draw.
import { fmt, humanSeconds } from "../common.js";
import "../chartpng.js";  // the chart cards' PNG buttons
import { addBand } from "../seeds.js";
import { autoRange, chartHeight, guideAt, showLatestInLegend, STEP_INCRS, stepLabel, themedAxis, valuesOnceDrawn } from "../run/charts.js";

// Ten colours that stay apart on light and dark backgrounds: the page compares at most ten runs (app/pages.py).
export const RUN_COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777",
  "#4b5563", "#65a30d"];
export const runColor = (index) => RUN_COLORS[index % RUN_COLORS.length];
const DASHES = [[], [6, 4]];  // the chart's first metric solid, the second dashed

export const X_LABELS = { step: "step", epoch: "epoch", time: "seconds since the run started", images: "images seen" };
const COUNTED = ["step", "images"];  // whole numbers, ticked as 20k, 1.5M

// One run's x values for its buckets: steps, fractional epochs (step / steps per epoch, so epochs do not come in
// stairs), seconds since the run started (its start time, else its first bucket's time), or images seen (step x
// batch size, so that runs of different batch sizes line up by the data they trained on).
export function xValues(h, run, axis) {
  if (axis === "images") return h.step.map((s) => s * run.config.batch_size);
  if (axis === "epoch") {
    const perEpoch = run.total_steps && run.total_epochs ? run.total_steps / run.total_epochs : null;
    return perEpoch ? h.step.map((s) => s / perEpoch) : h.epoch.slice();
  }
  if (axis === "time") {
    const started = run.started_at ? Date.parse(run.started_at) / 1000 : null;
    const t0 = started ?? h.time.find((t) => t !== null) ?? 0;
    return h.time.map((t) => (t === null ? null : Math.max(0, t - t0)));
  }
  return h.step.slice();
}

// [[x, y1, y2, ...], ...] per run -> one uPlot data table; a run with no points keeps its columns (all empty).
export function joinRuns(tables) {
  const filled = tables.filter((t) => t[0].length);
  if (!filled.length) return [[0, 1], ...tables.flatMap((t) => t.slice(1).map(() => [null, null]))];
  const joined = filled.length === 1 ? filled[0] : uPlot.join(filled);
  const out = [joined[0]];
  let k = 1;
  for (const t of tables) {
    if (t[0].length) { out.push(...joined.slice(k, k + t.length - 1)); k += t.length - 1; }
    else out.push(...t.slice(1).map(() => joined[0].map(() => null)));
  }
  return out;
}

export class OverlayChart {
  // metrics: [{name, label}] drawn per line; lines (setLines): [{label, colour, band}]; opts: {range, guide, yLabel, scaleOf,
  // scales ({key: {label, range, side, optional: no tick values until a series on it has one}}), wholeX (x ticks at
  // whole numbers only: the quality chart's x is always whole epochs)}.
  constructor(box, metrics, opts = {}) {
    Object.assign(this, { box, metrics, opts, axis: "step", lines: [] });
    this.uplot = null;
    this.make();
  }

  make() {
    if (this.uplot) this.uplot.destroy();
    const series = [{ label: X_LABELS[this.axis], value: (u, v) => (v === null || v === undefined ? "–" : this.xText(v)) }];
    const bands = [];
    for (const line of this.lines) {
      this.metrics.forEach((m, k) => {
        const spec = { label: `${line.label} · ${m.label}`, stroke: line.colour, dash: DASHES[k % DASHES.length], width: 2,
          spanGaps: true, points: { show: false }, scale: this.opts.scaleOf ? this.opts.scaleOf(m) : "y", value: (u, v) => fmt(v) };
        if (line.band) addBand(series, bands, spec, `${line.colour}80`, `${line.colour}24`); else series.push(spec);
      });
    }
    const axes = [themedAxis({ label: X_LABELS[this.axis], labelSize: 18, size: 34,
      ...(COUNTED.includes(this.axis) || this.opts.wholeX ? { incrs: STEP_INCRS, values: (u, ticks) => ticks.map(stepLabel) } : {}) })];
    const scales = { x: { time: false } };
    for (const [key, spec] of Object.entries(this.opts.scales || { y: { label: this.opts.yLabel, range: this.opts.range } })) {
      scales[key] = { range: spec.range || autoRange };
      axes.push(themedAxis({ scale: key, label: spec.label, labelSize: 18, size: 46, ...(spec.optional ? { values: valuesOnceDrawn(key) } : {}),
                             ...(spec.side ? { side: spec.side, grid: { show: false } } : {}) }));
    }
    this.uplot = new uPlot({
      width: this.box.clientWidth, height: chartHeight(), scales, axes, series, bands,
      legend: { live: true },
      cursor: { drag: { x: true, y: false }, hover: { skip: [null, undefined] }, points: { size: 6 } },
      hooks: { setCursor: [showLatestInLegend], draw: this.opts.guide === undefined ? [] : [guideAt(this.opts.guide)] },
    }, joinRuns(this.lines.map((l) => [[], ...Array(this.metrics.length * (l.band ? 3 : 1)).fill([])])), this.box);
  }

  // Remade only when the lines change (a run's name arrives, seeds grouped or not): uPlot's series are fixed.
  setLines(lines) {
    if (JSON.stringify(lines) === JSON.stringify(this.lines)) return;
    this.lines = lines;
    this.make();
  }

  xText(v) {
    if (COUNTED.includes(this.axis) || this.opts.wholeX) return Math.round(v).toLocaleString();
    return this.axis === "epoch" ? v.toFixed(2) : humanSeconds(v);
  }

  setAxis(axis) {
    if (axis === this.axis) return;
    this.axis = axis;
    this.make();
  }

  // tables: per line (in this.lines' order) [x values, then per metric its values (with a band: mean, min, max)].
  draw(tables) {
    this.uplot.setData(joinRuns(tables));
    showLatestInLegend(this.uplot);
  }

  seriesLabels() {
    return this.uplot.series.slice(1).map((s) => s.label);
  }

  recolour() {
    this.uplot.redraw(false);
  }

  fit() {
    const u = this.uplot;
    if (this.box.clientWidth && (u.width !== this.box.clientWidth || u.height !== chartHeight())) {
      u.setSize({ width: this.box.clientWidth, height: chartHeight() });
    }
  }
}
