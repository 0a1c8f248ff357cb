// Carrying a run on from its resume.pt: "Train more epochs…" on a completed run (POST extend) and "Resume with
// changes…" on a stopped one (POST resume with the settings that may change, config.RESUME_CHANGES); the server records
// each change in the run's `changes`, which the Config card lists.
import { CONSTANTS, el, fetchJSON } from "../common.js";

const $ = (id) => document.getElementById(id);
const CHANGEABLE = CONSTANTS.RESUME_CHANGES;

function numberField(name, value, attrs = {}) {
  const input = el("input", { id: `carry-${name}`, name, type: "number", step: "any", ...attrs });
  input.value = value ?? "";
  return el("label", { class: "field", for: input.id }, el("span", { text: name }), input,
    el("small", { class: "field-error", "data-field": name, role: "alert" }));
}

export function setupCarry(runId, getRun, onRun) {
  const dialog = $("carry-dialog"), form = $("carry-form"), error = $("carry-error");
  let mode = "resume";

  function open(which) {
    const run = getRun();
    if (!run) return;
    mode = which;
    error.hidden = true;
    if (mode === "extend") {
      $("carry-title").textContent = "Train more epochs";
      $("carry-help").textContent = `${run.epoch} epochs done. The same run carries on from its last checkpoint; its charts go on.`;
      $("carry-fields").replaceChildren(numberField("more", 10, { min: 1, max: 100000, step: 1 }));
    } else {
      $("carry-title").textContent = "Resume with changes";
      $("carry-help").textContent = "From its last checkpoint, with these settings; the rest stay, as the checkpoint needs. Empty max_steps or eval_every: none.";
      $("carry-fields").replaceChildren(...CHANGEABLE.map((name) => numberField(name, run.config[name])));
    }
    dialog.showModal();
  }

  function changes(run) {
    const out = {};
    for (const name of CHANGEABLE) {
      const text = form.elements[name].value.trim();
      const value = text === "" ? null : Number(text);
      if (value !== (run.config[name] ?? null)) out[name] = value;
    }
    return out;
  }

  $("extend-button").addEventListener("click", () => open("extend"));
  $("carry-button").addEventListener("click", () => open("resume"));
  $("carry-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
    const body = mode === "extend" ? { epochs: Number(form.elements.more.value) } : { config: changes(getRun()) };
    try {
      onRun(await fetchJSON(`/api/runs/${runId}/${mode}`, { method: "POST", body: JSON.stringify(body) }));
      dialog.close();
    } catch (e) {
      const detail = e.body && Array.isArray(e.body.detail) ? e.body.detail : [{ msg: e.message }];
      const general = [];
      for (const d of detail) {
        const name = mode === "extend" ? "more" : (d.loc || []).at(-1);
        const slot = form.querySelector(`.field-error[data-field="${name}"]`);
        const msg = String(d.msg).replace(/^Value error, /, "");
        if (slot) slot.textContent = msg; else general.push(msg);
      }
      error.textContent = general.join("\n");
      error.hidden = general.length === 0;
    }
  });
}
