// The sweep page's table: one row per run (its settings, status, best score, final losses, open alerts), or, with
// "group seeds", one row per setting with the mean best score and its min-max over the seeds.
import { el, fmt } from "../common.js";
import { groupBySetting, label, score } from "./data.js";

function head(table, names) {
  table.tHead.rows[0].replaceChildren(...names.map(([text, num]) => el("th", { class: num ? "num" : "", text })));
}

function cell(text, num = false, title = "") {
  return el("td", { class: num ? "num" : "", text, ...(title ? { title } : {}) });
}

export function showTable(table, sweep, axes, grouped) {
  const names = axes.map((a) => a.name);
  if (grouped) {
    head(table, [...names.map((n) => [n]), ["seeds", true], ["best SWD mean", true], ["min – max", true], ["statuses"]]);
    const groups = groupBySetting(sweep.runs, axes).sort((a, b) => (a.mean ?? Infinity) - (b.mean ?? Infinity));
    table.tBodies[0].replaceChildren(...groups.map((g) => el("tr", { "data-setting": g.key },
      ...names.map((n) => cell(label(g.settings[n]))),
      cell(String(g.runs.length), true),
      cell(fmt(g.mean, 2), true),
      cell(g.min === null ? "–" : `${fmt(g.min, 2)} – ${fmt(g.max, 2)}`, true),
      cell([...new Set(g.runs.map((r) => r.status))].join(", ")))));
    return;
  }
  head(table, [["run"], ["status"], ...names.map((n) => [n]), ["seed", true], ["progress"], ["best SWD", true],
    ["loss D / G", true], ["alerts"]]);
  const best = Math.min(...sweep.runs.map(score).filter((s) => s !== null && s !== undefined));
  table.tBodies[0].replaceChildren(...sweep.runs.map((run) => {
    const status = el("td", {}, el("span", { class: `badge ${run.status}`, text: run.status }));
    if (run.error && ["pruned", "failed"].includes(run.status)) status.title = run.error;
    const row = el("tr", { "data-run-id": run.id },
      el("td", {}, el("a", { href: `/runs/${run.id}`, text: `#${run.id} ${run.name}` })),
      status,
      ...names.map((n) => cell(label(run.settings[n]))),
      cell(String(run.settings.seed), true),
      cell(run.total_epochs ? `epoch ${run.epoch} of ${run.total_epochs}` : "–"),
      cell(fmt(run.best_swd, 2), true),
      cell(`${fmt(run.loss_d)} / ${fmt(run.loss_g)}`, true),
      cell(run.alerts.length ? `⚠ ${run.alerts.length}` : "", false, run.alerts.join("\n")));
    if (score(run) === best) row.classList.add("best");
    return row;
  }));
}
