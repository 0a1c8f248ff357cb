// The run's header and Config panel, drawn from the run JSON alone: status, progress, speed and ETA (only when the
// server measured them), times, the error, which actions apply. No I/O: the buttons' handlers live in main.js.
import { ACTIVE, duration, el, humanSeconds, isResumable, localTime, progressFraction, progressLabel, runDuration, setBadge, speedText } from "../common.js";

const $ = (id) => document.getElementById(id);

let shownAt = 0;  // performance.now() when the run JSON arrived: a running run's active time ticks on from it

export function renderHeader(run) {
  if (!run) return;
  // FID/KID of an epoch is computed while training goes on, on a CPU several epochs behind: say both.
  const training = run.epoch_in_progress ?? run.epoch;
  const scoring = run.status !== "running" || !run.scoring ? null
    : `FID of epoch ${run.scoring} being scored` + (training > run.scoring ? ` (training is in epoch ${training})` : "");
  $("progress-text").textContent = [progressLabel(run), speedText(run), scoring].filter(Boolean).join(" · ");
  const running = run.status === "running";
  const active = run.active_seconds === undefined || run.active_seconds === null ? null
    : run.active_seconds + (running ? (performance.now() - shownAt) / 1000 : 0);
  let times;
  if (run.status === "queued") times = `queued at ${localTime(run.created_at)}: ${run.job_state || "it starts when a worker is free"}`;
  else if (!run.started_at) times = `created ${localTime(run.created_at)}`;
  else if (running) times = `started ${localTime(run.started_at)} · running for ${active === null ? duration(run.started_at, null) : humanSeconds(active)}`;
  else times = `started ${localTime(run.started_at)} · ${run.status} ${localTime(run.finished_at)} after ${runDuration(run)}`;
  if (run.device) times += ` · on ${run.device}` + (run.graphed === true ? " (CUDA graphs)" : run.graphed === false && run.device.startsWith("cuda") ? " (eager)" : "");
  $("run-times").textContent = times;
}

export function showRun(run, previous) {
  shownAt = performance.now();
  $("run-name").textContent = run.name;
  document.title = `${run.name} · GANboard`;
  setBadge($("status"), run.status);
  const progress = $("progress");
  progress.dataset.step = run.step;
  progress.dataset.epoch = run.epoch;
  const percent = progressFraction(run) * 100;
  progress.setAttribute("aria-valuenow", percent.toFixed(0));
  progress.querySelector(".bar").style.width = `${percent.toFixed(1)}%`;
  progress.classList.toggle("done", run.status === "completed");
  renderHeader(run);
  const error = $("error");
  error.textContent = run.status === "failed" ? run.error || "failed (no error text)"
    : ["pruned", "queued", "running"].includes(run.status) ? run.error || ""  // active: why it was requeued
    : run.status === "cancelled" && run.error ? `Cancelled, but ${run.error}` : "";
  error.hidden = !error.textContent;
  const cancel = $("cancel-button"), resume = $("resume-button");
  cancel.hidden = !ACTIVE.includes(run.status);
  resume.hidden = $("carry-button").hidden = !isResumable(run);
  $("extend-button").hidden = run.status !== "completed";
  if (!previous || previous.status !== run.status) {
    cancel.disabled = resume.disabled = false;
    cancel.textContent = "Cancel";
    resume.textContent = "Resume";
  }
  showConfig(run);
}

// The settings as asked for, and beside device and bf16 what the run really used (once it started).
function showConfig(run) {
  const box = $("config");
  const used = { device: run.device, bf16: run.bf16 };
  const rows = Object.entries(run.config).map(([key, value]) => {
    const asked = value === null ? "–" : String(value);
    const real = used[key];
    return [key, real === undefined || real === null || String(real) === asked ? asked : `${real} (asked: ${asked})`];
  });
  showChanges(run.changes || []);
  const text = JSON.stringify(rows);
  if (box.dataset.shown === text) return;
  box.dataset.shown = text;
  box.textContent = "";
  for (const [key, value] of rows) {
    box.append(el("div", { class: "kv" }, el("span", { class: "k", text: key }), el("span", { class: "v", text: value })));
  }
}

// Settings changed when the run was resumed or extended, oldest first: "at step 90 (epoch 3): lr_d 0.0002 → 0.0001".
function showChanges(changes) {
  const list = $("config-changes");
  const text = JSON.stringify(changes);
  if (list.dataset.shown === text) return;
  list.dataset.shown = text;
  list.replaceChildren(...changes.map((c) => el("li", {
    text: `Changed at step ${c.step.toLocaleString()} (epoch ${c.epoch}), ${localTime(c.at)}: ` + Object.entries(c.changed)
      .map(([key, [was, now]]) => `${key} ${was ?? "–"} → ${now ?? "–"}`).join(", "),
  })));
  list.hidden = changes.length === 0;
}
