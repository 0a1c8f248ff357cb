// Helpers shared by both pages. D is always blue and G always orange, on every chart and label.
"use strict";

const COLORS = { d: "#2563eb", g: "#ea580c", guide: "#9ca3af" };

async function fetchJSON(url, options = {}) {
  const response = await fetch(url, { headers: { "content-type": "application/json" }, ...options });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((body && typeof body.detail === "string" && body.detail) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

function localTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function duration(startIso, endIso) {
  if (!startIso) return "–";
  const seconds = Math.max(0, ((endIso ? new Date(endIso) : new Date()) - new Date(startIso)) / 1000);
  return humanSeconds(seconds);
}

function humanSeconds(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.floor(seconds % 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

function humanSize(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function progressFraction(run) {
  return run.total_steps ? Math.min(1, run.step / run.total_steps) : 0;
}

function progressLabel(run) {
  const epochs = run.total_epochs ?? run.config.epochs;
  const steps = run.total_steps ? ` · step ${run.step} of ${run.total_steps}` : "";
  return `epoch ${run.epoch} of ${epochs}${steps}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}
