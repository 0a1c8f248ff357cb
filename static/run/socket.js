// The page's websocket to WS /ws/runs/{id}: reconnects with back-off after a drop, and at once when the browser says it
// is online again. It hands every message to `onMessage` and every state change ("connecting", "live",
// "reconnecting", "gone") to `onState`; `after()` says from which step a reconnect asks for the history.
import { fetchJSON } from "../common.js";

export class RunSocket {
  constructor(runId, { after, onMessage, onState }) {
    Object.assign(this, { runId, after, onMessage, onState });
    this.ws = null;
    this.retryMs = 500;
    this.timer = 0;
    this.everConnected = false;
    window.addEventListener("online", () => {  // waiting out a back-off, or holding a socket the drop left half-open
      if (this.timer || !this.ws || this.ws.readyState !== WebSocket.OPEN) this.reconnectNow();
    });
  }

  open() {
    clearTimeout(this.timer);
    this.timer = 0;
    const after = this.after();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.onState(this.everConnected ? "reconnecting" : "connecting");
    const early = window.earlySocket;  // opened by the page before its modules loaded (templates/run.html)
    window.earlySocket = null;
    const ws = early && !after ? early : new WebSocket(`${scheme}://${location.host}/ws/runs/${this.runId}${after ? `?after=${after}` : ""}`);
    let opened = false;
    this.ws = ws;
    ws.onopen = () => { opened = this.everConnected = true; this.retryMs = 500; this.onState("live"); };
    ws.onmessage = (event) => {  // a snapshot, or a frame of live messages (an array)
      const data = JSON.parse(event.data);
      for (const msg of Array.isArray(data) ? data : [data]) this.onMessage(msg);
    };
    ws.onclose = async () => {
      if (!opened) {  // refused at the handshake: ask the API why (401 goes to the login page, 404 means deleted)
        try {
          await fetchJSON(`/api/runs/${this.runId}`);
        } catch (error) {
          if (error.status === 404) { this.onState("gone", "run not found"); return; }
        }
      }
      if (this.ws !== ws) return;  // replaced meanwhile
      this.onState("reconnecting", `reconnecting in ${Math.round(this.retryMs / 1000) || 1} s`);
      this.timer = setTimeout(() => this.open(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10_000);
    };
    for (const event of ws === early ? early.heard : []) ws[`on${event.type}`](event);  // what it heard meanwhile, in order
  }

  // A fresh connection now (and so a fresh snapshot from `after()`), dropping the current one unheard.
  reconnectNow() {
    this.detach();
    this.open();
  }

  detach() {
    if (this.ws) { this.ws.onclose = this.ws.onmessage = null; this.ws.close(); this.ws = null; }
  }

  drop() {  // for the tests: as if the network dropped it
    if (this.ws) this.ws.close();
  }
}
