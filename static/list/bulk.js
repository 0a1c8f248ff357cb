// The ticked runs: compared on the comparison page, or archived, tagged, exported or deleted together. Both views'
// checkboxes show the same ticks, by run id.
import { CONSTANTS, el, fetchJSON } from "../common.js";
import { COLUMN, COLUMNS } from "./columns.js";
import { allRuns } from "./state.js";

const $ = (id) => document.getElementById(id);
export const picked = new Set();
const { MAX_COMPARED } = CONSTANTS;  // as app/pages.py allows

export function pickBox(run) {
  const box = el("input", { type: "checkbox", class: "pick-run", "data-run-id": run.id, "aria-label": `compare ${run.name}` });
  box.checked = picked.has(run.id);
  return el("label", { class: "pick-target" }, box);  // the label is the tap target, larger than the box
}

export function showPicked() {
  for (const box of document.querySelectorAll("input.pick-run")) box.checked = picked.has(Number(box.dataset.runId));
  const link = $("compare-link");
  const ids = allRuns.map((r) => r.id).filter((id) => picked.has(id));  // runs deleted meanwhile drop out
  link.textContent = `Compare (${ids.length})`;
  link.href = `/compare?runs=${ids.join(",")}`;
  link.setAttribute("aria-disabled", String(ids.length < 2));
  link.title = ids.length > MAX_COMPARED ? `at most ${MAX_COMPARED} runs at once` : ids.length < 2 ? "tick two or more runs to compare them" : "open the ticked runs side by side";
  showBulk();
}

const pickedRuns = () => allRuns.filter((r) => picked.has(r.id));

function showBulk() {
  const runs = pickedRuns();
  $("bulk-actions").hidden = runs.length === 0;
  $("bulk-count").textContent = `${runs.length} ticked:`;
  $("bulk-archive").hidden = !runs.some((r) => !r.archived);
  $("bulk-unarchive").hidden = !runs.some((r) => r.archived);
}

// `action(run)` for each ticked run in turn, then `refresh()` the list; then what worked and, by run, what did not (a
// running run is not deleted).
async function eachPicked(what, action, refresh) {
  const runs = pickedRuns(), failed = [];
  const buttons = [...$("bulk-actions").querySelectorAll("button")];
  buttons.forEach((b) => { b.disabled = true; });
  for (const run of runs) {
    try { await action(run); } catch (error) { failed.push(`${run.name}: ${error.message}`); }
  }
  buttons.forEach((b) => { b.disabled = false; });
  await refresh();
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

// The ticks and the bulk buttons; `refresh()` fetches the list again after an action.
export function setupBulk(refresh) {
  const each = (what, action) => eachPicked(what, action, refresh);
  $("runs").addEventListener("change", (event) => {  // a run's checkbox, in either view
    const box = event.target.closest("input.pick-run");
    if (!box) return;
    if (box.checked) picked.add(Number(box.dataset.runId)); else picked.delete(Number(box.dataset.runId));
    showPicked();
  });
  $("compare-link").addEventListener("click", (event) => {
    if ($("compare-link").getAttribute("aria-disabled") === "true") event.preventDefault();
  });
  $("bulk-archive").addEventListener("click", () => each("archived", (run) => patchRun(run, { archived: true })));
  $("bulk-unarchive").addEventListener("click", () => each("unarchived", (run) => patchRun(run, { archived: false })));
  const addTag = () => {
    const tag = $("bulk-tag").value.trim();
    if (!tag) { $("bulk-tag").focus(); return; }
    each(`tagged "${tag}":`, (run) => patchRun(run, { tags: [...run.tags, tag] })).then(() => { $("bulk-tag").value = ""; });
  };
  $("bulk-tag-button").addEventListener("click", addTag);
  $("bulk-tag").addEventListener("keydown", (e) => { if (e.key === "Enter") addTag(); });
  $("bulk-export").addEventListener("click", exportPicked);
  $("bulk-delete").addEventListener("click", () => {
    const n = pickedRuns().length;
    if (!window.confirm(`Delete ${n} run${n === 1 ? "" : "s"}, with their metrics, grids and checkpoints, for good?`)) return;
    each("deleted", async (run) => {
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
