// The config diff: the keys whose values differ between the runs compared (or all of them), one column per run.
import { el } from "../common.js";

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// The config keys of any of the runs, sorted, and which of them differ (a key one run lacks differs).
export function configKeys(configs, all = false) {
  const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))].sort();
  return all ? keys : keys.filter((k) => configs.some((c) => !same(c[k], configs[0][k])));
}

const text = (v) => (v === undefined ? "–" : v === null ? "none" : typeof v === "object" ? JSON.stringify(v) : String(v));

export function showConfigDiff(table, note, runs, all) {
  const known = runs.filter((r) => r.run);
  const keys = configKeys(known.map((r) => r.run.config), all);
  const differing = new Set(configKeys(known.map((r) => r.run.config)));
  table.tHead.replaceChildren(el("tr", {}, el("th", { text: "key" }), ...known.map((r) =>
    el("th", { style: `border-bottom: 3px solid ${r.colour}` }, el("a", { href: `/runs/${r.id}`, text: `#${r.id} ${r.run.name}` })))));
  table.tBodies[0].replaceChildren(...keys.map((key) => el("tr", { "data-key": key, class: differing.has(key) ? "differs" : "" },
    el("th", { scope: "row", text: key }), ...known.map((r) => el("td", { text: text(r.run.config[key]) })))));
  note.hidden = known.length < 2 || differing.size > 0 || all;
  table.hidden = keys.length === 0;
}
