// Page `/`: the run list (polled every 2 s, rows updated in place by run id; searched, filtered and sorted; or as a
// table of configs and final figures) and the new-run form built from
// GET /api/form. Submitting POSTs /api/runs and opens the new run; a 422 puts each message beside its field.
"use strict";

const GROUPS = ["data", "model", "optimisation", "schedule", "hardware"];
const POLL_MS = 2000;
const form = document.getElementById("run-form");
let formInfo = null;

// ---- run list --------------------------------------------------------------------------------------------------------
// Filtered and sorted here (the list is small); the filters, the sort and the view live in the URL query, so a reload or
// a shared link shows the same list.

const $ = (id) => document.getElementById(id);
let allRuns = [];

const cfg = (key) => (run) => run.config[key];
const field = (key) => (run) => run[key];
// The table's columns, in order: [key, heading, value, kind]; every key is also a sort key of both views.
const COLUMNS = [
  ["name", "Run", (r) => r.name.toLowerCase(), "text"],
  ["status", "Status", field("status"), "text"],
  ["tags", "Tags", (r) => r.tags.join(", "), "text"],
  ["dataset", "dataset", cfg("dataset"), "text"],
  ["image_size", "image_size", cfg("image_size")],
  ["batch_size", "batch_size", cfg("batch_size")],
  ["nz", "nz", cfg("nz")],
  ["ngf", "ngf", cfg("ngf")],
  ["ndf", "ndf", cfg("ndf")],
  ["lr_g", "lr_g", cfg("lr_g"), "sci"],
  ["lr_d", "lr_d", cfg("lr_d"), "sci"],
  ["beta1", "beta1", cfg("beta1")],
  ["d_every", "d_every", cfg("d_every")],
  ["g_every", "g_every", cfg("g_every")],
  ["epochs", "epochs", cfg("epochs")],
  ["bf16", "bf16", (r) => r.bf16 ?? r.config.bf16, "text"],
  ["device", "device", (r) => r.device ?? r.config.device, "text"],
  ["progress", "progress", progressFraction, "percent"],
  ["step", "step", field("step")],
  ["loss_d", "loss D", field("loss_d"), "fixed"],
  ["loss_g", "loss G", field("loss_g"), "fixed"],
  ["d_x", "D(x)", field("d_x"), "fixed"],
  ["d_g_z", "D(G(z))", field("d_g_z"), "fixed"],
  ["swd", "SWD", field("swd"), "fixed"],
  ["best_swd", "best SWD", field("best_swd"), "fixed"],
  ["fid", "FID", field("fid"), "fixed"],
  ["best_fid", "best FID", field("best_fid"), "fixed"],
  ["ips", "images/s", imagesPerSecond, "int"],
  ["created", "created", field("created_at"), "time"],
];
const COLUMN = Object.fromEntries(COLUMNS.map(([key, label, value, kind]) => [key, { key, label, value, kind }]));
const LIST_SORTS = ["created", "name", "status", "progress", "loss_d", "loss_g", "best_swd", "best_fid", "ips"];  // the list view's
const LOWER_IS_BETTER = new Set(["swd", "best_swd", "fid", "best_fid"]);  // sorted best first: ascending
// The direction a column sorts in when first chosen: names and words A to Z, scores best first, other figures largest first.
const firstDir = (key) => (COLUMN[key].kind === "text" || LOWER_IS_BETTER.has(key) ? "asc" : "desc");

// The state, as the URL query holds it; defaults are left out of the URL.
const DEFAULTS = { q: "", status: "", dataset: "", tag: "", archived: "", config: "", sort: "created", dir: "desc", view: "list" };
const state = { ...DEFAULTS };

function readURL() {
  const params = new URLSearchParams(location.search);
  for (const key of Object.keys(DEFAULTS)) state[key] = params.get(key) ?? DEFAULTS[key];
  if (!COLUMN[state.sort]) state.sort = DEFAULTS.sort;
  if (!["asc", "desc"].includes(state.dir)) state.dir = DEFAULTS.dir;
  if (!["list", "table"].includes(state.view)) state.view = DEFAULTS.view;
}

