"""Trainer side of the `ganboard` command (app/cli.py adds `serve`): `train` and `sample`, without the dashboard.

`train` writes `runs/<name>/` exactly as a dashboard run does (config.json, samples/, checkpoints/). torch is imported
inside the commands, so building the parser (and `ganboard serve`) stays light.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainer.config import PRESETS, TrainConfig


class CliError(Exception):
    """A one-line reason to exit non-zero without a traceback."""


def describe_validation_error(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())


def _parse_value(text: str) -> Any:
    """`--set` values are JSON where they parse as JSON (64, 2e-4, true, null), else plain strings (emoji)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_config(base: dict[str, Any], config_file: str | None, assignments: list[str]) -> TrainConfig:
    """`base` (a preset, or a resumed run's config.json), then the --config file, then each --set, in that order."""
    values = dict(base)
    if config_file:
        try:
            loaded = json.loads(Path(config_file).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CliError(f"--config {config_file}: {e}") from e
        if not isinstance(loaded, dict):
            raise CliError(f"--config {config_file}: expected a JSON object of TrainConfig fields")
        values.update(loaded)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set {item!r}: expected key=value")
        values[key.strip()] = _parse_value(text)
    try:
        return TrainConfig(**values)
    except ValidationError as e:
        raise CliError(f"invalid config: {describe_validation_error(e)}") from e


class TqdmSink:
    """Draws the run as a tqdm bar: loss_d, loss_g, D(x), D(G(z)) and images/s."""

    def __init__(self, batch_size: int):
        self.batch_size, self.bar, self.last = batch_size, None, {}

    def on_status(self, status: str, **info: Any) -> None:
        from tqdm import tqdm

        if status == "running":
            self.bar = tqdm(total=info["total_steps"], initial=info["step"], unit="step", dynamic_ncols=True)
            precision = "bf16" if info.get("bf16") else "fp32"
            self.bar.write(f"training on {info['device']} ({precision}): {info['batches_per_epoch']} batches per epoch")
        elif self.bar is not None:
            self.bar.close()
        if status == "failed":
            print(f"failed: {info['error']}")
        elif status != "running":
            print(f"{status} at step {info['step']}")

    def on_batch(self, rows: dict[str, list]) -> None:
        for key in ("loss_d", "loss_g", "d_x", "d_g_z"):
            values = [v for v in rows[key] if v is not None]
            if values:
                self.last[key] = values[-1]
        self.bar.update(len(rows["step"]))
        rate = self.bar.format_dict.get("rate") or 0
        self.bar.set_postfix(
            {"loss_d": self.last.get("loss_d"), "loss_g": self.last.get("loss_g"), "D(x)": self.last.get("d_x"),
             "D(G(z))": self.last.get("d_g_z"), "img/s": rate * self.batch_size},
            refresh=False,
        )  # fmt: skip

    def on_score(self, info: dict) -> None:
        self.bar.write(f"epoch {info['epoch']}: FID {info['fid']:.3g}, KID {info['kid']:.3g} ({info['fid_at']})"
                       if info.get("fid") is not None else f"epoch {info['epoch']}: no FID")  # fmt: skip

    def on_stopping(self, step: int) -> None:
        self.bar.write(f"stopping at step {step}: saving a checkpoint")

    def on_epoch(self, info: dict) -> None:
        scores = "".join(f", {k.upper()} {info[k]:.3g}" for k in ("swd", "fid", "kid") if info.get(k) is not None)
        self.bar.write(
            f"epoch {info['epoch']}: {info['images_per_s']:.0f} images/s, {info['seconds']:.1f} s{scores}, "
            f"samples/{info['sample']}" + (f", saved {len(info['checkpoints'])} checkpoint files" if info["checkpoints"] else "")
        )


def cmd_train(args: argparse.Namespace) -> int:
    name = args.name or f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name in (".", ".."):
        raise CliError(f"--name {name!r}: use a plain name, not a path")
    run_dir = Path(args.runs_dir) / name
    base = PRESETS[args.preset]
    if args.resume:
        if not (run_dir / "checkpoints" / "resume.pt").is_file():
            raise CliError(f"--resume: {run_dir}/checkpoints/resume.pt does not exist")
        base = json.loads((run_dir / "config.json").read_text())
    elif run_dir.exists():
        raise CliError(f"{run_dir} exists: pass --resume to continue it, or another --name")
    cfg = build_config(base, args.config, args.set or [])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
    print(f"run directory: {run_dir}")

    import logging

    from trainer.loop import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # the first Ctrl-C finishes the batch and saves a checkpoint
        signal.signal(sig, lambda *_: stop.set())
    try:
        train(cfg, run_dir, TqdmSink(cfg.batch_size), resume=args.resume, stop=stop)
    except ValueError as e:  # config and dataset errors: the sink printed the reason
        raise CliError(str(e)) from e
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch
    from torchvision.utils import save_image

    from trainer.checkpoint import load_user_weights
    from trainer.models import generator_from_state_dict

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "netg.pth"
    if not path.is_file():
        raise CliError(f"--checkpoint {path}: no such file")
    try:
        netg = generator_from_state_dict(load_user_weights(path)).eval()
    except (ValueError, RuntimeError, KeyError, IndexError) as e:
        raise CliError(f"--checkpoint {path}: not a GANboard generator ({str(e).splitlines()[0]})") from e
    nz = netg.main[0].in_channels
    z = torch.randn(args.n, nz, 1, 1, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        images = netg(z)
    save_image(images, args.output, nrow=int(args.n**0.5 + 0.999), normalize=True, value_range=(-1, 1))
    print(f"wrote {args.n} samples to {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a DCGAN headless, with a progress bar")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="starting values (default: quick)")
    p.add_argument("--config", metavar="RUN.JSON", help="JSON file of TrainConfig fields, over the preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one field; repeatable")
    p.add_argument("--name", help="run name: the folder under --runs-dir (default: preset and time)")
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p.add_argument("--resume", action="store_true", help="continue runs/<name> from its resume.pt, with its config")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="write a grid of samples from a generator checkpoint")
    p.add_argument("--checkpoint", required=True, help="a netg*.pth file, or a run folder")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("-o", "--output", default="grid.png", help="PNG to write (default grid.png)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.set_defaults(func=cmd_sample)
