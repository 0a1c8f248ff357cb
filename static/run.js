// The live run page: a snapshot from WS /ws/runs/{id}, then live messages; charts redrawn at most once per frame.
"use strict";

const runId = Number(document.getElementById("run").dataset.runId);
const SERIES = ["loss_d", "loss_g", "d_x", "d_g_z"];
const data = { step: [], loss_d: [], loss_g: [], d_x: [], d_g_z: [] };
let run = null;
let samples = [];
let dirty = false;
let socket = null;
let retryMs = 500;

// ---- charts ----------------------------------------------------------------------------------------------------------

function chartOptions(width, series, yLabel, range) {
  return {
    width, height: 240,
    scales: { x: { time: false }, y: range ? { range } : {} },
    axes: [{ label: "step", size: 40 }, { label: yLabel, size: 56 }],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    series: [{ label: "step" }, ...series],
  };
}

const guideLine = {
  hooks: {
    draw: [(u) => {  // the 0.5 line: where D cannot tell real from generated
      const y = u.valToPos(0.5, "y", true);
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = COLORS.guide;
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(u.bbox.left, y);
      ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke();
      ctx.restore();
    }],
  },
};

const lossBox = document.getElementById("loss-chart");
const dgzBox = document.getElementById("dgz-chart");
const lossChart = new uPlot(chartOptions(lossBox.clientWidth, [
  { label: "loss_D", stroke: COLORS.d, width: 1.5, spanGaps: true, value: (u, v) => fmt(v) },
  { label: "loss_G", stroke: COLORS.g, width: 1.5, spanGaps: true, value: (u, v) => fmt(v) },
], "loss"), [[], [], []], lossBox);
const dgzChart = new uPlot({ ...chartOptions(dgzBox.clientWidth, [
  { label: "D(x)", stroke: COLORS.d, width: 1.5, spanGaps: true, value: (u, v) => fmt(v) },
  { label: "D(G(z))", stroke: COLORS.g, width: 1.5, spanGaps: true, value: (u, v) => fmt(v) },
], "D output", [0, 1]), ...guideLine }, [[], [], []], dgzBox);

new ResizeObserver(() => {
  lossChart.setSize({ width: lossBox.clientWidth, height: 240 });
  dgzChart.setSize({ width: dgzBox.clientWidth, height: 240 });
}).observe(lossBox);

// TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to zero.
function smooth(values, weight) {
  if (weight <= 0) return values;
  const out = new Array(values.length);
  let last = 0, count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    count++;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}

const smoothing = document.getElementById("smoothing");
smoothing.addEventListener("input", () => {
  document.getElementById("smoothing-value").textContent = Number(smoothing.value).toFixed(2);
  dirty = true;
});

function redraw() {
  if (dirty) {
    dirty = false;
    const w = Number(smoothing.value);
    lossChart.setData([data.step, smooth(data.loss_d, w), smooth(data.loss_g, w)]);
    dgzChart.setData([data.step, data.d_x, data.d_g_z]);
  }
  requestAnimationFrame(redraw);
}
requestAnimationFrame(redraw);

function appendRows(rows) {
  const last = data.step.length ? data.step[data.step.length - 1] : 0;
  for (let i = 0; i < rows.step.length; i++) {
    if (rows.step[i] <= last) continue;  // already have it
    data.step.push(rows.step[i]);
    for (const s of SERIES) data[s].push(rows[s][i]);
  }
  dirty = true;
}

// ---- run header, samples, checkpoints, config ------------------------------------------------------------------------

function showRun(next) {
  run = next;
  document.getElementById("run-name").textContent = run.name;
  document.title = `${run.name} · GANboard`;
  const status = document.getElementById("status");
  status.textContent = run.status;
  status.className = `badge ${run.status}`;
  const progress = document.getElementById("progress");
  progress.dataset.step = run.step;
  progress.dataset.epoch = run.epoch;
  progress.querySelector(".bar").style.width = `${(progressFraction(run) * 100).toFixed(1)}%`;
  let text = progressLabel(run);
  if (run.images_per_s) text += ` · ${run.images_per_s.toFixed(0)} images/s`;
  if (run.status === "running" && run.total_steps && run.step > 0 && run.started_at) {
    const perStep = (Date.now() - new Date(run.started_at)) / 1000 / Math.max(1, run.step - startStep);
    text += ` · ETA ${humanSeconds(perStep * (run.total_steps - run.step))}`;
  }
  text += ` · started ${localTime(run.started_at)}`;
  document.getElementById("progress-text").textContent = text;
  const error = document.getElementById("error");
  error.textContent = run.error || "";
  error.hidden = !run.error;
  document.getElementById("cancel-button").hidden = !["queued", "running"].includes(run.status);
  document.getElementById("resume-button").hidden = !["failed", "cancelled", "interrupted"].includes(run.status);
  showConfig(run.config);
}