function writeURL() {
  const params = new URLSearchParams(location.search);  // other parameters (e.g. ?clone=) stay
  for (const [key, value] of Object.entries(state)) {
    if (value === DEFAULTS[key]) params.delete(key); else params.set(key, value);
  }
  const query = params.toString();
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
}

// The config filter: terms like `lr_d=0.001 batch_size>64 dataset=mnist` (`==` is `=`), all of which a run's config
// must meet. Returns {tests: [run -> bool], error: the first term it cannot use, in words}.
const CONFIG_TERM = /^([A-Za-z_][\w.]*)(>=|<=|==|=|>|<)(.+)$/;
function parseConfigFilter(text, runs) {
  const keys = new Set(runs.flatMap((r) => Object.keys(r.config)));
  const tests = [];
  for (const term of text.trim().split(/\s+/).filter(Boolean)) {
    const m = CONFIG_TERM.exec(term);
    if (!m || /^[=<>!]/.test(m[3])) return { tests, error: `"${term}": write key=value, key>value or key<value` };
    const [, key, written, value] = m;
    const op = written === "==" ? "=" : written;
    if (!keys.has(key)) return { tests, error: `"${key}": no run has this config key` };
    const number = value.trim() !== "" && Number.isFinite(Number(value)) ? Number(value) : null;
    if (op !== "=" && number === null) return { tests, error: `"${term}": ${op} needs a number` };
    const compare = { "=": (a, b) => a === b, ">": (a, b) => a > b, "<": (a, b) => a < b, ">=": (a, b) => a >= b, "<=": (a, b) => a <= b }[op];
    tests.push((run) => {
      const have = run.config[key];
      if (number !== null && typeof have === "number") return compare(have, number);
      return op === "=" && String(have ?? "").toLowerCase() === value.toLowerCase();
    });
  }
  return { tests, error: "" };
}
let configFilter = { text: null, runs: null, tests: [], error: "" };  // parsed again when the text or the runs change

function configTests() {
  if (configFilter.text !== state.config || configFilter.runs !== allRuns) {
    configFilter = { text: state.config, runs: allRuns, ...parseConfigFilter(state.config, allRuns) };
  }
  return configFilter.tests;
}

function matches(run) {
  if (!configTests().every((test) => test(run))) return false;
  if (state.archived === "" && run.archived) return false;
  if (state.archived === "only" && !run.archived) return false;
  if (state.status && run.status !== state.status) return false;
  if (state.dataset && run.config.dataset !== state.dataset) return false;
  if (state.tag && !run.tags.includes(state.tag)) return false;
  const needle = state.q.trim().toLowerCase();
  return !needle || [run.name, ...run.tags, run.note || ""].join("\n").toLowerCase().includes(needle);
}

// Missing values sort last whichever the direction; ties keep the newest first.
function compareRuns(a, b) {
  const value = COLUMN[state.sort].value;
  const va = value(a), vb = value(b);
  const missingA = va === null || va === undefined, missingB = vb === null || vb === undefined;
  if (missingA || missingB) return missingA && missingB ? b.id - a.id : missingA ? 1 : -1;
  const order = typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb));
  return (state.dir === "asc" ? order : -order) || b.id - a.id;
}

function shownRuns() {
  return allRuns.filter(matches).sort(compareRuns);
}

// The runs ticked for the comparison page, by id; both views' checkboxes show it, and "Compare (n)" links to it.
const picked = new Set();
const MAX_COMPARED = 10;  // as app/pages.py allows

function pickBox(run) {
  const box = el("input", { type: "checkbox", class: "pick-run", "data-run-id": run.id, "aria-label": `compare ${run.name}` });
  box.checked = picked.has(run.id);
  return el("label", { class: "pick-target" }, box);  // the label is the tap target, larger than the box
}

