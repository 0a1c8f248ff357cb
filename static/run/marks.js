// What the run page marks on its step charts besides the health alerts, as data (charts.js draws them): where an
// attempt stopped (the run JSON's `stops`), where a later one began (`restarts`), and the last step of each epoch that
// got a FID/KID score (the samples' scores; a score arrives in a `score` message after training went on).
import { el } from "../common.js";

// How an attempt that began after a stop is called, by how that stop ended.
const STARTED_AFTER = { interrupted: "restarted", completed: "extended" };
// Stops marked, and their labels; a completed attempt that was extended shows as "extended" where the next began.
const STOPPED = { cancelled: "cancelled", pruned: "pruned", failed: "failed", interrupted: "interrupted" };

// [{step, kind: "stop" | "start", label}] in step order, stops before starts at one step (a cancel, then its resume).
export function eventMarks(run) {
  const stops = run.stops || [];
  const marks = stops.filter((s) => STOPPED[s.status]).map((s) => ({ step: s.step, kind: "stop", label: STOPPED[s.status] }));
  for (const r of run.restarts || []) {
    const before = stops.find((s) => s.attempt === r.attempt - 1);
    marks.push({ step: r.step, kind: "start", label: STARTED_AFTER[before?.status] || "resumed" });
  }
  return marks.sort((a, b) => a.step - b.step || (a.kind === "stop" ? -1 : 1));
}

// Where the epochs scored with FID (`scores`: epoch -> {fid, ...}) ended, [{epoch, step}] in order, as near as the
// history's buckets tell: the newest bucket whose epoch is that one or before (the very step, with one-step buckets).
export function scoredEpochEnds(history, scores) {
  const marks = [];
  for (const [epoch, s] of scores) {
    if (s.fid === null || s.fid === undefined) continue;
    let lo = 0, hi = history.epoch.length;  // the first bucket past the epoch: epochs never go back in a history
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (history.epoch[mid] <= epoch) lo = mid + 1; else hi = mid;
    }
    if (lo > 0) marks.push({ epoch, step: history.step[lo - 1] });
  }
  return marks.sort((a, b) => a.step - b.step);
}

// The key under the charts: each mark there is, in words ("cancelled at step 116"), beside its line's style.
export function showMarkKey(box, { alerts, events, scored }) {
  const item = (kind, text) => el("li", { class: `mark-${kind}` }, el("span", { class: "swatch", "aria-hidden": "true" }), text);
  const list = (what, values) => (values.length > 6 ? `${values.length} ${what}s` : `${what} ${values.map((v) => v.toLocaleString()).join(", ")}`);
  const items = events.map((m) => item(m.kind, `${m.label} at step ${m.step.toLocaleString()}`));
  if (scored.length) items.push(item("scored", `FID/KID scored at the end of ${list("epoch", scored.map((m) => m.epoch))}`));
  if (alerts.length) items.push(item("alert", `health alert at ${list("step", alerts.map((a) => a.step).sort((a, b) => a - b))}`));
  const text = items.map((i) => i.textContent).join("|");
  if (box.dataset.shown === text) return;
  box.dataset.shown = text;
  box.replaceChildren(...items);
  box.hidden = !items.length;
}
