// The sweep page's two hand-drawn canvases: parallel coordinates (each setting, then the score; one line per run,
// coloured by its score) and a scatter of one setting against the score, seeds grouped as a mean with a min-max bar.
import { cssVar } from "../common.js";
import { groupBySetting, label, scaler, score } from "./data.js";

const PAD = { left: 56, right: 56, top: 24, bottom: 30 };

function prepare(canvas, height) {
  const width = canvas.clientWidth || canvas.parentElement.clientWidth;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.font = "12px system-ui, sans-serif";
  return { ctx, width, height };
}

// Good (low) scores blue, bad red, as a fraction 0 (best) .. 1 (worst); runs without a score grey.
function colour(t) {
  if (t === null) return cssVar("--strong-line");
  return `hsl(${220 - 220 * t}, 75%, 48%)`;
}

function scoreScale(runs) {
  const scores = runs.map(score).filter((s) => s !== null && s !== undefined && s > 0);
  const lo = Math.log(Math.min(...scores)), hi = Math.log(Math.max(...scores));
  return (s) => (s === null || s === undefined || !scores.length ? null : hi > lo ? (Math.log(s) - lo) / (hi - lo) : 0.5);
}

export function drawParallel(canvas, sweep, axes) {
  const { ctx, width, height } = prepare(canvas, 280);
  const runs = sweep.runs;
  const columns = [...axes.map((a) => ({ ...a, at: scaler(a, runs.map((r) => r.settings[a.name])) })),
    { name: "best SWD ×1e3", score: true, at: scoreScale(runs) }];
  const x = (i) => PAD.left + (columns.length > 1 ? (i * (width - PAD.left - PAD.right)) / (columns.length - 1) : 0);
  const y = (t) => PAD.top + (1 - t) * (height - PAD.top - PAD.bottom);
  const byScore = scoreScale(runs);
  ctx.lineWidth = 1.5;
  // The best runs drawn last, on top.
  for (const run of [...runs].sort((a, b) => (score(b) ?? Infinity) - (score(a) ?? Infinity))) {
    const t = byScore(score(run));
    ctx.strokeStyle = colour(t);
    ctx.globalAlpha = t === null ? 0.35 : 0.85;
    ctx.beginPath();
    columns.forEach((c, i) => {
      const v = c.score ? c.at(score(run)) : c.at(run.settings[c.name]);
      const py = y(v === null ? 0 : v);
      if (i) ctx.lineTo(x(i), py); else ctx.moveTo(x(i), py);
    });
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = cssVar("--ink");
  ctx.strokeStyle = cssVar("--chart-axis");
  ctx.lineWidth = 1;
  columns.forEach((c, i) => {
    ctx.beginPath();
    ctx.moveTo(x(i), y(0));
    ctx.lineTo(x(i), y(1));
    ctx.stroke();
    ctx.textAlign = i === 0 ? "left" : i === columns.length - 1 ? "right" : "center";
    ctx.fillText(c.name + (c.log ? " (log)" : ""), x(i), PAD.top - 8);
    const ends = c.score ? runs.map(score).filter((s) => s !== null && s !== undefined && s > 0) : runs.map((r) => r.settings[c.name]);
    if (!ends.length) return;
    const distinct = [...new Set(ends)];  // every value when there are few, else the ends
    const sorted = c.categorical ? [...new Set(c.values.map(String))]
      : distinct.length <= 8 && !c.score ? distinct : [Math.min(...ends), Math.max(...ends)];
    ctx.textAlign = "right";
    for (const v of sorted) ctx.fillText(label(v), x(i) - 4, y(c.at(v)) + 4);
  });
}

export function drawScatter(canvas, sweep, axes, name) {
  const { ctx, width, height } = prepare(canvas, 240);
  const axis = axes.find((a) => a.name === name);
  if (!axis) return;
  const runs = sweep.runs.filter((r) => score(r) !== null && score(r) !== undefined);
  const xs = scaler(axis, sweep.runs.map((r) => r.settings[name]));
  const scores = runs.map(score).filter((s) => s > 0);
  const lo = Math.log(Math.min(...scores) * 0.9), hi = Math.log(Math.max(...scores) * 1.1);
  const x = (v) => PAD.left + 10 + xs(v) * (width - PAD.left - PAD.right - 20);
  const y = (s) => PAD.top + (hi > lo ? 1 - (Math.log(s) - lo) / (hi - lo) : 0.5) * (height - PAD.top - PAD.bottom);
  ctx.strokeStyle = cssVar("--chart-axis");
  ctx.fillStyle = cssVar("--ink");
  ctx.beginPath();
  ctx.moveTo(PAD.left, PAD.top);
  ctx.lineTo(PAD.left, height - PAD.bottom);
  ctx.lineTo(width - PAD.right, height - PAD.bottom);
  ctx.stroke();
  ctx.textAlign = "center";
  ctx.fillText(name + (axis.log ? " (log)" : ""), width / 2, height - 6);
  if (!runs.length) {
    ctx.fillText("no run has a score yet", width / 2, height / 2);
    return;
  }
  ctx.textAlign = "right";
  for (const s of [Math.min(...scores), Math.max(...scores)]) ctx.fillText(label(s), PAD.left - 4, y(s) + 4);
  ctx.textAlign = "center";
  for (const v of new Set(sweep.runs.map((r) => r.settings[name]))) ctx.fillText(label(v), x(v), height - PAD.bottom + 14);
  // Each run a faint dot; each setting (seeds grouped) its mean, with a bar from the lowest to the highest score.
  ctx.fillStyle = cssVar("--muted");
  for (const run of runs) {
    ctx.beginPath();
    ctx.arc(x(run.settings[name]), y(score(run)), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  const byValue = groupBySetting(runs, [axis]);
  ctx.strokeStyle = cssVar("--d");
  ctx.fillStyle = cssVar("--d");
  ctx.lineWidth = 2;
  for (const g of byValue) {
    const gx = x(g.settings[name]);
    ctx.beginPath();
    ctx.moveTo(gx, y(g.min));
    ctx.lineTo(gx, y(g.max));
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(gx, y(g.mean), 4.5, 0, 2 * Math.PI);
    ctx.fill();
  }
}