function showPicked() {
  for (const box of document.querySelectorAll("input.pick-run")) box.checked = picked.has(Number(box.dataset.runId));
  const link = $("compare-link");
  const ids = allRuns.map((r) => r.id).filter((id) => picked.has(id));  // runs deleted meanwhile drop out
  link.textContent = `Compare (${ids.length})`;
  link.href = `/compare?runs=${ids.join(",")}`;
  link.setAttribute("aria-disabled", String(ids.length < 2));
  link.title = ids.length > MAX_COMPARED ? `at most ${MAX_COMPARED} runs at once` : ids.length < 2 ? "tick two or more runs to compare them" : "open the ticked runs side by side";
  showBulk();
}

// ---- the ticked runs: archive, tag, export or delete them together ------------------------------------------------

const pickedRuns = () => allRuns.filter((r) => picked.has(r.id));

function showBulk() {
  const runs = pickedRuns();
  $("bulk-actions").hidden = runs.length === 0;
  $("bulk-count").textContent = `${runs.length} ticked:`;
  $("bulk-archive").hidden = !runs.some((r) => !r.archived);
  $("bulk-unarchive").hidden = !runs.some((r) => r.archived);
}

// `action(run)` for each ticked run in turn; then what worked and, by run, what did not (a running run is not deleted).
async function eachPicked(what, action) {
  const runs = pickedRuns(), failed = [];
  const buttons = [...$("bulk-actions").querySelectorAll("button")];
  buttons.forEach((b) => { b.disabled = true; });
  for (const run of runs) {
    try { await action(run); } catch (error) { failed.push(`${run.name}: ${error.message}`); }
  }
  buttons.forEach((b) => { b.disabled = false; });
  await refreshRuns();
  const done = `${what} ${runs.length - failed.length} of ${runs.length}`;
  $("bulk-status").textContent = failed.length ? `${done}. Not done: ${failed.join("; ")}` : `${done}.`;
  $("bulk-status").classList.toggle("form-error", failed.length > 0);
}

const patchRun = (run, body) => fetchJSON(`/api/runs/${run.id}`, { method: "PATCH", body: JSON.stringify(body) });

