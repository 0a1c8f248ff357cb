// The run page's charts, one per `chart` named in protocol.METRICS (the server puts the list into the page). Per series:
// the bucket min/max envelope drawn faintly (raw values when a bucket is one step), and the smoothed bucket means solid.
// Rendering only: the caller hands each chart the history to draw.
import { means, smooth } from "./series.js";

// Where each chart of the protocol goes, and how its y axis reads.
const KINDS = {
  loss: { box: "loss-chart", smoothing: "smoothing", yLabel: "loss" },
  d: { box: "dgz-chart", smoothing: "smoothing-d", yLabel: "D output", range: [0, 1], guide: 0.5 },
  grad: { box: "grad-chart", smoothing: "smoothing-grad", yLabel: "gradient L2 norm" },
};
const ALERT_COLOR = "#dc2626";
// The always-shown series of a chart take D's blue and then G's orange (in protocol order: D's series come first);
// optional ones the colours after.
const PALETTE = [[COLORS.d, COLORS.dRaw], [COLORS.g, COLORS.gRaw], ["#0d9488", "rgba(13, 148, 136, 0.25)"],
  ["#9333ea", "rgba(147, 51, 234, 0.25)"]];
export const STEP_INCRS = [];  // whole steps only on the x axis
for (let p = 1; p <= 1e9; p *= 10) STEP_INCRS.push(p, 2 * p, 5 * p);

export const chartHeight = () => (window.innerWidth < 600 ? 190 : 230);

export function stepLabel(v) {
  const a = Math.abs(v);
  return a >= 1e6 ? `${+(v / 1e6).toFixed(2)}M` : a >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : String(v);
}

function lastIndexes(u) {  // per series, the newest point that has a value (loss_g is null where G did not step)
  return u.data.map((values) => {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return i;
    return null;
  });
}

export function showLatestInLegend(u) {  // with the cursor off the chart, the legend shows the newest values
  if (u.cursor.idx === null || u.cursor.idx === undefined || u.cursor.left < 0) u.setLegend({ idxs: lastIndexes(u) }, false);
}

// Before the first point, charts draw their axes over steps 0..1, so nothing moves when the data arrives.
const placeholder = (n) => [[0, 1], ...Array.from({ length: n }, () => [null, null])];

export function autoRange(u, min, max) {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 2];
  return uPlot.rangeNum(min, max, 0.1, true);
}

function logRange(u, min, max) {  // log scale: only values above 0 are drawn (the others are left out of the data)
  if (!(min > 0) || !(max > 0) || !Number.isFinite(max)) return [0.1, 10];
  return uPlot.rangeLog(min, max, 10, true);
}

const positive = (values) => values.map((v) => (v > 0 ? v : null));

// Axis text and grid lines in the theme's colours (style.css), read when the theme changes, not on every draw.
const ink = {};
function readInk() {
  ink.axis = cssVar("--chart-axis");
  ink.grid = cssVar("--chart-grid");
}
readInk();
window.addEventListener("themechange", readInk);
export const themedAxis = (axis) => ({ stroke: () => ink.axis, grid: { stroke: () => ink.grid, width: 1 },
  ticks: { stroke: () => ink.grid, width: 1 }, ...axis });

// Tick values for an axis whose series may never get a value (FID when its time budget allows none): blank until one
// does, instead of a made-up 0..2; the axis keeps its room, so nothing moves when the first value arrives.
export const valuesOnceDrawn = (scale) => (u, ticks) => {
  const drawn = u.series.some((s, i) => i > 0 && s.scale === scale && u.data[i].some((v) => v !== null && v !== undefined));
  return ticks.map((v) => (drawn && v !== null ? uPlot.fmtNum(v) : ""));
};

// Vertical lines across the chart: red at the step of each health alert, dotted grey where an attempt after the first
// began (a resume or a restart: the run went on from its checkpoint there).
function alertMarks(chart) {
  const line = (u, step) => {
    const x = Math.round(u.valToPos(step, "x", true)) + 0.5;
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
    u.ctx.beginPath();
    u.ctx.moveTo(x, u.bbox.top);
    u.ctx.lineTo(x, u.bbox.top + u.bbox.height);
    u.ctx.stroke();
  };
  return (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = ALERT_COLOR;
    ctx.lineWidth = 2 * devicePixelRatio;
    for (const alert of chart.alerts) line(u, alert.step);
    ctx.strokeStyle = COLORS.guide;
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([2 * devicePixelRatio, 3 * devicePixelRatio]);
    for (const restart of chart.restarts) line(u, restart.step);
    ctx.restore();
  };
}

export function guideAt(value) {  // a dashed line across the chart, e.g. 0.5 where D cannot tell real from generated
  return (u) => {
    const y = Math.round(u.valToPos(value, "y", true)) + 0.5;
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
  };
}

// One chart: `metrics` are the protocol's entries for it ({name, label, chart, optional}). uPlot series 3k+1 and 3k+2
// are metric k's bucket min and max (a band between them), 3k+3 its smoothed means (the one in the legend).
export class Chart {
  constructor(kind, metrics, syncKey) {
    const spec = KINDS[kind];
    this.kind = kind;
    this.metrics = metrics;
    this.box = document.getElementById(spec.box);
    this.slider = document.getElementById(spec.smoothing);
    this.means = {};
    this.width = 1;
    this.zoomed = false;
    this.log = false;
    this.alerts = [];  // [{step, kind, ...}]: marked on the chart
    this.restarts = [];  // [{attempt, step}]: where a later attempt began, marked too
    this.syncKey = syncKey;
    this.spec = spec;
    this.points = 0;
    this.onZoom = () => {};  // called with the x range [min, max] zoomed into, or null when the zoom is reset
    this.uplot = new uPlot(this.options(), placeholder(3 * metrics.length), this.box);
    this.decorateLegend();
  }

