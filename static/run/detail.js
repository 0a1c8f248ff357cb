// Full resolution when zoomed. A run of more than ~2,000 steps is drawn in buckets (series.js); zoomed into a range of
// at most DETAIL_STEPS steps, the page fetches that range's raw rows and draws them in place of the buckets they cover,
// the buckets elsewhere unchanged (so a double-click still zooms out to the whole run), until the zoom is reset.
import { fetchJSON } from "../common.js";
import { addRows, bucketOf, emptyHistory } from "./series.js";

export const DETAIL_STEPS = 2000;

// The steps of the whole buckets that hold steps lo..hi: [first, last].
function bucketSpan(lo, hi, width) {
  const first = bucketOf(Math.max(1, Math.ceil(lo)), width) * width + 1;
  return [first, (bucketOf(Math.max(1, Math.floor(hi)), width) + 1) * width];
}

// The raw rows of steps lo..hi (whole buckets) of a run drawn in buckets of `width`, as a history of width 1; null when
// the range is too wide to draw at full resolution or the buckets already are single steps.
export async function fetchDetail(runId, names, width, lo, hi) {
  if (width <= 1 || hi - lo > DETAIL_STEPS) return null;
  const [first, last] = bucketSpan(lo, hi, width);
  const query = new URLSearchParams({ after: first - 1, before: last + 1, max_points: Math.max(10, last - first + 1) });
  const rows = await fetchJSON(`/api/runs/${runId}/metrics?${query}`);
  const raw = emptyHistory(names);
  addRows(raw, rows);
  return { first, last, raw };
}

export const covers = (detail, lo, hi) => detail.first <= lo && hi <= detail.last;

const COLUMNS = ["step", "epoch", "time", "rows"];
const AGGREGATES = ["sum", "min", "max", "count"];

// `h` with the buckets inside the detail's steps replaced by its raw rows. A bucket still filling past them (a live
// run) stays a bucket.
export function withDetail(h, detail) {
  const out = emptyHistory(Object.keys(h.series), h.width, h.totalSteps);
  const before = h.step.findIndex((step) => step >= detail.first);
  const after = h.step.findIndex((step) => step > detail.last);
  const parts = [[h, 0, before < 0 ? h.step.length : before], [detail.raw, 0, detail.raw.step.length],
    [h, after < 0 ? h.step.length : after, h.step.length]];
  for (const [source, from, to] of parts) {
    for (const column of COLUMNS) out[column].push(...source[column].slice(from, to));
    for (const [name, s] of Object.entries(out.series)) {
      for (const a of AGGREGATES) s[a].push(...source.series[name][a].slice(from, to));
    }
  }
  return out;
}
