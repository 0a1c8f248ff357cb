// "Sample from a checkpoint": a grid, a latent walk or the article's generate mode from one of the run's generator
// checkpoints, made by POST /api/runs/{id}/samples/generate (cached there). The server checks every field; its reason
// is shown as it came.
import { el, fetchJSON, humanSize } from "../common.js";

const $ = (id) => document.getElementById(id);

// netg.pth (the latest) first, then the saved copies, newest first.
function generators(list) {
  const when = (c) => (c.name === "netg.pth" ? Infinity : c.step ?? c.epoch ?? 0);
  const newestFirst = (a, b) => when(b) - when(a) || b.name.localeCompare(a.name);
  return list.filter((c) => c.name.startsWith("netg")).sort(newestFirst);
}

function reason(error) {
  const detail = error.body && error.body.detail;
  if (Array.isArray(detail)) return detail.map((e) => `${e.loc[e.loc.length - 1]}: ${e.msg}`).join("\n");
  return error.message;
}

export class Sampler {
  constructor(runId) {
    this.runId = runId;
    this.form = $("sampler-form");
    this.select = $("sampler-checkpoint");
    this.mode = $("sampler-mode");
    this.button = $("sampler-button");
    this.mode.addEventListener("change", () => this.showFields());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.generate();
    });
  }

  setCheckpoints(list) {
    if (!list) return;
    const chosen = this.select.value;
    const netgs = generators(list);
    if (!netgs.length) return;
    const option = (c) => el("option", { value: c.name, text: `${c.name} (${c.label || "latest"})` });
    this.select.replaceChildren(...netgs.map(option));
    if (netgs.some((c) => c.name === chosen)) this.select.value = chosen;
    this.select.disabled = false;
    if (!this.busy) this.button.disabled = false;
  }

  showFields() {
    for (const field of this.form.querySelectorAll("[data-modes]")) {
      field.hidden = !field.dataset.modes.split(" ").includes(this.mode.value);
    }
  }

  body() {
    const number = (id) => ($(id).value === "" ? null : Number($(id).value));
    const body = { checkpoint: this.select.value, mode: this.mode.value, seed: number("sampler-seed") };
    if (body.mode === "walk") Object.assign(body, { seed2: number("sampler-seed2"), steps: number("sampler-steps") });
    else body.count = number("sampler-count");
    return body;
  }

  setBusy(busy, text) {
    this.busy = busy;
    this.button.disabled = busy;
    this.button.textContent = busy ? "Generating…" : "Generate";
    this.form.closest(".card").setAttribute("aria-busy", String(busy));
    $("sampler-status").textContent = text;
  }

  // The result's size and a download link for each file, under the images (made here: the template is shared).
  showDownloads(out) {
    const name = `run-${this.runId}-${this.body().mode}-seed-${this.body().seed}`;
    const link = (url, ext, size, what) =>
      el("a", { href: url, download: `${name}.${ext}`, class: "button", text: `Download ${what} (${humanSize(size)})` });
    const links = [link(out.url, "png", out.size, "PNG")];
    if (out.animation_url) links.push(link(out.animation_url, "webp", out.animation_size, "WebP"));
    let box = $("sampler-downloads");
    if (!box) {
      box = el("p", { id: "sampler-downloads", class: "sampler-downloads" });
      $("sampler-result").after(box);
    }
    box.replaceChildren(...links);
  }

  async generate() {
    const error = $("sampler-error");
    error.hidden = true;
    this.setBusy(true, "running the sampler…");
    const started = performance.now();
    try {
      const url = `/api/runs/${this.runId}/samples/generate`;
      const out = await fetchJSON(url, { method: "POST", body: JSON.stringify(this.body()) });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      $("sampler-img").src = out.url;
      const anim = $("sampler-anim");
      anim.hidden = !out.animation_url;
      if (out.animation_url) anim.src = out.animation_url;
      $("sampler-result").hidden = false;
      this.showDownloads(out);
      this.setBusy(false, out.cached ? "from the cache" : `made on ${out.device} in ${seconds} s`);
    } catch (e) {
      error.textContent = reason(e);
      error.hidden = false;
      this.setBusy(false, "");
    }
  }
}
