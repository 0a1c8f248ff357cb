// The sample-quality chart: per epoch, the sliced Wasserstein distance (every epoch) and FID (when its time budget
// allowed one), lower is better. Two y axes: SWD on the left, FID on the right; KID is in the legend of each point.
import { fmt } from "../common.js";
import { showLatestInLegend, themedAxis, valuesOnceDrawn } from "./charts.js";

const SWD = "#0d9488", FID = "#9333ea";

export class QualityChart {
  constructor(box) {
    this.box = box;
    this.byEpoch = new Map();   // epoch -> {swd, fid, kid}
    const opts = {
      width: box.clientWidth,
      height: window.innerWidth < 600 ? 160 : 180,
      scales: { x: { time: false }, swd: { range: (u, lo, hi) => uPlot.rangeNum(lo ?? 0, hi ?? 1, 0.1, true) },
                fid: { range: (u, lo, hi) => uPlot.rangeNum(lo ?? 0, hi ?? 1, 0.1, true) } },
      axes: [
        themedAxis({ label: "epoch", labelSize: 18, size: 34, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }),
        themedAxis({ scale: "swd", label: "SWD", labelSize: 18, size: 46, stroke: SWD }),
        themedAxis({ scale: "fid", label: "FID", labelSize: 18, size: 46, side: 1, grid: { show: false }, stroke: FID,
                     values: valuesOnceDrawn("fid") }),
      ],
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      legend: { live: true },
      series: [
        { label: "epoch" },
        { label: "SWD ×1e3", scale: "swd", stroke: SWD, width: 2, spanGaps: true, value: (u, v) => fmt(v) },
        { label: "FID", scale: "fid", stroke: FID, width: 2, spanGaps: true, points: { show: true, size: 6 },
          value: (u, v, si, i) => (v === null || v === undefined ? "–" : `${fmt(v)} (KID ${fmt(this.kidAt(i))})`) },
      ],
      hooks: { setCursor: [showLatestInLegend] },
    };
    this.uplot = new uPlot(opts, [[0, 1], [null, null], [null, null]], box);
  }

  // What the worker computed FID at (the run's `fid_at`, e.g. "75 px, CPU"): a CPU's score is not a GPU's.
  setResolution(at) {
    if (!at || at === this.at) return;
    this.at = at;
    const label = this.uplot.root.querySelectorAll(".u-legend .u-series")[2]?.querySelector(".u-label");
    if (label) label.textContent = `FID (${at})`;
    this.uplot.series[2].label = `FID (${at})`;
  }

  kidAt(i) {
    const epoch = this.uplot.data[0][i];
    return this.byEpoch.get(epoch)?.kid ?? null;
  }

  // Samples as the server lists them: [{epoch, swd, fid, kid, ...}]; more epochs merge in.
  add(samples) {
    for (const s of samples) if (s && s.swd !== undefined) this.byEpoch.set(s.epoch, s);
    const epochs = [...this.byEpoch.keys()].sort((a, b) => a - b);
    if (!epochs.length) return;
    const get = (k) => epochs.map((e) => this.byEpoch.get(e)[k] ?? null);
    this.uplot.setData([epochs, get("swd"), get("fid")]);
    showLatestInLegend(this.uplot);
  }

  clear() {
    this.byEpoch.clear();
    this.uplot.setData([[0, 1], [null, null], [null, null]]);
  }

  recolour() {
    this.uplot.redraw(false);
  }

  fit() {
    if (this.box.clientWidth && this.uplot.width !== this.box.clientWidth) {
      this.uplot.setSize({ width: this.box.clientWidth, height: this.uplot.height });
    }
  }
}