function csvCell(v) {
  const text = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// The table view's columns for the ticked runs, raw values (full precision), as a CSV file.
function exportPicked() {
  const lines = [["id", ...COLUMNS.map(([key]) => key)], ...pickedRuns().map((run) => [run.id, ...COLUMNS.map(([key]) => {
    const v = key === "name" ? run.name : key === "tags" ? run.tags.join(" ") : COLUMN[key].value(run);
    return v;
  })])];
  const blob = new Blob([lines.map((line) => line.map(csvCell).join(",")).join("\n") + "\n"], { type: "text/csv" });
  const a = el("a", { href: URL.createObjectURL(blob), download: "ganboard-runs.csv" });
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function setupBulk() {
  $("bulk-archive").addEventListener("click", () => eachPicked("archived", (run) => patchRun(run, { archived: true })));
  $("bulk-unarchive").addEventListener("click", () => eachPicked("unarchived", (run) => patchRun(run, { archived: false })));
  const addTag = () => {
    const tag = $("bulk-tag").value.trim();
    if (!tag) { $("bulk-tag").focus(); return; }
    eachPicked(`tagged "${tag}":`, (run) => patchRun(run, { tags: [...run.tags, tag] })).then(() => { $("bulk-tag").value = ""; });
  };
  $("bulk-tag-button").addEventListener("click", addTag);
  $("bulk-tag").addEventListener("keydown", (e) => { if (e.key === "Enter") addTag(); });
  $("bulk-export").addEventListener("click", exportPicked);
  $("bulk-delete").addEventListener("click", () => {
    const n = pickedRuns().length;
    if (!window.confirm(`Delete ${n} run${n === 1 ? "" : "s"}, with their metrics, grids and checkpoints, for good?`)) return;
    eachPicked("deleted", async (run) => {
      await fetchJSON(`/api/runs/${run.id}`, { method: "DELETE" });
      picked.delete(run.id);
    });
  });
  $("bulk-clear").addEventListener("click", () => {
    picked.clear();
    $("bulk-status").textContent = "";
    showPicked();
  });
}

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

function showList(runs) {
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

function cellText(column, run) {
  const v = column.value(run);
  if (v === null || v === undefined || v === "") return "–";
  switch (column.kind) {
    case "fixed": return fmt(v);
    case "sci": return Number(v).toExponential(1);
    case "int": return v.toFixed(0);
    case "percent": return `${(v * 100).toFixed(0)}%`;
    case "time": return localTime(v);
    default: return typeof v === "number" ? v.toLocaleString() : String(v);
  }
}

function showTable(runs) {
  const table = $("compare-table");
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

function showSortMarks() {
  for (const th of document.querySelectorAll("#runs th[data-sort]")) {
    const on = th.dataset.sort === state.sort;
    th.setAttribute("aria-sort", on ? (state.dir === "asc" ? "ascending" : "descending") : "none");
  }
  $("run-sort").value = LIST_SORTS.includes(state.sort) ? state.sort : "";
  $("sort-dir").textContent = state.dir === "asc" ? "↑ ascending" : "↓ descending";
  for (const button of document.querySelectorAll("#view-toggle button")) button.setAttribute("aria-pressed", String(button.dataset.view === state.view));
}

// The options of a filter from the values the runs have; the chosen one stays, even when no run has it any more.
function fillOptions(select, values, anyLabel) {
  const chosen = state[select.id.replace("filter-", "")];
  const wanted = [...new Set([...values, chosen].filter(Boolean))].sort();
  const text = JSON.stringify(wanted);
  if (select.dataset.shown !== text) {
    select.dataset.shown = text;
    select.replaceChildren(el("option", { value: "", text: anyLabel }), ...wanted.map((v) => el("option", { value: v, text: v })));
  }
  select.value = chosen;
}

function render() {
  const runs = shownRuns();
  const any = allRuns.length > 0;
  fillOptions($("filter-dataset"), allRuns.map((r) => r.config.dataset), "any dataset");
  fillOptions($("filter-tag"), allRuns.flatMap((r) => r.tags), "any tag");
  if ($("run-search").value !== state.q) $("run-search").value = state.q;
  $("filter-status").value = state.status;
  $("filter-archived").value = state.archived;
  if ($("filter-config").value !== state.config) $("filter-config").value = state.config;
  $("filter-config-error").textContent = configFilter.error;
  $("filter-config").setAttribute("aria-invalid", String(Boolean(configFilter.error)));
  showSortMarks();
  if (state.view === "list") showList(runs); else showTable(runs);
  showPicked();
  $("runs-table").hidden = !any || state.view !== "list" || runs.length === 0;
  $("compare-table").hidden = !any || state.view !== "table" || runs.length === 0;
  $("run-filters").hidden = $("view-toggle").hidden = !any;
  $("runs-none-match").hidden = !any || runs.length > 0;
  $("runs-count").textContent = any && runs.length !== allRuns.length ? `${runs.length} of ${allRuns.length}` : "";
  $("runs-empty").hidden = any;
}

function setState(changes) {
  Object.assign(state, changes);
  writeURL();
  render();
}

function buildListControls() {
  $("run-sort").replaceChildren(el("option", { value: "", text: "(a table column)", hidden: "" }),
    ...LIST_SORTS.map((key) => el("option", { value: key, text: COLUMN[key].label === "Run" ? "name" : COLUMN[key].label })));
  $("compare-table").tHead.rows[0].replaceChildren(el("th", { class: "pick" }, el("span", { class: "sr-only", text: "Compare" })), ...COLUMNS.map(([key, label, , kind]) =>
    el("th", { "data-sort": key, class: kind && kind !== "text" ? "num" : "" }, el("button", { type: "button", class: "th-sort", text: label }))));
  for (const th of document.querySelectorAll("#runs-table th[data-sort]")) {
    th.replaceChildren(el("button", { type: "button", class: "th-sort", text: th.textContent }));
  }
  $("runs").addEventListener("click", (event) => {  // a heading sorts by its column; again, the other way
    const th = event.target.closest("th[data-sort]");
    if (!th) return;
    const key = th.dataset.sort;
    setState(key === state.sort ? { dir: state.dir === "asc" ? "desc" : "asc" } : { sort: key, dir: firstDir(key) });
  });
  $("run-sort").addEventListener("change", (e) => setState({ sort: e.target.value, dir: firstDir(e.target.value) }));
  $("sort-dir").addEventListener("click", () => setState({ dir: state.dir === "asc" ? "desc" : "asc" }));
  $("run-search").addEventListener("input", (e) => setState({ q: e.target.value }));
  $("filter-config").addEventListener("input", (e) => setState({ config: e.target.value }));
  for (const name of ["status", "dataset", "tag", "archived"]) {
    $(`filter-${name}`).addEventListener("change", (e) => setState({ [name]: e.target.value }));
  }
  $("view-toggle").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-view]");
    if (button) setState({ view: button.dataset.view });
  });
  $("runs").addEventListener("change", (event) => {  // a run's checkbox, in either view
    const box = event.target.closest("input.pick-run");
    if (!box) return;
    if (box.checked) picked.add(Number(box.dataset.runId)); else picked.delete(Number(box.dataset.runId));
    showPicked();
  });
  $("pick-shown").addEventListener("click", () => {
    shownRuns().forEach((run) => picked.add(run.id));
    showPicked();
  });
  $("compare-link").addEventListener("click", (event) => {
    if ($("compare-link").getAttribute("aria-disabled") === "true") event.preventDefault();
  });
  addShortcuts([{ keys: ["/"], help: "search the runs", run: () => $("run-search").focus() }]);
  setupBulk();
}

// The strip over the list: each GPU of the server with its memory and the runs on it, or the CPU and the running runs.
async function showMachine() {
  const m = await fetchJSON("/api/machine");
  const links = (runs) => (runs.length ? runs.flatMap((r, i) => {
    const a = document.createElement("a");
    a.href = `/runs/${r.id}`;
    a.textContent = r.name;
    return i ? [", ", a] : [a];
  }) : ["idle"]);
  const gb = (mb) => (mb / 1024).toFixed(1);
  const load = m.cpu.load === null ? "–" : m.cpu.load.toFixed(2);
  const parts = m.gpus.length
    ? m.gpus.flatMap((g, i) => [i ? "  |  " : "", `GPU ${g.index} ${g.name}: ${gb(g.memory_used_mb)} / ${gb(g.memory_total_mb)} GB, `, ...links(g.runs)])
    : [`CPU: ${m.cpu.count} cores, load ${load}; running: `, ...links(m.running)];
  $("machine-strip").replaceChildren(...parts);
  $("machine-strip").hidden = false;
}

async function refreshRuns() {
  try {
    allRuns = await fetchJSON("/api/runs");
    $("runs-offline").hidden = true;
    showMachine().catch(() => {});  // the list works without it
  } catch {
    $("runs-offline").hidden = false;
    return;
  }
  render();
  showEstimate();  // a run that just trained is a new measurement
  $("runs-loading").hidden = true;
}

async function pollRuns() {
  await refreshRuns();
  setTimeout(pollRuns, POLL_MS);  // chained, so a slow server never gets overlapping requests
}

// ---- new-run form ----------------------------------------------------------------------------------------------------

function select(name, options) {
  const node = el("select", { name });
  for (const [value, label] of options) node.append(el("option", { value, text: label }));
  return node;
}

function inputFor(field, devices) {
  const name = field.name;
  if (name === "device") return select(name, devices.map((d) => [d, d]));
  if (name === "bf16") return select(name, [["", "auto"], ["true", "on"], ["false", "off"]]);
  if (field.choices) return select(name, field.choices.map((c) => [String(c), String(c)]));
  if (field.type === "bool") return el("input", { type: "checkbox", name });
  const numeric = /\b(int|float)\b/.test(field.type);
  const attrs = { name, type: numeric ? "number" : "text", autocomplete: "off" };
  if (numeric) attrs.step = /\bfloat\b/.test(field.type) ? "any" : "1";
  if (/None/.test(field.type)) attrs.placeholder = "none";
  return el("input", attrs);
}

function buildForm(info) {
  const holder = document.getElementById("fieldsets");
  holder.textContent = "";
  for (const group of GROUPS) {
    const fields = info.fields.filter((f) => f.group === group);
    if (!fields.length) continue;
    const set = el("fieldset", { "data-group": group }, el("legend", { text: group }));
    for (const field of fields) {
      const input = inputFor(field, info.devices);
      input.id = `field-${field.name}`;
      input.setAttribute("aria-describedby", `help-${field.name}`);
      const label = el("label", { class: `field${input.type === "checkbox" ? " check" : ""}`, for: input.id },
        el("span", { text: field.name }), input,
        el("small", { class: "help", id: `help-${field.name}`, text: field.help }),
        el("small", { class: "field-error", "data-field": field.name, role: "alert" }));
      set.append(label);
    }
    holder.append(set);
  }
  const presets = document.getElementById("presets");
  for (const name of Object.keys(info.presets)) {
    const button = el("button", { type: "button", class: "preset", "data-preset": name, "aria-pressed": "false", text: name });
    button.addEventListener("click", () => fillForm(info.presets[name]));
    presets.append(button);
  }
  form.addEventListener("input", markPreset);
  form.addEventListener("change", markPreset);
}

function fillForm(config) {
  for (const field of formInfo.fields) {
    const input = form.elements[field.name];
    if (!(field.name in config)) continue;
    const value = config[field.name];
    if (input.type === "checkbox") input.checked = Boolean(value);
    else if (input.tagName === "SELECT") {
      const text = value === null ? "" : String(value);
      if (![...input.options].some((o) => o.value === text)) input.append(el("option", { value: text, text: `${text} (not seen by this server)` }));
      input.value = text;
    } else input.value = value === null ? "" : String(value);
  }
  clearErrors();
  markPreset();
}

// ---- how long the form's run would train here, from what this machine measured ------------------------------------
// Only from a run of the same shape on the same kind of device: small models are bound by overheads, not arithmetic,
// so scaling one size's speed to another misleads (the quick preset's ~1,000 images/s would make the article's 96px
// model ~16 images/s by its FLOPs; it trains at ~94 here).
const DATASET_IMAGES = { emoji: 1860, procedural: 4096, mnist: 60000, "fashion-mnist": 60000, cifar10: 50000 };
const SHAPE = ["image_size", "channels", "ngf", "ndf", "nz", "batch_size", "d_every", "g_every"];
const deviceKind = (device) => (String(device).startsWith("cuda") ? "GPU" : "CPU");

function estimateText(config) {
  const kind = config.device === "auto" ? (formInfo.devices.some((d) => d.startsWith("cuda")) ? "GPU" : "CPU") : deviceKind(config.device);
  const measured = allRuns.find((r) => r.device && deviceKind(r.device) === kind && imagesPerSecond(r)
    && SHAPE.every((k) => r.config[k] === config[k]));  // the newest
  const shape = `${config.image_size}px, ngf ${config.ngf}, ndf ${config.ndf}, batch ${config.batch_size}`;
  if (!measured) {
    return `No run of this shape (${shape}) has trained on this machine's ${kind} yet, so no estimate: its speed and ETA `
      + "show after its first steps. Bigger images and wider nets cost far more per image.";
  }
  const ips = imagesPerSecond(measured);
  const perEpoch = DATASET_IMAGES[config.dataset] ? Math.floor(DATASET_IMAGES[config.dataset] / config.batch_size) * config.batch_size : null;
  let images = perEpoch && config.epochs ? perEpoch * config.epochs : null;
  if (config.max_steps) images = Math.min(images ?? Infinity, config.max_steps * config.batch_size);
  const speed = `${ips.toFixed(0)} images/s, as “${measured.name}” of this shape trained here`;
  return images && Number.isFinite(images)
    ? `About ${humanSeconds(images / ips)} of training on this machine's ${kind} (${images.toLocaleString()} images at ${speed}).`
    : `${speed}; an epoch is the folder's images at that speed.`;
}

function showEstimate() {
  if (formInfo) $("estimate").textContent = estimateText(readForm().config);
}

// The preset whose values the form holds now, lit up; none once a field differs.
function markPreset() {
  showEstimate();
  const { config } = readForm();
  for (const button of document.querySelectorAll("#presets .preset")) {
    const preset = formInfo.presets[button.dataset.preset];
    const same = Object.keys(preset).every((k) => !(k in config) || JSON.stringify(config[k]) === JSON.stringify(preset[k]));
    button.setAttribute("aria-pressed", String(same));
  }
}

// Only typed values: numbers as numbers, booleans as booleans, empty fields as null (the server names what is wrong).
function readForm() {
  const config = {};
  for (const field of formInfo.fields) {
    const input = form.elements[field.name];
    if (input.type === "checkbox") { config[field.name] = input.checked; continue; }
    const text = input.value.trim();
    if (field.name === "bf16") config.bf16 = text === "" ? null : text === "true";
    else if (text === "") config[field.name] = null;
    else if (input.type === "number" || (input.tagName === "SELECT" && typeof field.default === "number")) config[field.name] = Number(text);
    else config[field.name] = text;
  }
  return { name: form.elements.name.value.trim() || null, config };
}

function clearErrors() {
  form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
  form.querySelectorAll(".invalid").forEach((node) => { node.classList.remove("invalid"); node.removeAttribute("aria-invalid"); });
  const general = document.getElementById("form-error");
  general.hidden = true;
  general.textContent = "";
}

function fieldError(name, message) {
  const slot = form.querySelector(`.field-error[data-field="${name}"]`);
  if (!slot) return false;
  slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
  form.elements[name].classList.add("invalid");
  form.elements[name].setAttribute("aria-invalid", "true");
  return true;
}

// 422 detail: [{loc: ["body", "config", "batch_size"], msg}]; the last loc element naming a field gets the message.
function showErrors(detail) {
  const general = [];
  for (const error of Array.isArray(detail) ? detail : [{ msg: String(detail) }]) {
    const loc = error.loc || [];
    const dotted = loc.slice(1).join(".");  // "slurm.time": a field of a group that is not the config
    const name = [dotted, ...[...loc].reverse()].find((part) => typeof part === "string" && form.querySelector(`.field-error[data-field="${part}"]`));
    const msg = String(error.msg || "invalid").replace(/^Value error, /, "");
    if (!name || !fieldError(name, msg)) general.push(loc.length > 1 ? `${loc.filter((p) => p !== "body").join(".")}: ${msg}` : msg);
  }
  const box = document.getElementById("form-error");
  box.textContent = general.join("\n");
  box.hidden = general.length === 0;
  const first = form.querySelector(".invalid");
  if (first) first.focus({ preventScroll: true });
  (first || box).scrollIntoView({ block: "center" });
}

// A number input holding text that is not a number reads as "": say so here, the server would only see null.
function badNumbers() {
  return formInfo.fields
    .filter((f) => form.elements[f.name].validity && form.elements[f.name].validity.badInput)
    .map((f) => ({ loc: [f.name], msg: "not a number" }));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!formInfo) return;
  clearErrors();
  const bad = badNumbers();
  if (bad.length) { showErrors(bad); return; }
  const button = document.getElementById("start-button");
  button.disabled = true;
  button.textContent = "Starting…";
  try {
    const run = await fetchJSON("/api/runs", { method: "POST", body: JSON.stringify({ ...readForm(), ...readExecutor() }) });
    window.location.href = `/runs/${run.id}`;
  } catch (error) {
    showErrors(error.body && Array.isArray(error.body.detail) ? error.body.detail : `could not start the run: ${error.message}`);
    button.disabled = false;
    button.textContent = "Start";
  }
});

