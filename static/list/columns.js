// The run list's columns: the table view shows them all (the hyperparameter comparison), the list view sorts by some;
// every key is also a sort key of both views.
import { fmt, imagesPerSecond, localTime, progressFraction } from "../common.js";

const cfg = (key) => (run) => run.config[key];
const field = (key) => (run) => run[key];
// [key, heading, value, kind], in order.
export const COLUMNS = [
  ["name", "Run", (r) => r.name.toLowerCase(), "text"],
  ["status", "Status", field("status"), "text"],
  ["tags", "Tags", (r) => r.tags.join(", "), "text"],
  ["dataset", "dataset", cfg("dataset"), "text"],
  ["image_size", "image_size", cfg("image_size")],
  ["batch_size", "batch_size", cfg("batch_size")],
  ["nz", "nz", cfg("nz")],
  ["ngf", "ngf", cfg("ngf")],
  ["ndf", "ndf", cfg("ndf")],
  ["lr_g", "lr_g", cfg("lr_g"), "sci"],
  ["lr_d", "lr_d", cfg("lr_d"), "sci"],
  ["beta1", "beta1", cfg("beta1")],
  ["d_every", "d_every", cfg("d_every")],
  ["g_every", "g_every", cfg("g_every")],
  ["epochs", "epochs", cfg("epochs")],
  ["bf16", "bf16", (r) => r.bf16 ?? r.config.bf16, "text"],
  ["device", "device", (r) => r.device ?? r.config.device, "text"],
  ["progress", "progress", progressFraction, "percent"],
  ["step", "step", field("step")],
  ["loss_d", "loss D", field("loss_d"), "fixed"],
  ["loss_g", "loss G", field("loss_g"), "fixed"],
  ["d_x", "D(x)", field("d_x"), "fixed"],
  ["d_g_z", "D(G(z))", field("d_g_z"), "fixed"],
  ["swd", "SWD", field("swd"), "fixed"],
  ["best_swd", "best SWD", field("best_swd"), "fixed"],
  ["fid", "FID", field("fid"), "fixed"],
  ["best_fid", "best FID", field("best_fid"), "fixed"],
  ["ips", "images/s", imagesPerSecond, "int"],
  ["created", "created", field("created_at"), "time"],
];
export const COLUMN = Object.fromEntries(COLUMNS.map(([key, label, value, kind]) => [key, { key, label, value, kind }]));
export const LIST_SORTS = ["created", "name", "status", "progress", "loss_d", "loss_g", "best_swd", "best_fid", "ips"];  // the list view's
const LOWER_IS_BETTER = new Set(["swd", "best_swd", "fid", "best_fid"]);  // sorted best first: ascending
// The direction a column sorts in when first chosen: names and words A to Z, scores best first, other figures largest first.
export const firstDir = (key) => (COLUMN[key].kind === "text" || LOWER_IS_BETTER.has(key) ? "asc" : "desc");

export function cellText(column, run) {
  const v = column.value(run);
  if (v === null || v === undefined || v === "") return "–";
  switch (column.kind) {
    case "fixed": return fmt(v);
    case "sci": return Number(v).toExponential(1);
    case "int": return v.toFixed(0);
    case "percent": return `${(v * 100).toFixed(0)}%`;
    case "time": return localTime(v);
    default: return typeof v === "number" ? v.toLocaleString() : String(v);
  }
}
