// The new-run form, built from GET /api/form: a fieldset per group of trainer/config.py's fields, the presets, a clone's
// settings (/?clone=ID), how long the run would train here. Submitting POSTs /api/runs and opens the new run; a 422
// puts each message beside its field.
import { CONSTANTS, el, fetchJSON } from "../common.js";
import { estimateText } from "./estimate.js";
import { allRuns } from "./state.js";

const $ = (id) => document.getElementById(id);
const form = $("run-form");
let formInfo = null;

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

// A field's label: its name (or `label`), its input, its help and the slot for its error.
function fieldLabel(name, input, help, label = name) {
  input.id = `field-${name}`;
  input.setAttribute("aria-describedby", `help-${name}`);
  return el("label", { class: `field${input.type === "checkbox" ? " check" : ""}`, for: input.id },
    el("span", { text: label }), input, el("small", { class: "help", id: `help-${name}`, text: help }),
    el("small", { class: "field-error", "data-field": name, role: "alert" }));
}

function buildForm(info) {
  const holder = $("fieldsets");
  holder.textContent = "";
  for (const group of CONSTANTS.FIELD_GROUPS) {
    const fields = info.fields.filter((f) => f.group === group);
    if (!fields.length) continue;
    const set = el("fieldset", { "data-group": group }, el("legend", { text: group }),
      ...fields.map((field) => fieldLabel(field.name, inputFor(field, info.devices), field.help)));
    if (group === "hardware") hardwareGroup(set, info);
    holder.append(set);
  }
  const presets = $("presets");
  for (const name of Object.keys(info.presets)) {
    const button = el("button", { type: "button", class: "preset", "data-preset": name, "aria-pressed": "false", text: name });
    button.addEventListener("click", () => fillForm(info.presets[name]));
    presets.append(button);
  }
  form.addEventListener("input", markPreset);
  form.addEventListener("change", markPreset);
}

// ---- the hardware group: where and on what a run trains --------------------------------------------------------------
// Beside the config's hardware fields (device, bf16...): the executor and the run's Slurm job, only on a server with a
// Slurm cluster (docs/cluster.md). The job's fields start from the server's settings (/api/form's `slurm`) and go with
// a run on the cluster only; each is named `slurm.<key>`, so that a 422 at ["body", "slurm", key] lands under it
// (showErrors tries the dotted path). What this group adds to the POST body besides the config comes from readHardware().
const SLURM_FIELDS = [  // [key, label, input type, help]
  ["partition", "partition", "text", "sbatch --partition; empty: the cluster's default"],
  ["time", "time limit", "text", "minutes, HH:MM:SS or D-HH:MM:SS (e.g. 4:00:00); empty: the partition's"],
  ["cpus", "CPUs", "number", "the job's CPUs, and the run's torch threads"],
  ["mem", "memory", "text", "e.g. 16G; empty: the partition's"],
  ["gpus", "GPUs", "number", "the job's GPUs (0: it trains on the CPU)"],
  ["options", "sbatch options", "text", "more options, separated by spaces, e.g. --qos=normal --constraint=a100"],
  ["requeue", "requeue", "number", "times it starts again by itself from its checkpoint after Slurm's time limit or a preemption (0: never)"],
];

function hardwareGroup(set, info) {
  const executors = info.executors || ["local"];
  if (executors.length < 2) return;
  const executor = select("executor", executors.map((e) => [e, e === "slurm" ? "Slurm cluster (a job per run)" : "this server"]));
  const job = SLURM_FIELDS.map(([key, label, type, help]) => {
    const input = el("input", { name: `slurm.${key}`, type, autocomplete: "off", ...(type === "number" ? { step: "1", min: "0" } : {}) });
    const value = (info.slurm || {})[key];
    input.value = Array.isArray(value) ? value.join(" ") : value ?? "";
    return fieldLabel(`slurm.${key}`, input, help, label);
  });
  const show = () => job.forEach((node) => { node.hidden = executor.value !== "slurm"; });
  executor.addEventListener("change", show);
  set.append(fieldLabel("executor", executor, "where the run trains: a Slurm job (the cluster queues it) or a process of this server"), ...job);
  show();
}

// An empty number takes the server's setting; an empty text field asks for the cluster's own default (null).
function readHardware() {
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

// ---- values in and out -----------------------------------------------------------------------------------------------

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

// How long the form's run would train here (estimate.js), again whenever the form or the run list changes.
export function showEstimate() {
  if (formInfo) $("estimate").textContent = estimateText(readForm().config, formInfo.devices, allRuns);
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
// Also the sweep panel's base config (static/sweep/form.js).
export function readForm() {
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

// ---- errors ----------------------------------------------------------------------------------------------------------

function clearErrors() {
  form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
  form.querySelectorAll(".invalid").forEach((node) => { node.classList.remove("invalid"); node.removeAttribute("aria-invalid"); });
  const general = $("form-error");
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
  const box = $("form-error");
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

async function submit(event) {
  event.preventDefault();
  if (!formInfo) return;
  clearErrors();
  const bad = badNumbers();
  if (bad.length) { showErrors(bad); return; }
  const button = $("start-button");
  button.disabled = true;
  button.textContent = "Starting…";
  try {
    const run = await fetchJSON("/api/runs", { method: "POST", body: JSON.stringify({ ...readForm(), ...readHardware() }) });
    window.location.href = `/runs/${run.id}`;
  } catch (error) {
    showErrors(error.body && Array.isArray(error.body.detail) ? error.body.detail : `could not start the run: ${error.message}`);
    button.disabled = false;
    button.textContent = "Start";
  }
}

// ---- loading ---------------------------------------------------------------------------------------------------------

// Builds the form and fills it with the quick preset, or with the settings of the run /?clone=ID names.
export async function loadForm() {
  form.addEventListener("submit", submit);
  try {
    formInfo = await fetchJSON("/api/form");
  } catch (error) {
    $("fieldsets").textContent = `Could not load the form (${error.message}); reload the page to try again.`;
    return;
  }
  buildForm(formInfo);
  fillForm(formInfo.presets.quick);
  const cloneId = form.getAttribute("data-clone-id");  // not form.dataset: the field named "dataset" shadows it
  if (!cloneId) return;
  const notice = $("form-notice");
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
  $("new-run").scrollIntoView();
}