// ---- where a run trains, and its Slurm job: shown only on a server with a Slurm cluster (docs/cluster.md) ----------
// The job's fields start from the server's settings (/api/form's `slurm`) and go with a run on the cluster only. Each
// is named `slurm.<key>`, so that a 422 at ["body", "slurm", key] lands under it (showErrors tries the dotted path).
const SLURM_FIELDS = [  // [key, label, input type, help]
  ["partition", "partition", "text", "sbatch --partition; empty: the cluster's default"],
  ["time", "time limit", "text", "minutes, HH:MM:SS or D-HH:MM:SS (e.g. 4:00:00); empty: the partition's"],
  ["cpus", "CPUs", "number", "the job's CPUs, and the run's torch threads"],
  ["mem", "memory", "text", "e.g. 16G; empty: the partition's"],
  ["gpus", "GPUs", "number", "the job's GPUs (0: it trains on the CPU)"],
  ["options", "sbatch options", "text", "more options, separated by spaces, e.g. --qos=normal --constraint=a100"],
  ["requeue", "requeue", "number", "times it starts again by itself from its checkpoint after Slurm's time limit or a preemption (0: never)"],
];

function addExecutorField(info) {
  const executors = info.executors || ["local"];
  if (executors.length < 2) return;
  const field = (name, label, input, help) => {
    input.id = `field-${name}`;
    input.setAttribute("aria-describedby", `help-${name}`);
    return el("label", { class: "field", for: input.id }, el("span", { text: label }), input,
      el("small", { class: "help", id: `help-${name}`, text: help }),
      el("small", { class: "field-error", "data-field": name, role: "alert" }));
  };
  const executor = select("executor", executors.map((e) => [e, e === "slurm" ? "Slurm cluster (a job per run)" : "this server"]));
  const job = SLURM_FIELDS.map(([key, label, type, help]) => {
    const input = el("input", { name: `slurm.${key}`, type, autocomplete: "off", ...(type === "number" ? { step: "1", min: "0" } : {}) });
    const value = (info.slurm || {})[key];
    input.value = Array.isArray(value) ? value.join(" ") : value ?? "";
    return field(`slurm.${key}`, label, input, help);
  });
  const show = () => job.forEach((node) => { node.hidden = executor.value !== "slurm"; });
  executor.addEventListener("change", show);
  document.querySelector('fieldset[data-group="hardware"]').append(
    field("executor", "executor", executor, "where the run trains: a Slurm job (the cluster queues it) or a process of this server"), ...job);
  show();
}

