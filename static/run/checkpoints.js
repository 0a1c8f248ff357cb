// The checkpoint list: the latest netg.pth, netd.pth and resume.pt first, then the best by FID (with a "best" badge),
// then the saved copies, newest first (G before D), each labelled with what it holds (the server's `label`, e.g.
// "after epoch 10", "in epoch 29, step 812" or "best FID 41.2 (epoch 7)").
import { CONSTANTS, el, humanSize } from "../common.js";

const { BEST } = CONSTANTS;
const LATEST = [...CONSTANTS.LATEST, ...BEST];
const NOTES = { "resume.pt": "for Resume" };

function order(a, b) {
  const latest = (c) => LATEST.indexOf(c.name);
  const [la, lb] = [latest(a), latest(b)];
  if (la >= 0 || lb >= 0) return (la < 0) - (lb < 0) || la - lb;
  const when = (c) => c.step ?? c.epoch ?? 0;
  return when(b) - when(a) || b.name.localeCompare(a.name);  // netg_* before netd_*
}

// What a checkpoint holds, when the server did not say: a per-epoch copy names its epoch.
function label(c) {
  if (c.label) return c.label;
  if (NOTES[c.name]) return NOTES[c.name];
  return /_\d+\.pth$/.test(c.name) ? `epoch ${c.epoch}` : "latest";
}

export function showCheckpoints(list) {
  if (!list) return;
  const ul = document.getElementById("checkpoints");
  if (!list.length) return;
  ul.textContent = "";
  for (const c of [...list].sort(order)) {
    ul.append(el("li", {},
      el("span", { class: "file-name" }, el("a", { href: c.url, download: c.name, text: c.name }),
        ...(BEST.includes(c.name) ? [el("span", { class: "badge best", text: "best" })] : [])),
      el("span", { class: "muted small file-label", text: label(c) }),
      el("span", { class: "size", text: humanSize(c.size) })));
  }
}
