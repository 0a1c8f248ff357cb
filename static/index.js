// The run list (refreshed every 2 s, rows updated in place) and the new-run form built from GET /api/form.
"use strict";

const GROUPS = ["data", "model", "optimisation", "schedule", "hardware"];
const form = document.getElementById("run-form");
let formInfo = null;

// ---- run list --------------------------------------------------------------------------------------------------------

function runRow(run) {
  const row = el("tr", { "data-run-id": run.id });
  row.innerHTML = `
    <td class="thumb"><img alt="" width="48" height="48" hidden></td>
    <td><a class="run-link"></a><div class="muted small run-config"></div></td>
    <td><span class="badge"></span></td>
    <td class="progress-cell"><div class="progress small"><div class="bar"></div></div><div class="small muted progress-text"></div></td>
    <td class="num ips"></td>
    <td class="num losses"></td>
    <td class="small started"></td>
    <td class="small duration"></td>`;
  return row;
}

function updateRow(row, run) {
  const link = row.querySelector(".run-link");
  link.href = `/runs/${run.id}`;
  link.textContent = run.name;
  const c = run.config;
  row.querySelector(".run-config").textContent = `${c.dataset} · ${c.image_size}px · batch ${c.batch_size}`;
  const badge = row.querySelector(".badge");
  badge.textContent = run.status;
  badge.className = `badge ${run.status}`;
  row.querySelector(".bar").style.width = `${(progressFraction(run) * 100).toFixed(1)}%`;
  row.querySelector(".progress-text").textContent = progressLabel(run);
  row.querySelector(".ips").textContent = run.images_per_s ? run.images_per_s.toFixed(0) : "–";
  row.querySelector(".losses").innerHTML =
    `<span class="d">${fmt(run.loss_d)}</span> / <span class="g">${fmt(run.loss_g)}</span>`;
  row.querySelector(".started").textContent = localTime(run.started_at);
  row.querySelector(".duration").textContent = duration(run.started_at, run.finished_at);
  const img = row.querySelector(".thumb img");
  if (run.latest_sample && img.getAttribute("src") !== run.latest_sample) img.src = run.latest_sample;
  img.hidden = !run.latest_sample;
}

async function refreshRuns() {
  let runs;
  try {
    runs = await fetchJSON("/api/runs");
  } catch {
    return;
  }
  const body = document.querySelector("#runs-table tbody");
  const existing = new Map([...body.rows].map((row) => [row.dataset.runId, row]));
  runs.forEach((run, i) => {
    let row = existing.get(String(run.id));
    if (!row) row = runRow(run);
    updateRow(row, run);
    if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null);
    existing.delete(String(run.id));
  });
  existing.forEach((row) => row.remove());
  document.getElementById("runs-empty").hidden = runs.length > 0;
  document.getElementById("runs-table").hidden = runs.length === 0;
}

// ---- new-run form ----------------------------------------------------------------------------------------------------

function inputFor(field, devices) {
  const name = field.name;
  if (name === "device") return select(name, devices.map((d) => [d, d]));
  if (name === "bf16") return select(name, [["", "auto (on for CUDA)"], ["true", "on"], ["false", "off"]]);
  if (field.choices) return select(name, field.choices.map((c) => [c, c]));
  if (field.type === "bool") {
    const box = el("input", { type: "checkbox", name });
    return box;
  }
  const numeric = /int|float/.test(field.type);
  const attrs = { name, type: numeric ? "number" : "text" };
  if (numeric) attrs.step = /float/.test(field.type) ? "any" : "1";
  if (field.default === null) attrs.placeholder = "none";
  return el("input", attrs);
}

function select(name, options) {
  const node = el("select", { name });
  for (const [value, label] of options) node.append(el("option", { value, text: label }));
  return node;
}

function buildForm(info) {
  const holder = document.getElementById("fieldsets");
  holder.textContent = "";
  for (const group of GROUPS) {
    const set = el("fieldset", {}, el("legend", { text: group }));
    for (const field of info.fields.filter((f) => f.group === group)) {
      const input = inputFor(field, info.devices);
      input.id = `field-${field.name}`;
      const label = el("label", { class: "field", for: input.id },
        el("span", { text: field.name }), input,
        el("small", { class: "help", text: field.help }),
        el("small", { class: "field-error", "data-field": field.name, role: "alert" }));
      set.append(label);
    }
    holder.append(set);
  }
  const presets = document.getElementById("presets");
  for (const name of Object.keys(info.presets)) {
    const button = el("button", { type: "button", class: "preset", "data-preset": name, text: name });
    button.addEventListener("click", () => fillForm(info.presets[name]));
    presets.append(button);
  }
}

function fillForm(config) {
  for (const field of formInfo.fields) {
    const input = form.elements[field.name];
    const value = config[field.name] ?? null;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value === null ? "" : String(value);
  }
  clearErrors();
}

function readForm() {
  const config = {};
  for (const field of formInfo.fields) {
    const input = form.elements[field.name];
    if (input.type === "checkbox") { config[field.name] = input.checked; continue; }
    const text = input.value.trim();
    if (field.name === "bf16") config.bf16 = text === "" ? null : text === "true";
    else if (text === "") config[field.name] = null;
    else if (input.type === "number") config[field.name] = Number(text);
    else config[field.name] = text;
  }
  // Empty optional fields go as null; empty required numbers are left out so the server names them.
  for (const field of formInfo.fields) {
    if (config[field.name] === null && field.default !== null) delete config[field.name];
  }
  return { name: form.elements.name.value.trim() || null, config };
}

function clearErrors() {
  form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
  form.querySelectorAll(".invalid").forEach((node) => node.classList.remove("invalid"));
  const general = document.getElementById("form-error");
  general.hidden = true;
  general.textContent = "";
}

function showErrors(detail) {
  const general = [];
  for (const error of Array.isArray(detail) ? detail : [{ msg: String(detail) }]) {
    const loc = error.loc || [];
    const name = [...loc].reverse().find((part) => typeof part === "string" && form.elements[part]);
    const slot = name && form.querySelector(`.field-error[data-field="${name}"]`);
    if (slot) {
      slot.textContent = error.msg.replace(/^Value error, /, "");
      form.elements[name].classList.add("invalid");
    } else {
      general.push(`${loc.filter((p) => p !== "body").join(".") || "form"}: ${error.msg}`);
    }
  }
  const box = document.getElementById("form-error");
  box.textContent = general.join("\n");
  box.hidden = general.length === 0;
  const first = form.querySelector(".invalid");
  if (first) first.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const button = document.getElementById("start-button");
  button.disabled = true;
  try {
    const run = await fetchJSON("/api/runs", { method: "POST", body: JSON.stringify(readForm()) });
    window.location.href = `/runs/${run.id}`;
  } catch (error) {
    showErrors(error.body && error.body.detail ? error.body.detail : error.message);
    button.disabled = false;
  }
});

async function start() {
  refreshRuns();
  setInterval(refreshRuns, 2000);
  formInfo = await fetchJSON("/api/form");
  buildForm(formInfo);
  fillForm(formInfo.presets.quick);
  const cloneId = form.dataset.cloneId;
  if (cloneId) {
    try {
      const run = await fetchJSON(`/api/runs/${cloneId}`);
      fillForm(run.config);
      form.elements.name.value = `${run.name} (clone)`;
      document.getElementById("new-run").scrollIntoView();
    } catch (error) {
      showErrors(`cannot clone run ${cloneId}: ${error.message}`);
    }
  }
}

start();
