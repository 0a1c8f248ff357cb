// The Machine card: the worker's machine every few seconds (trainer/system.py) over wall-clock time. The speed chart
// gives images/s between two samples (steps trained times the run's batch size over the seconds between them); the
// usage chart the worker's CPU % (100 = one core) and resident memory, and its GPU's utilisation, memory and
// temperature when the run trains on one.
import { showLatestInLegend, themedAxis } from "./charts.js";

const KEEP = 4000;  // samples held: the snapshot brings 2000, live ones add to them
const COLORS = { speed: "#2563eb", cpu: "#ea580c", rss: "#0d9488", gpu: "#9333ea", gpuMem: "#db2777", temp: "#dc2626" };
const GPU_SERIES = [3, 4, 5];  // in the usage chart: hidden unless a sample has GPU values
const fmt = (digits, unit = "") => (u, v) => (v === null || v === undefined ? "–" : `${v.toFixed(digits)}${unit}`);
const range = (u, lo, hi) => uPlot.rangeNum(Math.min(0, lo ?? 0), hi ?? 1, 0.1, true);
// One sample is one instant: uPlot widens a zero-width time range by "a day" counted in milliseconds, which in seconds
// is 1,000 days (axis ticks 2027, 2028, 2029), before it asks this; a minute either side reads as what it is.
function timeRange(u, lo, hi) {
  const xs = u.data[0], first = xs[0], last = xs[xs.length - 1];
  return xs.length && first === last ? [first - 60, last + 60] : [lo, hi];
}

function chart(box, axes, series) {
  const opts = {
    width: box.clientWidth,
    height: window.innerWidth < 600 ? 150 : 170,
    scales: { x: { time: true, range: timeRange }, ...Object.fromEntries(axes.map((a) => [a.scale, { range }])) },
    axes: [themedAxis({ size: 50 }), ...axes.map((a) => themedAxis({ labelSize: 18, size: 50, ...a }))],
    cursor: { drag: { x: true, y: false }, points: { size: 6 } },
    legend: { live: true },
    series: [{ label: "time" }, ...series.map((s) => ({ width: 2, spanGaps: false, ...s }))],
    hooks: { setCursor: [showLatestInLegend] },
  };
  return new uPlot(opts, [[], ...series.map(() => [])], box);
}

export class MachineCard {
  constructor(speedBox, usageBox, note) {
    this.boxes = [speedBox, usageBox];
    this.note = note;
    this.samples = [];
    this.batchSize = null;
    this.active = true;  // the run is queued or running: its samples may yet come
    this.speed = chart(speedBox, [{ scale: "ips", label: "images/s" }],
      [{ label: "images/s", scale: "ips", stroke: COLORS.speed, value: fmt(0) }]);
    this.usage = chart(usageBox, [
      { scale: "pct", label: "% · °C" },
      { scale: "mb", label: "MB", side: 1, grid: { show: false } },
    ], [
      { label: "CPU", scale: "pct", stroke: COLORS.cpu, value: fmt(0, "%") },
      { label: "RSS", scale: "mb", stroke: COLORS.rss, value: fmt(0, " MB") },
      { label: "GPU", scale: "pct", show: false, stroke: COLORS.gpu, value: fmt(0, "%") },
      { label: "GPU memory", scale: "mb", show: false, stroke: COLORS.gpuMem, value: fmt(0, " MB") },
      { label: "GPU temp", scale: "pct", show: false, stroke: COLORS.temp, dash: [4, 3], value: fmt(0, " °C") },
    ]);
  }

  // All the samples the server holds for the run (a snapshot), oldest first.
  set(samples, batchSize) {
    this.batchSize = batchSize;
    this.samples = samples.slice(-KEEP);
    this.draw();
  }

  // Whether the run is active: once it is not, a card without samples says none was taken (a run that ended within
  // its worker's first seconds), and leaves out the empty charts.
  setActive(active) {
    if (active === this.active) return;
    this.active = active;
    this.draw();
  }

  add(sample) {
    this.samples.push(sample);
    if (this.samples.length > KEEP) this.samples.splice(0, this.samples.length - KEEP);
    this.draw();
  }

  // images/s between each sample and the one before of the same attempt; null at an attempt's first sample (a
  // resumed run starts again from its checkpoint, after a pause), where the run went back or no time passed.
  imagesPerSecond() {
    return this.samples.map((s, i) => {
      const prev = this.samples[i - 1];
      if (!prev || !this.batchSize || s.attempt !== prev.attempt || s.step < prev.step || s.time <= prev.time) return null;
      return ((s.step - prev.step) * this.batchSize) / (s.time - prev.time);
    });
  }

  draw() {
    const col = (k) => this.samples.map((s) => s[k] ?? null);
    const time = col("time");
    const none = this.samples.length === 0;
    this.note.hidden = !none;
    this.note.textContent = this.active ? "The first machine sample comes a few seconds after the worker starts."
      : "No machine sample was taken: the run ended before its worker's first one.";
    for (const box of this.boxes) box.hidden = none && !this.active;
    this.speed.setData([time, this.imagesPerSecond()]);
    this.usage.setData([time, col("cpu_percent"), col("rss_mb"), col("gpu_util"), col("gpu_mem_mb"), col("gpu_temp_c")]);
    // GPU series (hidden until a sample has GPU values) shown or hidden only after data: a series hidden and then data
    // set in the same task (an ended run's empty card, then its snapshot) left uPlot's y scales at 0..1, and the CPU
    // and memory lines above the chart.
    const gpu = this.samples.some((s) => s.gpu_util !== null && s.gpu_util !== undefined);
    if (!none) for (const i of GPU_SERIES) if (this.usage.series[i].show !== gpu) this.usage.setSeries(i, { show: gpu });
    showLatestInLegend(this.speed);
    showLatestInLegend(this.usage);
  }

  get count() {
    return this.samples.length;
  }

  recolour() {
    this.speed.redraw(false);
    this.usage.redraw(false);
  }

  fit() {
    [this.speed, this.usage].forEach((u, i) => {
      const width = this.boxes[i].clientWidth;
      if (width && u.width !== width) u.setSize({ width, height: u.height });
    });
  }
}
