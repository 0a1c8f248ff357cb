// The runs' sample grids side by side at one epoch, with one slider for all. A run without a grid at that epoch shows
// its nearest earlier one, labelled so.
import { el } from "../common.js";

// The sample of the newest epoch at or before `epoch` ([{epoch, url, ...}] sorted by epoch), or null.
export function nearestEarlier(samples, epoch) {
  let found = null;
  for (const s of samples) if (s.epoch <= epoch) found = s; else break;
  return found;
}

export class GridRow {
  constructor(box, slider, output, runs) {
    Object.assign(this, { box, slider, output, runs });
    this.following = true;  // the slider follows the newest epoch until the person moves it
    this.cells = runs.map((r) => {
      const img = el("img", { alt: `samples of run ${r.id}`, hidden: "" });
      const label = el("figcaption", { class: "small muted" });
      const title = el("a", { href: `/runs/${r.id}`, class: "grid-run", style: `border-left: 4px solid ${r.colour}`, text: `#${r.id}` });
      const fig = el("figure", { class: "compare-grid", "data-run-id": r.id }, title, img, label);
      box.append(fig);
      return { run: r, img, label, title };
    });
    slider.addEventListener("input", () => {
      this.following = Number(slider.value) === Number(slider.max);
      this.show();
    });
  }

  get epoch() {
    return Number(this.slider.value);
  }

  // After new samples arrived (each run's `samples` sorted by epoch).
  update() {
    const newest = Math.max(0, ...this.runs.map((r) => (r.samples.length ? r.samples[r.samples.length - 1].epoch : 0)));
    this.slider.max = String(Math.max(1, newest));
    this.slider.disabled = newest < 2;
    if (this.following) this.slider.value = this.slider.max;
    this.show();
  }

  show() {
    const epoch = this.epoch;
    this.output.textContent = this.slider.disabled && !this.runs.some((r) => r.samples.length) ? "–" : String(epoch);
    for (const { run, img, label, title } of this.cells) {
      title.style.borderLeftColor = run.colour;
      if (run.run && title.textContent !== `#${run.id} ${run.run.name}`) title.textContent = `#${run.id} ${run.run.name}`;
      const s = nearestEarlier(run.samples, epoch);
      img.hidden = !s;
      if (s && img.getAttribute("src") !== s.url) img.src = s.url;
      label.textContent = !s ? `no grid by epoch ${epoch}` : s.epoch === epoch ? `epoch ${s.epoch}` : `epoch ${s.epoch} (no grid at ${epoch}: nearest earlier)`;
      label.classList.toggle("earlier", Boolean(s) && s.epoch !== epoch);
    }
  }
}
