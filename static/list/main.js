// Page `/`: the run list (polled every 2 s, rows updated in place by run id; searched, filtered and sorted; or as a
// table of configs and final figures; the filters, the sort and the view in the URL query) and the new-run form.
import { addShortcuts, el, fetchJSON } from "../common.js";
import { picked, setupBulk, showPicked } from "./bulk.js";
import { COLUMN, COLUMNS, firstDir, LIST_SORTS } from "./columns.js";
import { configError, shownRuns } from "./filter.js";
import { loadForm, showEstimate } from "./form.js";
import { showMachine } from "./machine.js";
import { allRuns, readURL, setRuns, state, writeURL } from "./state.js";
import { showList, showTable } from "./table.js";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

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
  $("filter-config-error").textContent = configError();
  $("filter-config").setAttribute("aria-invalid", String(Boolean(configError())));
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
  $("pick-shown").addEventListener("click", () => {
    shownRuns().forEach((run) => picked.add(run.id));
    showPicked();
  });
  addShortcuts([{ keys: ["/"], help: "search the runs", run: () => $("run-search").focus() }]);
  setupBulk(refreshRuns);
}

async function refreshRuns() {
  try {
    setRuns(await fetchJSON("/api/runs"));
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
