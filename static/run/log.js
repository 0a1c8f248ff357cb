// The Worker log card: the log's newest 64 KiB (GET /api/runs/{id}/log), then, every few seconds while the run is
// queued or running, what was appended since (`?after=` the byte it had read to). The whole file is a download.
import { fetchJSON } from "../common.js";

const POLL_MS = 2000;
const TAIL_MS = 30000;  // reads on for this long after the run stops: the worker logs its last lines after it reported
const KEEP_CHARS = 256 * 1024;  // the page holds at most this much of the log; the download has all of it

export class LogView {
  constructor(runId, pre, empty) {
    Object.assign(this, { runId, pre, empty });
    this.end = null;  // the byte read to
    this.timer = null;  // the poll while the run is active
    this.tail = this.tailing = null;  // once it stopped: the timeout that ends the tail, and the poll it ends
    this.busy = false;
    this.again = false;  // a read asked for while one was under way: made when that one ends
  }

  async read() {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      const log = await fetchJSON(`/api/runs/${this.runId}/log${this.end === null ? "" : `?after=${this.end}`}`);
      const atBottom = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
      const text = log.start === this.end ? this.pre.textContent + log.text : log.text;  // else: its tail, afresh
      this.pre.textContent = text.length > KEEP_CHARS ? text.slice(text.indexOf("\n", text.length - KEEP_CHARS) + 1) : text;
      this.end = log.end;
      const none = this.pre.textContent === "";
      this.pre.hidden = none;
      this.empty.hidden = !none;
      if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;  // follows the newest lines unless scrolled up
    } catch {
      // the next poll tries again; a run page without its log still works
    } finally {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.read();
      }
    }
  }

  // Called with each run JSON: polls while the run is active, and on for TAIL_MS once it stops (its last lines).
  follow(active) {
    if (active) {
      this.endTail();
      if (!this.timer) {
        this.read();
        this.timer = setInterval(() => this.read(), POLL_MS);
      }
    } else if (this.timer || this.end === null) {
      this.tailing = this.timer;
      this.timer = null;
      this.read();
      this.tail = setTimeout(() => this.endTail(), TAIL_MS);
    }
  }

  endTail() {
    clearTimeout(this.tail);
    clearInterval(this.tailing);
    this.tail = this.tailing = null;
  }

  get text() {
    return this.pre.textContent;
  }
}
