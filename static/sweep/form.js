// The "Sweep" part of the new-run form (templates/sweep_form.html): each chosen setting takes a list of values
// ("1e-4, 2e-4") or a range with a count ("1e-4..1e-2 x3", log-spaced for learning rates, or with "log"), plus a number
// of seeds; the base config is the rest of the form (list/form.js's readForm). It shows how many runs that makes and,
// from runs that completed on this server, about how long they train (POST /api/sweeps/plan), then starts the sweep.
import { el, fetchJSON, humanSeconds } from "../common.js";
import { readForm } from "../list/form.js";

const $ = (id) => document.getElementById(id);
const RANGE = /^\s*([^\s.][^\s]*?)\s*\.\.\s*(\S+?)(?:\s*[x×]\s*(\d+))?\s*(log|lin)?\s*$/i;
let fields = [];
let timer = 0;

function value(text) {
  const t = text.trim();
  if (t === "true" || t === "false") return t === "true";
  return t !== "" && Number.isFinite(Number(t)) ? Number(t) : t;
}

// "1e-4..1e-2 x3 log" -> {min, max, count, log}; "32, 64" -> {values}. Learning rates are log-spaced unless "lin".
export function parseAxis(name, text) {
  const m = RANGE.exec(text);
  if (m) {
    const log = m[4] ? m[4].toLowerCase() === "log" : name.startsWith("lr");
    return { min: Number(m[1]), max: Number(m[2]), ...(m[3] ? { count: Number(m[3]) } : {}), log };
  }
  return { values: text.split(",").map(value).filter((v) => v !== "") };
}

function axisRow(name = "", text = "") {
  const select = el("select", { class: "sweep-field", "aria-label": "setting" },
    el("option", { value: "lr_g+lr_d", text: "lr_g+lr_d (both)" }),
    ...fields.map((f) => el("option", { value: f.name, text: f.name })));
  select.value = name || "lr_g+lr_d";
  const input = el("input", { class: "sweep-values", type: "text", value: text, "aria-label": "values or a range",
    placeholder: "1e-4, 2e-4  or  1e-4..1e-2 x3", autocomplete: "off", spellcheck: "false" });
  const remove = el("button", { type: "button", class: "icon", "aria-label": "remove this setting", text: "×" });
  const error = el("small", { class: "field-error", role: "alert" });
  const row = el("div", { class: "sweep-axis" }, select, input, remove, error);
  remove.addEventListener("click", () => { row.remove(); schedule(); });
  return row;
}

export function readSweep() {
  const { name, config } = readForm();  // the run form's typed values
  const axes = {};
  for (const row of document.querySelectorAll("#sweep-axes .sweep-axis")) {
    const text = row.querySelector(".sweep-values").value;
    if (text.trim()) axes[row.querySelector(".sweep-field").value] = parseAxis(row.querySelector(".sweep-field").value, text);
  }
  const method = $("sweep-method").value;
  const spec = { name, method, base: config, axes, seeds: Number($("sweep-seeds").value) || 1 };
  if (method !== "grid") spec.trials = Number($("sweep-trials").value) || null;
  if (method === "optuna" && $("sweep-prune").checked) spec.pruning = {};
  return spec;
}

function showErrors(detail) {
  document.querySelectorAll("#sweep-panel .field-error").forEach((n) => { n.textContent = ""; });
  const general = [];
  for (const e of Array.isArray(detail) ? detail : [{ loc: [], msg: String(detail) }]) {
    const loc = (e.loc || []).filter((p) => p !== "body");
    const msg = String(e.msg).replace(/^Value error, /, "");
    const row = loc[0] === "axes" && [...document.querySelectorAll("#sweep-axes .sweep-axis")].find((r) => r.querySelector(".sweep-field").value === loc[1]);
    if (row) row.querySelector(".field-error").textContent = `${loc.slice(1).join(".")}: ${msg}`;
    else general.push(loc.length ? `${loc.join(".")}: ${msg}` : msg);
  }
  $("sweep-error").textContent = general.join("\n");
  $("sweep-error").hidden = !general.length;
}

async function plan() {
  const spec = readSweep();
  $("sweep-trials-field").hidden = spec.method === "grid";
  $("sweep-prune-field").hidden = spec.method !== "optuna";
  try {
    const p = await fetchJSON("/api/sweeps/plan", { method: "POST", body: JSON.stringify(spec) });
    showErrors([]);
    const time = p.seconds === null ? "" : ` · about ${humanSeconds(p.seconds)} of training one after another (measured on ${p.measured_runs} runs here)`;
    $("sweep-plan").textContent = `${p.count} run${p.count === 1 ? "" : "s"}${time}`;
    $("sweep-start").disabled = false;
  } catch (error) {
    showErrors(error.body && Array.isArray(error.body.detail) ? error.body.detail : error.message);
    $("sweep-plan").textContent = "";
    $("sweep-start").disabled = true;
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(plan, 250);
}

async function start() {
  const button = $("sweep-start");
  button.disabled = true;
  try {
    const sweep = await fetchJSON("/api/sweeps", { method: "POST", body: JSON.stringify(readSweep()) });
    window.location.href = `/sweeps/${sweep.id}`;
  } catch (error) {
    showErrors(error.body && Array.isArray(error.body.detail) ? error.body.detail : error.message);
    button.disabled = false;
  }
}

async function listSweeps() {
  const sweeps = await fetchJSON("/api/sweeps").catch(() => []);
  $("sweep-list").replaceChildren(...sweeps.slice(0, 10).map((s) => el("li", {},
    el("a", { href: `/sweeps/${s.id}`, text: s.name }), " ", el("span", { class: `badge ${s.status}`, text: s.status }),
    el("span", { class: "muted small", text: ` ${Object.values(s.counts).reduce((a, b) => a + b, 0)} of ${s.planned} runs` }))));
  $("sweep-list-box").hidden = !sweeps.length;
}

async function open() {
  $("sweep-panel").hidden = false;
  if (!fields.length) {
    const info = await fetchJSON("/api/form");
    fields = info.fields.filter((f) => !["seed", "data_path", "netg_init", "netd_init", "device", "download"].includes(f.name));
    $("sweep-axes").append(axisRow("lr_g+lr_d", "1e-4..1e-3 x3"));
  }
  $("sweep-panel").scrollIntoView({ block: "nearest" });
  listSweeps();
  plan();
}

$("sweep-button").addEventListener("click", open);
$("sweep-add").addEventListener("click", () => { $("sweep-axes").append(axisRow(fields[0] ? "g_every" : "", "")); schedule(); });
$("sweep-start").addEventListener("click", start);
// The panel sits in the run form, under Start: Enter in its fields must not start a single run.
$("sweep-panel").addEventListener("keydown", (event) => { if (event.key === "Enter") event.preventDefault(); });
$("run-form").addEventListener("input", () => { if (!$("sweep-panel").hidden) schedule(); });
$("run-form").addEventListener("change", () => { if (!$("sweep-panel").hidden) schedule(); });
