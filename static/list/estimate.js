// How long the form's run would train here, from what this machine measured. Only from a run of the same shape on the
// same kind of device: small models are bound by overheads, not arithmetic, so scaling one size's speed to another
// misleads (the quick preset's ~1,000 images/s would make the article's 96px model ~16 images/s by its FLOPs; it trains
// at ~94 here).
import { humanSeconds, imagesPerSecond } from "../common.js";

const DATASET_IMAGES = { emoji: 1860, procedural: 4096, mnist: 60000, "fashion-mnist": 60000, cifar10: 50000 };
const SHAPE = ["image_size", "channels", "ngf", "ndf", "nz", "batch_size", "d_every", "g_every"];
const deviceKind = (device) => (String(device).startsWith("cuda") ? "GPU" : "CPU");

// `config`: the form's; `devices`: the server's (GET /api/form); `runs`: the run list, newest first.
export function estimateText(config, devices, runs) {
  const kind = config.device === "auto" ? (devices.some((d) => d.startsWith("cuda")) ? "GPU" : "CPU") : deviceKind(config.device);
  const measured = runs.find((r) => r.device && deviceKind(r.device) === kind && imagesPerSecond(r)
    && SHAPE.every((k) => r.config[k] === config[k]));  // the newest
  const shape = `${config.image_size}px, ngf ${config.ngf}, ndf ${config.ndf}, batch ${config.batch_size}`;
  if (!measured) {
    return `No run of this shape (${shape}) has trained on this machine's ${kind} yet, so no estimate: its speed and ETA `
      + "show after its first steps. Bigger images and wider nets cost far more per image.";
  }
  const ips = imagesPerSecond(measured);
  const perEpoch = DATASET_IMAGES[config.dataset] ? Math.floor(DATASET_IMAGES[config.dataset] / config.batch_size) * config.batch_size : null;
  let images = perEpoch && config.epochs ? perEpoch * config.epochs : null;
  if (config.max_steps) images = Math.min(images ?? Infinity, config.max_steps * config.batch_size);
  const speed = `${ips.toFixed(0)} images/s, as “${measured.name}” of this shape trained here`;
  return images && Number.isFinite(images)
    ? `About ${humanSeconds(images / ips)} of training on this machine's ${kind} (${images.toLocaleString()} images at ${speed}).`
    : `${speed}; an epoch is the folder's images at that speed.`;
}
