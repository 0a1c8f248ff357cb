// The sample-grid player: one grid per finished epoch, a slider over the epochs, and Play. DOM only, no I/O beyond the
// images themselves.

const $ = (id) => document.getElementById(id);

export class SamplePlayer {
  constructor() {
    this.samples = [];       // [{epoch, name, url}] sorted by epoch, all kept
    this.following = true;   // the slider follows the newest grid until the person moves it
    this.playTimer = null;
    this.totalEpochs = null;
    this.preloaded = new Map();
    this.slider = $("epoch-slider");
    this.img = $("sample-img");
    this.playButton = $("play-button");
    this.img.addEventListener("load", () => {  // small grids scaled up stay crisp; large ones scaled down stay smooth
      this.img.classList.toggle("pixelated", this.img.naturalWidth < this.img.clientWidth);
    });
    this.slider.addEventListener("input", () => {
      this.stop();
      this.following = Number(this.slider.value) === this.samples.length;
      this.show(Number(this.slider.value) - 1);
    });
    this.playButton.addEventListener("click", () => (this.playTimer ? this.stop() : this.play()));
  }

  get count() {
    return this.samples.length;
  }

  show(index) {
    const sample = this.samples[index];
    if (!sample) return;
    if (this.img.getAttribute("src") !== sample.url) this.img.src = sample.url;
    this.img.parentElement.href = sample.url;  // the link opens the grid at its own size
    this.img.hidden = false;
    $("sample-empty").hidden = true;
    $("sample-label").textContent = `epoch ${sample.epoch}${this.totalEpochs ? ` of ${this.totalEpochs}` : ""}`;
    this.slider.value = String(index + 1);
    this.slider.setAttribute("aria-valuetext", `epoch ${sample.epoch}`);
  }

  // The grid `delta` epochs away from the one shown (the arrow keys); the newest one follows new grids again.
  step(delta) {
    if (!this.samples.length) return;
    this.stop();
    const index = Math.min(this.samples.length - 1, Math.max(0, Number(this.slider.value) - 1 + delta));
    this.following = index === this.samples.length - 1;
    this.show(index);
  }

  add(list) {
    for (const sample of list || []) {
      if (!sample) continue;
      const i = this.samples.findIndex((s) => s.epoch === sample.epoch);
      if (i >= 0) this.samples[i] = sample; else this.samples.push(sample);
    }
    this.samples.sort((a, b) => a.epoch - b.epoch);
    this.slider.max = String(Math.max(1, this.samples.length));
    this.slider.disabled = this.playButton.disabled = this.samples.length < 2;
    if (this.following && this.samples.length && !this.playTimer) this.show(this.samples.length - 1);
  }

  clear() {
    this.samples = [];
    this.add([]);
  }

  stop() {
    if (!this.playTimer) return;
    clearInterval(this.playTimer);
    this.playTimer = null;
    this.playButton.textContent = "▶ Play";
    this.playButton.setAttribute("aria-label", "play through the epochs");
  }

  play() {
    for (const sample of this.samples) {
      if (this.preloaded.has(sample.url)) continue;
      const img = new Image();
      img.src = sample.url;
      this.preloaded.set(sample.url, img);
    }
    this.playButton.textContent = "❚❚ Pause";
    this.playButton.setAttribute("aria-label", "pause");
    let i = Number(this.slider.value) >= this.samples.length ? 0 : Number(this.slider.value) - 1;
    this.following = false;
    this.show(i);
    this.playTimer = setInterval(() => {
      i += 1;
      if (i >= this.samples.length) {  // stop on the newest grid, and follow new ones again
        this.stop();
        this.following = true;
        return;
      }
      this.show(i);
    }, 400);
  }
}
