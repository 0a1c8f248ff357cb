// The run page's charts, one per `chart` named in protocol.METRICS (the server puts the list into the page). Per series:
// the bucket min/max envelope drawn faintly (raw values when a bucket is one step), and the smoothed bucket means solid.
// Rendering only: the caller hands each chart the history to draw.
import { COLORS, cssVar, fmt } from "../common.js";
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
  ink.card = cssVar("--card");
  ink.stop = cssVar("--warn");
  ink.start = cssVar("--muted");
  ink.scored = cssVar("--violet");
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

// Marks across the chart: red at the step of each health alert; dashed amber where an attempt stopped (cancelled,
// failed, interrupted), dotted grey where a later one began from its checkpoint (resumed, restarted, extended), each
// with its label at the top; a violet triangle on the step axis where an epoch scored with FID/KID ended (marks.js).
function drawMarks(chart) {
  const xOf = (u, step) => {
    const x = Math.round(u.valToPos(step, "x", true)) + 0.5;
    return x < u.bbox.left - 1 || x > u.bbox.left + u.bbox.width + 1 ? null : x;  // the last step lies on the edge
  };
  const line = (u, x) => {
    u.ctx.beginPath();
    u.ctx.moveTo(x, u.bbox.top);
    u.ctx.lineTo(x, u.bbox.top + u.bbox.height);
    u.ctx.stroke();
  };
  return (u) => {
    const ctx = u.ctx, px = devicePixelRatio;
    ctx.save();
    ctx.strokeStyle = ALERT_COLOR;
    ctx.lineWidth = 2 * px;
    for (const x of chart.alerts.map((alert) => xOf(u, alert.step))) if (x !== null) line(u, x);
    ctx.lineWidth = 1.5 * px;
    const shown = chart.events.map((mark) => ({ ...mark, x: xOf(u, mark.step) })).filter((mark) => mark.x !== null);
    for (const { kind, x } of shown) {
      ctx.strokeStyle = kind === "stop" ? ink.stop : ink.start;
      ctx.setLineDash(kind === "stop" ? [5 * px, 3 * px] : [2 * px, 3 * px]);
      line(u, x);
    }
    ctx.font = `${11 * px}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";  // uPlot leaves the last axis's alignment set
    const rows = [];  // per label row, the right end of the last label in it: labels at one place stack downwards
    for (const { kind, label, x } of shown) {
      const width = ctx.measureText(label).width + 6 * px;
      // Right of its line, unless that crosses another mark's line or the edge and the left does not.
      const crosses = (a, b) => a < u.bbox.left || b > u.bbox.left + u.bbox.width + 1 || shown.some((m) => m.x > a && m.x < b);
      const left = crosses(x, x + width) && !crosses(x - width, x) ? x - width : x;
      let row = rows.findIndex((end) => end <= left);
      if (row < 0) row = rows.length;
      if (row > 2) continue;  // too many in one place: the line shows, the key under the charts names it
      rows[row] = left + width;
      const top = u.bbox.top + (2 + row * 15) * px;
      ctx.fillStyle = ink.card;
      ctx.fillRect(left + px, top - px, width - 2 * px, 14 * px);
      ctx.fillStyle = kind === "stop" ? ink.stop : ink.start;
      ctx.fillText(label, left + 3 * px, top);
    }
    ctx.fillStyle = ink.scored;
    const base = u.bbox.top + u.bbox.height, size = 5 * px;
    for (const { step } of chart.scored) {
      const x = xOf(u, step);
      if (x === null) continue;
      ctx.beginPath();
      ctx.moveTo(x - size, base);
      ctx.lineTo(x + size, base);
      ctx.lineTo(x, base - 1.6 * size);
      ctx.closePath();
      ctx.fill();
    }
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
    this.events = [];  // [{step, kind: "stop" | "start", label}]: where attempts stopped and began (marks.js)
    this.scored = [];  // [{epoch, step}]: where an epoch scored with FID/KID ended
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
        draw: [...(spec.guide === undefined ? [] : [guideAt(spec.guide)]), drawMarks(this)],
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

  // The marks to draw (see drawMarks); redrawn only when they changed.
  setMarks({ alerts = this.alerts, events = this.events, scored = this.scored }) {
    const key = (a, e, s) => JSON.stringify([a.map((m) => m.step), e, s]);
    if (key(alerts, events, scored) === key(this.alerts, this.events, this.scored)) return;
    Object.assign(this, { alerts, events, scored });
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
