// The strip over the list: each GPU of the server with its memory and the runs on it, or the CPU and the running runs.
import { fetchJSON } from "../common.js";

export async function showMachine() {
  const m = await fetchJSON("/api/machine");
  const links = (runs) => (runs.length ? runs.flatMap((r, i) => {
    const a = document.createElement("a");
    a.href = `/runs/${r.id}`;
    a.textContent = r.name;
    return i ? [", ", a] : [a];
  }) : ["idle"]);
  const gb = (mb) => (mb / 1024).toFixed(1);
  const load = m.cpu.load === null ? "–" : m.cpu.load.toFixed(2);
  const strip = document.getElementById("machine-strip");
  const parts = m.gpus.length
    ? m.gpus.flatMap((g, i) => [i ? "  |  " : "", `GPU ${g.index} ${g.name}: ${gb(g.memory_used_mb)} / ${gb(g.memory_total_mb)} GB, `, ...links(g.runs)])
    : [`CPU: ${m.cpu.count} cores, load ${load}; running: `, ...links(m.running)];
  strip.replaceChildren(...parts);
  strip.hidden = false;
}
