// "PNG" buttons on chart cards: a click downloads the chart as drawn. uPlot draws the plot and its axes on one canvas
// and the legend in HTML, so the image is that canvas on the card's background, under the title, over the shown legend
// entries (each in its series' colour). A button names its chart box and file: <button data-png="loss-chart"
// data-png-file="run-12-loss" data-png-title="Losses">. Read from the page, not from uPlot, so any uPlot chart works.

function background(node) {  // the first colour that is not transparent, from the chart up
  for (let n = node; n; n = n.parentElement) {
    const colour = getComputedStyle(n).backgroundColor;
    if (colour && colour !== "transparent" && !/rgba\(.*,\s*0\)$/.test(colour)) return colour;
  }
  return "#ffffff";
}

// The legend entries shown: [{label, colour}] (not the x series, not hidden rows, not series switched off).
function legendEntries(box) {
  return [...box.querySelectorAll(".u-legend .u-series")].slice(1)
    .filter((row) => !row.hidden && !row.classList.contains("u-off"))
    .map((row) => {
      const marker = getComputedStyle(row.querySelector(".u-marker"));
      return { label: row.querySelector(".u-label").textContent, colour: marker.borderColor || marker.backgroundColor };
    });
}

// The chart in `box` as a PNG blob: as wide as its canvas, the title above and the legend below it.
export function chartPng(box, title) {
  const plot = box.querySelector("canvas");
  const scale = plot.width / plot.getBoundingClientRect().width || 1;
  const font = 13 * scale, line = Math.round(font * 1.6), pad = Math.round(8 * scale);
  const entries = legendEntries(box);
  const out = document.createElement("canvas");
  const ctx = out.getContext("2d");
  ctx.font = `${font}px system-ui, sans-serif`;
  const rows = [[]];  // legend entries wrapped into rows of the canvas's width
  let x = pad;
  for (const entry of entries) {
    const width = 2 * font + ctx.measureText(entry.label).width;
    if (x + width > plot.width - pad && rows[rows.length - 1].length) { rows.push([]); x = pad; }
    rows[rows.length - 1].push({ ...entry, x });
    x += width + font;
  }
  const top = pad + line, legendHeight = entries.length ? rows.length * line + pad : 0;
  out.width = plot.width;
  out.height = top + plot.height + legendHeight;
  ctx.fillStyle = background(box);
  ctx.fillRect(0, 0, out.width, out.height);
  const ink = getComputedStyle(box).color;
  ctx.textBaseline = "middle";
  ctx.fillStyle = ink;
  ctx.font = `600 ${font * 1.1}px system-ui, sans-serif`;
  ctx.fillText(title, pad, pad + line / 2);
  ctx.drawImage(plot, 0, top);
  ctx.font = `${font}px system-ui, sans-serif`;
  rows.forEach((row, r) => {
    const y = top + plot.height + r * line + line / 2;
    for (const entry of row) {
      ctx.fillStyle = entry.colour;
      ctx.fillRect(entry.x, y - 2 * scale, font * 1.2, 4 * scale);
      ctx.fillStyle = ink;
      ctx.fillText(entry.label, entry.x + font * 1.6, y);
    }
  });
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

async function download(button) {
  const blob = await chartPng(document.getElementById(button.dataset.png), button.dataset.pngTitle || "");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${button.dataset.pngFile}.png`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// One listener for every PNG button of the page, however many modules import this one.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-png]");
  if (button) download(button);
});
