// Seeds grouped, for the sweep page and /compare: runs that differ only in their seed as one group, drawn as the mean
// over its runs with a band from the lowest to the highest. Pure functions and uPlot series specs, no DOM.

// Items grouped by `keyOf(item)`: [{key, items}] in the order each key first appears.
export function groupBy(items, keyOf) {
  const groups = new Map();
  for (const item of items) {
    const key = keyOf(item);
    if (!groups.has(key)) groups.set(key, { key, items: [] });
    groups.get(key).items.push(item);
  }
  return [...groups.values()];
}

const present = (v) => v !== null && v !== undefined && Number.isFinite(v);

// A group's members, each [xs, ys], as one curve {xs, mean, lo, hi}: every x any member has (ascending), and there the
// mean, min and max of the members' values (null where none has one). Members that share their xs (runs of one config:
// the same steps) give columns that line up, whichever ys they are called with.
export function spread(members) {
  const at = new Map();
  for (const [xs, ys] of members) {
    xs.forEach((x, i) => {
      if (x === null || x === undefined) return;
      if (!at.has(x)) at.set(x, []);
      if (present(ys[i])) at.get(x).push(ys[i]);
    });
  }
  const xs = [...at.keys()].sort((a, b) => a - b);
  const of = (f) => xs.map((x) => (at.get(x).length ? f(at.get(x)) : null));
  return { xs, mean: of((v) => v.reduce((a, b) => a + b, 0) / v.length), lo: of((v) => Math.min(...v)), hi: of((v) => Math.max(...v)) };
}

// Adds a curve's mean, min and max series to a uPlot `series` list (in that order, as spread's columns are read:
// mean, lo, hi), and the band between min and max to `bands`. line: the mean's series spec; faded: the min and max
// lines' colour; fill: the band's.
export function addBand(series, bands, line, faded, fill) {
  const edge = (name) => ({ ...line, label: `${line.label} ${name}`, stroke: faded, width: 1, points: { show: false } });
  series.push(line, edge("min"), edge("max"));
  bands.push({ series: [series.length - 1, series.length - 2], fill });
}
