// The runs, drawn: the list view (a row per run with its latest grid, progress and figures, updated in place by run id)
// or the table view (every run's config and final figures, one column each).
import { el, etaSeconds, fmt, humanSeconds, imagesPerSecond, localTime, progressFraction, progressLabel, runDuration, setBadge } from "../common.js";
import { pickBox } from "./bulk.js";
import { cellText, COLUMN, COLUMNS } from "./columns.js";

function runRow(run) {
  const row = el("tr", { "data-run-id": run.id });
  row.innerHTML = `
    <td class="pick"></td>
    <td class="thumb"><a tabindex="-1"><img alt="" width="48" height="48" hidden><span class="thumb-empty"></span></a></td>
    <td class="name"><a class="run-link"></a><div class="muted small run-config"></div><div class="tags"></div></td>
    <td class="status"><span class="badge"></span> <span class="badge alert-badge" hidden></span></td>
    <td class="progress-cell"><div class="progress small" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div class="bar"></div></div>
      <div class="small muted progress-text"></div></td>
    <td class="num ips" data-label="images/s"></td>
    <td class="num losses" data-label="loss D / G"><span class="d"></span> / <span class="g"></span>
      <div class="small muted quality"></div></td>
    <td class="small started" data-label="started"></td>
    <td class="small duration" data-label="duration"></td>`;
  row.querySelector(".pick").append(pickBox(run));
  return row;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;  // untouched nodes keep the page from repainting
}

function showTags(box, run) {
  const text = JSON.stringify([run.tags, run.archived]);
  if (box.dataset.shown === text) return;
  box.dataset.shown = text;
  box.replaceChildren(...run.tags.map((tag) => el("span", { class: "tag", text: tag })),
    ...(run.archived ? [el("span", { class: "tag archived", text: "archived" })] : []));
}

function updateRow(row, run) {
  const href = `/runs/${run.id}`;
  const link = row.querySelector(".run-link");
  link.href = href;
  row.querySelector(".thumb a").href = href;
  setText(link, run.name);
  const c = run.config;
  setText(row.querySelector(".run-config"), `${c.dataset} · ${c.image_size}px · batch ${c.batch_size}${run.device ? ` · ${run.device}` : ""}`);
  showTags(row.querySelector(".tags"), run);
  const badge = row.querySelector(".badge");
  if (badge.textContent !== run.status) setBadge(badge, run.status);
  const open = (run.alerts || []).filter((a) => a.cleared_step === null);  // health alerts still holding
  const alertBadge = row.querySelector(".alert-badge");
  alertBadge.hidden = open.length === 0;
  setText(alertBadge, open.map((a) => `⚠ ${a.kind.replace("_", " ")}`).join(" "));
  alertBadge.title = open.map((a) => `${a.message} Try: ${a.advice}`).join("\n");
  const percent = progressFraction(run) * 100;
  row.querySelector(".bar").style.width = `${percent.toFixed(1)}%`;
  row.querySelector(".progress").setAttribute("aria-valuenow", percent.toFixed(0));
  const eta = etaSeconds(run);
  setText(row.querySelector(".progress-text"), progressLabel(run) + (eta === null ? "" : ` · ETA ${humanSeconds(eta)}`));
  const ips = imagesPerSecond(run);
  setText(row.querySelector(".ips"), ips === null ? "–" : ips.toFixed(0));
  setText(row.querySelector(".losses .d"), fmt(run.loss_d));
  setText(row.querySelector(".losses .g"), fmt(run.loss_g));
  setText(row.querySelector(".quality"), qualityLine(run));
  const started = row.querySelector(".started");
  setText(started, localTime(run.started_at));
  started.title = run.started_at ? new Date(run.started_at).toString() : `created ${localTime(run.created_at)}`;
  setText(row.querySelector(".duration"), run.started_at ? runDuration(run) : "–");
  const img = row.querySelector(".thumb img");
  if (run.latest_sample && img.getAttribute("src") !== run.latest_sample) img.src = run.latest_sample;
  img.hidden = !run.latest_sample;
  row.querySelector(".thumb-empty").hidden = Boolean(run.latest_sample);
}

// The latest and best sample quality (lower is better), the figures of the table view's SWD and FID columns.
function qualityLine(run) {
  const part = (name, latest, best) => (latest === null || latest === undefined ? "" : `${name} ${fmt(latest, 1)} (best ${fmt(best, 1)})`);
  return [part("SWD", run.swd, run.best_swd), part("FID", run.fid, run.best_fid)].filter(Boolean).join(" · ");
}

export function showList(runs) {
  const body = document.querySelector("#runs-table tbody");
  const existing = new Map([...body.rows].map((row) => [row.dataset.runId, row]));
  runs.forEach((run, i) => {  // rows are updated in place, and moved only when the order changed
    const row = existing.get(String(run.id)) || runRow(run);
    updateRow(row, run);
    if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null);
    existing.delete(String(run.id));
  });
  existing.forEach((row) => row.remove());
}

export function showTable(runs) {
  const table = document.getElementById("compare-table");
  const text = JSON.stringify(runs.map((run) => COLUMNS.map(([key]) => cellText(COLUMN[key], run)).concat(run.id)));
  if (table.dataset.shown === text) return;  // redrawn only when a figure changed: a hover or a selection survives
  table.dataset.shown = text;
  table.tBodies[0].replaceChildren(...runs.map((run) => el("tr", { "data-run-id": run.id }, el("td", { class: "pick" }, pickBox(run)), ...COLUMNS.map(([key]) => {
    const column = COLUMN[key];
    const cell = el("td", { class: `col-${key}${column.kind && column.kind !== "text" ? " num" : ""}`, text: key === "name" ? "" : cellText(column, run) });
    if (key === "name") cell.append(el("a", { href: `/runs/${run.id}`, text: run.name }));
    if (key === "status") cell.replaceChildren(el("span", { class: `badge ${run.status}`, text: run.status }));
    return cell;
  }))));
}
