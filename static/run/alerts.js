// The run's health alerts (app/health.py): what is wrong, in words, and what to try; newest first, open ones marked.
import { el } from "../common.js";

const $ = (id) => document.getElementById(id);

export function showAlerts(alerts) {
  const card = $("alerts-card");
  card.hidden = alerts.length === 0;
  const list = $("alerts");
  const key = JSON.stringify(alerts);
  if (list.dataset.key === key) return;  // unchanged: keep the page from repainting
  list.dataset.key = key;
  list.replaceChildren(...alerts.map((a) => {
    const open = a.cleared_step === null;
    return el("li", { class: `alert ${open ? "open" : "cleared"}`, "data-kind": a.kind },
      el("p", { class: "alert-message" }, el("strong", {}, `${a.kind.replace("_", " ")} at step ${a.step.toLocaleString()}`),
        open ? "" : ` (cleared at step ${a.cleared_step.toLocaleString()})`, ": ", a.message),
      el("p", { class: "alert-advice muted small" }, `Try: ${a.advice}`));
  }));
}
