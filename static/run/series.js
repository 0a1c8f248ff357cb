// A run's metric history as the page holds it, and the smoothing: pure functions, no DOM, no I/O.
//
// The server groups rows into buckets of `width` steps (bucket b holds steps b*width+1 .. (b+1)*width; app/history.py)
// and sends, per bucket, the last step, and per series the mean, min, max and count. Live rows are put into the same
// buckets here, so the page holds the same means whether it watched the run live or was reloaded, and so smooths the
// same series. width is fixed by the run's planned steps: at most ~2,000 buckets, however long the run.

export const bucketOf = (step, width) => Math.floor((step - 1) / width);

// {width, totalSteps, step: [], epoch: [], time: [], rows: [], series: {name: {sum: [], min: [], max: [], count: []}}}
// time: the newest wall time (Unix seconds) in each bucket, for charts drawn over time (the comparison page).
export function emptyHistory(names, width = 1, totalSteps = null) {
  const series = {};
  for (const name of names) series[name] = { sum: [], min: [], max: [], count: [] };
  return { width, totalSteps, step: [], epoch: [], time: [], rows: [], series };
}

export const lastStep = (h) => (h.step.length ? h.step[h.step.length - 1] : 0);
export const rowCount = (h) => h.rows.reduce((a, b) => a + b, 0);

const finite = (v) => v !== null && v !== undefined && Number.isFinite(v);

// Adds one bucket's aggregates (sum, min, max, count per series) to `h`, into its newest bucket when they share one.
function add(h, step, epoch, time, rows, values) {
  const n = h.step.length;
  if (n && bucketOf(h.step[n - 1], h.width) === bucketOf(step, h.width)) {
    h.step[n - 1] = step;
    h.epoch[n - 1] = epoch;
    h.time[n - 1] = time ?? h.time[n - 1];
    h.rows[n - 1] += rows;
    for (const [name, s] of Object.entries(h.series)) {
      const v = values(name);
      if (!v.count) continue;
      s.sum[n - 1] += v.sum;
      s.count[n - 1] += v.count;
      s.min[n - 1] = s.min[n - 1] === null ? v.min : Math.min(s.min[n - 1], v.min);
      s.max[n - 1] = s.max[n - 1] === null ? v.max : Math.max(s.max[n - 1], v.max);
    }
    return;
  }
  h.step.push(step);
  h.epoch.push(epoch);
  h.time.push(time ?? null);
  h.rows.push(rows);
  for (const [name, s] of Object.entries(h.series)) {
    const v = values(name);
    s.sum.push(v.count ? v.sum : 0);
    s.count.push(v.count);
    s.min.push(v.count ? v.min : null);
    s.max.push(v.count ? v.max : null);
  }
}

// Merges a snapshot's buckets (all after the last step `h` holds). Returns false when they were made with another
// width than `h` holds: the caller then starts again from a full snapshot.
export function addBuckets(h, m) {
  if (!m || !m.step || !m.step.length) return true;
  if (h.step.length && m.width !== h.width) return false;
  if (!h.step.length) { h.width = m.width; h.totalSteps = m.total_steps ?? null; }
  const last = lastStep(h);
  m.step.forEach((step, i) => {
    if (step <= last) return;
    add(h, step, m.epoch[i], m.time ? m.time[i] : null, m.rows[i], (name) => {
      const a = m[name];
      const count = a ? a.count[i] : 0;
      return count ? { sum: a.mean[i] * count, min: a.min[i], max: a.max[i], count } : { count: 0 };
    });
  });
  return true;
}

// Merges live rows ({step: [], epoch: [], <series>: []}, full resolution). Returns false when they go back before the
// newest step held (a run resumed from a checkpoint repeats steps): the caller starts again from a full snapshot.
export function addRows(h, rows) {
  if (!rows || !rows.step || !rows.step.length) return true;
  if (rows.step[0] <= lastStep(h)) return false;
  rows.step.forEach((step, i) => {
    add(h, step, rows.epoch ? rows.epoch[i] : null, rows.time ? rows.time[i] : null, 1, (name) => {
      const v = rows[name] ? rows[name][i] : null;
      return finite(v) ? { sum: v, min: v, max: v, count: 1 } : { count: 0 };
    });
  });
  return true;
}

export function means(h, name) {
  const s = h.series[name];
  return s.sum.map((sum, i) => (s.count[i] ? sum / s.count[i] : null));
}

// TensorBoard's smoothing: an exponential moving average over the points that have a value, debiased so the first
// points are not pulled towards zero. weight 0 gives the values back.
export function smooth(values, weight) {
  let last = 0, count = 0;
  return values.map((v) => {
    if (!finite(v)) return null;
    last = last * weight + (1 - weight) * v;
    count += 1;
    return last / (1 - Math.pow(weight, count));
  });
}
