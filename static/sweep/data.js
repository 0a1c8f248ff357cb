// A sweep's runs as the sweep page reads them: its axes (with how to scale each), and its runs grouped by setting
// (every setting but the seed), with the mean, min and max of their best scores.
import { groupBy, spread } from "../seeds.js";

// [{name, log, categorical, values}] for each axis of the sweep's spec, in its order.
export function axesOf(sweep) {
  return Object.entries(sweep.spec.axes).map(([name, axis]) => {
    const values = (sweep.runs || []).map((r) => r.settings[name]);
    const categorical = axis.values !== null && axis.values.some((v) => typeof v !== "number");
    const positive = values.every((v) => typeof v === "number" && v > 0);
    const spread = positive && values.length ? Math.max(...values) / Math.min(...values) : 1;
    const log = !categorical && positive && (axis.log || name.startsWith("lr") || spread >= 10);  // learning rates: log
    return { name, log, categorical, values: axis.values || [axis.min, axis.max] };
  });
}

export const score = (run) => run.best_swd;

// Groups of runs with the same setting: {key, settings, runs, mean, min, max} (scores of the runs that have one).
export function groupBySetting(runs, axes) {
  const settingsOf = (run) => Object.fromEntries(axes.map((a) => [a.name, run.settings[a.name]]));
  return groupBy(runs, (run) => JSON.stringify(settingsOf(run))).map(({ key, items }) => {
    const scores = items.map(score).filter((s) => s !== null && s !== undefined);
    const mean = scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : null;
    return { key, settings: settingsOf(items[0]), runs: items, mean,
             min: scores.length ? Math.min(...scores) : null, max: scores.length ? Math.max(...scores) : null };
  });
}

// A value's position along an axis, 0..1: log or linear for numbers, evenly spaced for a list of other values.
export function scaler(axis, values) {
  if (axis.categorical) {
    const distinct = [...new Set(axis.values.map(String))];
    return (v) => (distinct.length > 1 ? distinct.indexOf(String(v)) / (distinct.length - 1) : 0.5);
  }
  const f = axis.log ? Math.log : (v) => v;
  const numbers = values.filter((v) => typeof v === "number" && (!axis.log || v > 0)).map(f);
  const lo = Math.min(...numbers), hi = Math.max(...numbers);
  return (v) => (hi > lo ? (f(v) - lo) / (hi - lo) : 0.5);
}

export function label(value) {
  if (typeof value !== "number") return String(value);
  return Math.abs(value) > 0 && (Math.abs(value) < 1e-2 || Math.abs(value) >= 1e4) ? value.toExponential(1) : String(+value.toPrecision(4));
}

export function settingLabel(settings) {
  return Object.entries(settings).map(([name, value]) => `${name} ${label(value)}`).join(", ");
}

// The best k curves of SWD by images seen (epoch x images per epoch, fair across batch sizes): one per run, or with
// `grouped` one per setting, the mean over its seeds at each point with the lowest and highest. Best: lowest score.
export function scoreCurves(runs, axes, grouped, k) {
  const groups = grouped ? groupBySetting(runs, axes)
    : runs.map((r) => ({ runs: [r], settings: null, mean: score(r) ?? null }));
  return groups.filter((g) => g.mean !== null).sort((a, b) => a.mean - b.mean).slice(0, k).map((g) => ({
    label: grouped ? settingLabel(g.settings) : `#${g.runs[0].id}`,
    ...spread(g.runs.map((r) => [r.scores.map(([epoch]) => epoch * (r.images_per_epoch || 0)), r.scores.map(([, swd]) => swd)])),
  }));
}
