// Helpers shared by every page, an ES module their modules import; base.html loads it on every page, for the theme
// toggle and the shortcuts overlay. D is always blue and G always orange, on every chart, legend and number.

// The Python constants the scripts go by (app/pages.py `page_constants`: statuses, form groups, checkpoint names...),
// put into every page as JSON by base.html, so that no script holds a copy of its own.
export const CONSTANTS = JSON.parse(document.getElementById("page-constants").textContent);
export const { ACTIVE, RESUMABLE } = CONSTANTS;
export const COLORS = { d: "#2563eb", g: "#ea580c", dRaw: "rgba(37, 99, 235, 0.28)", gRaw: "rgba(234, 88, 12, 0.28)", guide: "#6b7280" };

export async function fetchJSON(url, options = {}) {
  const response = await fetch(url, { headers: { "content-type": "application/json" }, ...options });
  if (response.status === 401) toLogin();  // a server with GANBOARD_TOKEN, and no (or an old) login cookie
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
    const error = new Error(detail);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function toLogin() {
  window.location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

// Times come from the server in ISO 8601 UTC; people read them in their own time zone.
export function localTime(iso) {
  if (!iso) return "–";
  const t = new Date(iso);
  const today = new Date().toDateString() === t.toDateString();
  return today ? t.toLocaleTimeString() : t.toLocaleString();
}

export function duration(startIso, endIso) {
  if (!startIso) return "–";
  return humanSeconds(Math.max(0, ((endIso ? new Date(endIso) : new Date()) - new Date(startIso)) / 1000));
}

export function humanSeconds(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.floor(seconds % 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

// Speed, ETA and time spent running, as the server measured them: images/s over recent steps while it runs (not the data
// loading), else the mean over the time it ran; null when there is nothing to measure. The run list and the run page
// both use these.
const known = (v) => v !== null && v !== undefined;

export function imagesPerSecond(run) {
  if (run.status === "running") return known(run.images_per_s) ? run.images_per_s : null;
  return known(run.mean_images_per_s) ? run.mean_images_per_s : null;
}

export function etaSeconds(run) {
  return run.status === "running" && known(run.eta_seconds) ? run.eta_seconds : null;
}

export function speedText(run) {
  const ips = imagesPerSecond(run), eta = etaSeconds(run);
  const mean = run.status === "running" ? "" : " on average";
  return [ips === null ? "" : `${ips.toFixed(0)} images/s${mean}`, eta === null ? "" : `ETA ${humanSeconds(eta)}`].filter(Boolean).join(" · ");
}

// Time spent running (not the time a run sat cancelled before a resume), when the server counts it.
export function runDuration(run) {
  return known(run.active_seconds) ? humanSeconds(run.active_seconds) : duration(run.started_at, run.finished_at);
}

export function isResumable(run) {
  return known(run.resumable) ? run.resumable : RESUMABLE.includes(run.status);
}

export function humanSize(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function progressFraction(run) {
  return run.total_steps ? Math.min(1, run.step / run.total_steps) : 0;
}

// One way to count, as the API does: run.epoch is the epochs completed, run.epoch_in_progress the one its newest step
// lies in (while it trains, or where it stopped inside an epoch), as the checkpoint labels say ("in epoch 4, step 90").
export function progressLabel(run) {
  const epochs = run.total_epochs ?? run.config.epochs;
  const inEpoch = run.epoch_in_progress ? ` · in epoch ${run.epoch_in_progress}` : "";
  const steps = run.total_steps ? ` · step ${run.step.toLocaleString()} of ${run.total_steps.toLocaleString()}` : "";
  return `${run.epoch} of ${epochs} epochs${inEpoch}${steps}`;
}

export function setBadge(node, status) {
  node.textContent = status;
  node.className = `badge ${status}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// ---- theme -----------------------------------------------------------------------------------------------------------
// Light or dark as the system prefers, unless the person chose one with the toggle (kept in localStorage). base.html
// sets data-theme before the first paint; style.css holds both palettes. Charts read their colours from CSS variables
// and redraw on "themechange".

const THEME_KEY = "ganboard-theme";

function currentTheme() {
  return document.documentElement.dataset.theme;
}

export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function setTheme(theme) {
  localStorage.setItem(THEME_KEY, theme);
  document.documentElement.dataset.theme = theme;
  const button = document.getElementById("theme-toggle");
  button.setAttribute("aria-pressed", String(theme === "dark"));
  button.title = theme === "dark" ? "switch to the light theme" : "switch to the dark theme";
  window.dispatchEvent(new Event("themechange"));
}

document.getElementById("theme-toggle").addEventListener("click", () => setTheme(currentTheme() === "dark" ? "light" : "dark"));
document.getElementById("theme-toggle").setAttribute("aria-pressed", String(currentTheme() === "dark"));
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", (e) => {
  if (!localStorage.getItem(THEME_KEY)) {
    document.documentElement.dataset.theme = e.matches ? "dark" : "light";
    window.dispatchEvent(new Event("themechange"));
  }
});

// ---- keyboard shortcuts ----------------------------------------------------------------------------------------------
// Each page adds its own with addShortcuts([{keys: ["g", "l"], help, run}]); a key sequence is pressed one key after the
// other. "?" lists them in an overlay; Escape closes it. Keys typed into a field (or moving a slider) are the field's.

const shortcuts = [{ keys: ["?"], help: "show this list", run: () => toggleShortcutHelp() }];
let pressed = [];

export function addShortcuts(list) {
  shortcuts.push(...list);
}

function toggleShortcutHelp(show) {
  const box = document.getElementById("shortcuts");
  const open = show ?? box.hidden;
  if (open) {
    const label = { ArrowLeft: "←", ArrowRight: "→" };
    box.querySelector("dl").replaceChildren(...shortcuts.flatMap((s) => [
      el("dt", {}, ...s.keys.flatMap((k, i) => [i ? " then " : "", el("kbd", { text: label[k] || k })])),
      el("dd", { text: s.help }),
    ]));
  }
  box.hidden = !open;
}

document.getElementById("shortcuts-close").addEventListener("click", () => toggleShortcutHelp(false));
document.getElementById("shortcuts-button").addEventListener("click", () => toggleShortcutHelp());

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") { toggleShortcutHelp(false); return; }
  const target = event.target;
  const typing = "textarea, select, [contenteditable], dialog, input:not([type=checkbox]):not([type=radio]):not([type=button])";
  if (event.ctrlKey || event.metaKey || event.altKey || target.closest(typing)) return;
  pressed = [...pressed, event.key].slice(-2);
  for (const s of shortcuts) {
    const tail = pressed.slice(-s.keys.length);
    if (tail.length === s.keys.length && tail.every((k, i) => k === s.keys[i])) {
      event.preventDefault();
      pressed = [];
      s.run();
      return;
    }
  }
});