  // The uPlot options; made again (and the chart with them) when the y axis turns logarithmic or back.
  options() {
    const spec = this.spec;
    let shown = 0, optional = 2;
    const series = [], bands = [];
    this.metrics.forEach((m, k) => {
      const [solid, faint] = PALETTE[m.optional ? optional++ : shown++] || PALETTE[PALETTE.length - 1];
      const show = !m.optional;
      series.push(
        { label: `${m.label} min`, stroke: faint, width: 1, spanGaps: true, points: { show: false }, show },
        { label: `${m.label} max`, stroke: faint, width: 1, spanGaps: true, points: { show: false }, show },
        { label: m.label, stroke: solid, width: 2, spanGaps: true, show, value: this.legendValue(m.name) },
      );
      bands.push({ series: [3 * k + 2, 3 * k + 1], fill: faint });
    });
    return {
      width: this.box.clientWidth,
      height: chartHeight(),
      scales: { x: { time: false }, y: this.log ? { distr: 3, log: 10, range: logRange } : { range: spec.range || autoRange } },
      axes: [
        themedAxis({ label: "step", labelSize: 18, size: 34, incrs: STEP_INCRS, values: (u, ticks) => ticks.map(stepLabel) }),
        themedAxis({ label: this.log ? `${spec.yLabel} (log)` : spec.yLabel, labelSize: 18, size: 46 }),
      ],
      legend: { live: true },
      cursor: {
        sync: { key: this.syncKey },             // hover one chart, see the same step on the other
        drag: { x: true, y: false },         // drag to zoom into steps, double-click to zoom out
        hover: { skip: [null] },             // a step where a series has no value shows its nearest value
        points: { size: 7 },
      },
      series: [{ label: "step", value: (u, v) => (v === null || v === undefined || !this.points ? "–" : v.toLocaleString()) }, ...series],
      bands,
      hooks: {
        setCursor: [showLatestInLegend],
        setScale: [(u, key) => {
          if (key !== "x" || !u.data[0].length) return;
          const xs = u.data[0];
          const zoomed = u.scales.x.min > xs[0] || u.scales.x.max < xs[xs.length - 1];
          // A chart that was not zoomed and still is not (its data grew) says nothing: another chart may be zoomed.
          if (zoomed || this.zoomed) this.onZoom(zoomed ? [u.scales.x.min, u.scales.x.max] : null);
          this.zoomed = zoomed;
        }],
        setSeries: [(u, i, opts) => {  // a click on a legend entry shows or hides its envelope with it
          if (i === null || i % 3 !== 0 || opts.show === undefined) return;
          for (const j of [i - 2, i - 1]) if (u.series[j].show !== opts.show) u.setSeries(j, { show: opts.show });
        }],
        draw: [...(spec.guide === undefined ? [] : [guideAt(spec.guide)]), alertMarks(this)],
      },
    };
  }

  decorateLegend() {
    this.uplot.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => {
      if (i > 0 && i % 3 !== 0) row.hidden = true;
      else if (i > 0) row.title = "click to show or hide";
    });
  }

  setLog(on) {
    this.log = on;
    this.zoomed = false;
    this.uplot.destroy();
    this.uplot = new uPlot(this.options(), placeholder(3 * this.metrics.length), this.box);
    this.decorateLegend();
  }

  recolour() {
    this.uplot.redraw(false);
  }

  weight() {
    return Number(this.slider.value);
  }

  legendValue(name) {
    return (u, v, si, idx) => {
      if (v === null || v === undefined) return "–";
      const r = idx === null || idx === undefined || !this.means[name] ? null : this.means[name][idx];
      const what = this.width > 1 ? "mean" : "raw";
      return this.weight() > 0 && r !== null && r !== undefined ? `${fmt(v)} (${what} ${fmt(r)})` : fmt(v);
    };
  }

  smoothed(h, name) {
    return smooth(means(h, name), this.weight());
  }

  draw(h) {
    const u = this.uplot;
    this.points = h.step.length;
    this.width = h.width;
    if (!h.step.length) {  // emptied by a resync
      u.setData(placeholder(u.series.length - 1));
      return;
    }
    const data = [h.step];
    for (const m of this.metrics) {
      const s = h.series[m.name];
      this.means[m.name] = means(h, m.name);
      const lines = [s.min, s.max, smooth(this.means[m.name], this.weight())];
      data.push(...(this.log ? lines.map(positive) : lines));
    }
    u.setData(data, !this.zoomed);
    showLatestInLegend(u);
  }

  setMarks(alerts, restarts) {
    const steps = (list) => list.map((a) => a.step).join();
    if (steps(alerts) === steps(this.alerts) && steps(restarts) === steps(this.restarts)) return;
    this.alerts = alerts;
    this.restarts = restarts;
    this.uplot.redraw(false);
  }

  fit() {
    const u = this.uplot;
    if (this.box.clientWidth && (u.width !== this.box.clientWidth || u.height !== chartHeight())) {
      u.setSize({ width: this.box.clientWidth, height: chartHeight() });
    }
  }
}

// The charts for the protocol's metric list, in the order the list first names each chart.
export function makeCharts(metrics, syncKey) {
  const kinds = [...new Set(metrics.map((m) => m.chart))].filter((k) => KINDS[k]);
  return Object.fromEntries(kinds.map((k) => [k, new Chart(k, metrics.filter((m) => m.chart === k), syncKey)]));
}