// An empty number takes the server's setting; an empty text field asks for the cluster's own default (null).
function readExecutor() {
  const input = form.elements.executor;
  if (!input || input.value !== "slurm") return input ? { executor: input.value } : {};
  const slurm = {};
  for (const [key, , type] of SLURM_FIELDS) {
    const text = form.elements[`slurm.${key}`].value.trim();
    if (key === "options") slurm.options = text.split(/\s+/).filter(Boolean);
    else if (type === "text") slurm[key] = text || null;
    else if (text !== "") slurm[key] = Number(text);
  }
  return { executor: "slurm", slurm };
}

async function loadForm() {
  try {
    formInfo = await fetchJSON("/api/form");
  } catch (error) {
    document.getElementById("fieldsets").textContent = `Could not load the form (${error.message}); reload the page to try again.`;
    return;
  }
  buildForm(formInfo);
  addExecutorField(formInfo);
  fillForm(formInfo.presets.quick);
  const cloneId = form.getAttribute("data-clone-id");  // not form.dataset: the field named "dataset" shadows it
  if (!cloneId) return;
  const notice = document.getElementById("form-notice");
  try {
    const run = await fetchJSON(`/api/runs/${cloneId}`);
    fillForm(run.config);
    form.elements.name.value = `${run.name}-clone`.slice(0, 100);
    notice.textContent = `Settings of run “${run.name}” filled in: change what you like and press Start.`;
  } catch (error) {
    notice.textContent = `Could not clone run ${cloneId}: ${error.message}. The form holds the quick preset.`;
    notice.classList.add("bad");
  }
  notice.hidden = false;
  document.getElementById("new-run").scrollIntoView();
}

async function start() {
  readURL();
  buildListControls();
  const firstRuns = refreshRuns();
  await Promise.allSettled([firstRuns, loadForm()]);
  document.getElementById("index").classList.remove("settling");
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target) target.scrollIntoView();  // e.g. /#new-run: where it is now that the list is filled in
  setTimeout(pollRuns, POLL_MS);
}

start();