let startStep = 0;
let configShown = false;
function showConfig(config) {
  if (configShown) return;
  configShown = true;
  const table = document.getElementById("config");
  for (const [key, value] of Object.entries(config)) {
    table.append(el("tr", {}, el("th", { text: key }), el("td", { text: value === null ? "–" : String(value) })));
  }
}

const slider = document.getElementById("epoch-slider");
const sampleImg = document.getElementById("sample-img");
let following = true;  // the slider follows the newest grid until the person moves it

function showSample(index) {
  const sample = samples[index];
  if (!sample) return;
  sampleImg.src = sample.url;
  sampleImg.hidden = false;
  document.getElementById("sample-empty").hidden = true;
  document.getElementById("sample-label").textContent = `epoch ${sample.epoch} of ${samples.length}`;
  slider.value = String(index + 1);
}

function addSamples(list) {
  for (const sample of list) {
    if (!samples.some((s) => s.epoch === sample.epoch)) samples.push(sample);
  }
  samples.sort((a, b) => a.epoch - b.epoch);
  slider.max = String(Math.max(1, samples.length));
  slider.disabled = samples.length < 2;
  document.getElementById("play-button").disabled = samples.length < 2;
  if (following && samples.length) showSample(samples.length - 1);
}

slider.addEventListener("input", () => {
  following = Number(slider.value) === samples.length;
  showSample(Number(slider.value) - 1);
});

let playTimer = null;
document.getElementById("play-button").addEventListener("click", (event) => {
  const button = event.currentTarget;
  if (playTimer) {
    clearInterval(playTimer);
    playTimer = null;
    button.textContent = "Play";
    return;
  }
  button.textContent = "Pause";
  let i = Number(slider.value) >= samples.length ? 0 : Number(slider.value) - 1;
  following = false;
  playTimer = setInterval(() => {
    showSample(i);
    i += 1;
    if (i >= samples.length) {
      clearInterval(playTimer);
      playTimer = null;
      button.textContent = "Play";
      following = true;
    }
  }, 300);
});

function showCheckpoints(list) {
  const ul = document.getElementById("checkpoints");
  if (!list.length) return;
  ul.textContent = "";
  for (const c of list) {
    ul.append(el("li", {}, el("a", { href: c.url, download: "", text: c.name }), el("span", { class: "muted", text: humanSize(c.size) })));
  }
}

// ---- actions ---------------------------------------------------------------------------------------------------------

async function action(name) {
  try {
    showRun(await fetchJSON(`/api/runs/${runId}/${name}`, { method: "POST" }));
  } catch (error) {
    const box = document.getElementById("error");
    box.textContent = error.message;
    box.hidden = false;
  }
}
document.getElementById("cancel-button").addEventListener("click", () => action("cancel"));
document.getElementById("resume-button").addEventListener("click", () => action("resume"));

// ---- live connection -------------------------------------------------------------------------------------------------

function setConnection(state) {
  const conn = document.getElementById("conn");
  conn.textContent = state;
  conn.className = `conn ${state}`;
}

function connect() {
  const after = data.step.length ? data.step[data.step.length - 1] : 0;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/runs/${runId}${after ? `?after=${after}` : ""}`);
  socket.onopen = () => { setConnection("live"); retryMs = 500; };
  socket.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "snapshot") {
      if (run === null) startStep = msg.run.step;
      appendRows(msg.metrics);  // after a reconnect it holds only the steps we missed; appendRows skips duplicates
      showRun(msg.run);
      addSamples(msg.samples);
      showCheckpoints(msg.checkpoints);
    } else if (msg.type === "batch") {
      appendRows(msg.rows);
    } else if (msg.type === "epoch") {
      addSamples([msg.sample]);
      if (msg.checkpoints) showCheckpoints(msg.checkpoints);
    } else if (msg.type === "run") {
      showRun(msg.run);
    }
  };
  socket.onclose = () => {
    setConnection("reconnecting");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

window.ganboard = {
  pointCount: () => data.step.length,
  lastStep: () => (data.step.length ? data.step[data.step.length - 1] : 0),
  steps: () => data.step.slice(),
  sampleCount: () => samples.length,
  dropConnection: () => socket && socket.close(),
};

connect();
