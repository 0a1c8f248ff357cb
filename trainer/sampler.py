"""A short-lived sampling process: images from one checkpoint of a run, written as a PNG, then exit.

    python -m trainer.sampler --run-dir runs/7 --checkpoint netg_0010.pth --mode grid --seed 3 --count 64 --out x.png

Modes:
- `grid`: `count` images from the noise of `seed`, 8 per row (the noise `ganboard sample` draws for the same seed).
- `walk`: `steps` frames on the great circle between the noises of `seed` and `seed2` (spherical interpolation, which
  keeps every frame at the norm a Gaussian noise vector has), as one strip; with `--animation` also an animated WebP.
- `generate`: the article's generate mode: draw 512 from `seed`, let the matching D (netg_X.pth -> netd_X.pth) score
  them and keep the `count` (the article: 64) it scores highest, best first.

G and D run in eval mode (BatchNorm uses its running statistics), as the article's `generate()` does and as
`ganboard sample` does; the training grids are drawn in training mode, so the same seed gives a close but not
identical picture. The server runs this module (app/web/sampling.py) so that it never imports torch itself, as one warm
process (`--serve IDLE_SECONDS`, requests as JSON lines on stdin). A bad input exits with status 2 and one line on
stderr that starts with "error: ".
"""

from __future__ import annotations

import argparse
import json
import select
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from PIL import Image

from trainer.checkpoint import load_user_weights
from trainer.files import atomic
from trainer.grid import grid_image
from trainer.models import NetD, NetG, discriminator_from_state_dict, generator_from_state_dict
from trainer.protocol import CHECKPOINTS_DIR

MODES = ("grid", "walk", "generate")
GENERATE_DRAWN = 512  # the article's gen_search_num
CHUNK = 128  # images per forward pass, so 512 at 96x96 stay within a small memory budget


class SampleError(Exception):
    """A one-line reason the sampler could not run (a missing file, a file that is not a GANboard net)."""


def noise(seed: int, count: int, nz: int) -> torch.Tensor:
    return torch.randn(count, nz, 1, 1, generator=torch.Generator().manual_seed(seed))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points on the arc from `a` to `b` at fractions `t`, the norms interpolated linearly; a straight line when the two
    are (nearly) parallel."""
    a, b, t = a.flatten(), b.flatten(), t.view(-1, 1)
    na, nb = a.norm(), b.norm()
    cos = torch.dot(a / na, b / nb).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return (1 - t) * a + t * b
    direction = (torch.sin((1 - t) * omega) * a / na + torch.sin(t * omega) * b / nb) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def nz_of(netg: NetG) -> int:
    return netg.main[0].in_channels


@torch.no_grad()
def draw(net: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`net` over `x` in chunks, the result on the CPU."""
    return torch.cat([net(chunk.to(device)).float().cpu() for chunk in x.split(CHUNK)])


def generate(netg: NetG, netd: NetD, seed: int, keep: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The `keep` of GENERATE_DRAWN images from `seed` that D scores highest, best first, and their scores (logits)."""
    images = draw(netg, noise(seed, GENERATE_DRAWN, nz_of(netg)), device)
    scores = draw(netd, images, device)
    best = scores.topk(keep).indices  # sorted, highest first
    return images[best], scores[best]


def load_net(path: Path, build):
    if not path.is_file():
        raise SampleError(f"{path.name}: no such checkpoint in {path.parent}")
    try:
        return build(load_user_weights(path)).eval()
    except (ValueError, RuntimeError, KeyError, IndexError) as e:
        raise SampleError(f"{path.name}: not a GANboard network ({str(e).splitlines()[0]})") from e


def discriminator_name(generator: str) -> str:
    """netg_0010.pth -> netd_0010.pth, netg.pth -> netd.pth: the D saved together with a G."""
    if not generator.startswith("netg"):
        raise SampleError(f"{generator}: not a generator checkpoint (its name starts with netg)")
    return "netd" + generator[len("netg") :]


def save_png(pixels: torch.Tensor, out: Path) -> None:
    with atomic(out) as tmp:  # a reader never sees half a file
        Image.fromarray(pixels.numpy()).save(tmp, format="png")


def save_animation(frames: torch.Tensor, out: Path) -> None:
    """The frames there and back again, looping, as an animated WebP."""
    images = [Image.fromarray(grid_image(f[None], padding=0).numpy()) for f in frames]
    images += images[-2:0:-1]
    with atomic(out) as tmp:
        images[0].save(tmp, format="webp", save_all=True, append_images=images[1:], duration=100, loop=0, lossless=True)


class Nets:
    """The nets loaded so far, by file (path, size, mtime): a warm sampler answers a new seed without loading again."""

    KEEP = 4

    def __init__(self) -> None:
        self.loaded: OrderedDict[tuple, torch.nn.Module] = OrderedDict()

    def load(self, path: Path, build, device: torch.device) -> torch.nn.Module:
        try:
            st = path.stat()
        except OSError:
            st = None
        key = (str(path), st and st.st_size, st and st.st_mtime_ns, str(device))
        if key not in self.loaded:
            self.loaded[key] = load_net(path, build).to(device)
            while len(self.loaded) > self.KEEP:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(key)
        return self.loaded[key]


def sample(args: argparse.Namespace, nets: Nets | None = None) -> list[Path]:
    """Write what `args` asks for; return the files written."""
    nets = nets or Nets()
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    ckpt_dir = Path(args.run_dir) / CHECKPOINTS_DIR
    if "/" in args.checkpoint or args.checkpoint in (".", ".."):
        raise SampleError(f"--checkpoint {args.checkpoint!r}: a file name in {ckpt_dir}, not a path")
    netg = nets.load(ckpt_dir / args.checkpoint, generator_from_state_dict, device)
    out = Path(args.out)
    if args.mode == "grid":
        images = draw(netg, noise(args.seed, args.count, nz_of(netg)), device)
        save_png(grid_image(images, nrow=8), out)
        return [out]
    if args.mode == "walk":
        ends = [noise(s, 1, nz_of(netg)) for s in (args.seed, args.seed2)]
        z = slerp(*ends, torch.linspace(0, 1, args.steps)).view(args.steps, -1, 1, 1)
        frames = draw(netg, z, device)
        save_png(grid_image(frames, nrow=args.steps), out)
        if args.animation:
            save_animation(frames, Path(args.animation))
            return [out, Path(args.animation)]
        return [out]
    netd_name = discriminator_name(args.checkpoint)
    if not (ckpt_dir / netd_name).is_file():
        raise SampleError(f"--checkpoint {args.checkpoint}: generate mode needs the D saved with it, {netd_name}, "
                          f"and the run has none")  # fmt: skip
    netd = nets.load(ckpt_dir / netd_name, discriminator_from_state_dict, device)
    images, _ = generate(netg, netd, args.seed, args.count, device)
    save_png(grid_image(images, nrow=8), out)
    return [out]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.sampler", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", required=True, help="the run folder (its checkpoints/ holds the file)")
    p.add_argument("--checkpoint", required=True, help="a netg*.pth file name in the run's checkpoints/")
    p.add_argument("--mode", choices=MODES, default="grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=64, help="grid: images; generate: how many of the 512 to keep")
    p.add_argument("--seed2", type=int, default=1, help="walk: the seed it ends at")
    p.add_argument("--steps", type=int, default=8, help="walk: frames, both ends included")
    p.add_argument("--animation", help="walk: also write the frames as an animated WebP here")
    p.add_argument("--device", default="auto", help="auto (a visible GPU, else the CPU), cpu or cuda")
    p.add_argument("--out", required=True, help="the PNG to write")
    return p


def _limits_error(args: argparse.Namespace) -> str | None:
    limits = {"count": (1, GENERATE_DRAWN if args.mode == "generate" else 256), "steps": (2, 64)}
    for field, (low, high) in limits.items():
        if not low <= getattr(args, field) <= high:
            return f"--{field} must be between {low} and {high}"
    return None


def serve(idle_seconds: float) -> int:
    """The warm sampler the server keeps (app/web/sampling.py): one request per stdin line, the arguments of the command
    line as a JSON list; one JSON line back on stdout, `{"wrote": [...]}` or `{"error": "..."}`. The torch import and
    the nets loaded stay warm between requests; it exits after `idle_seconds` without one, or when stdin closes."""
    nets = Nets()
    while select.select([sys.stdin], [], [], idle_seconds)[0]:
        line = sys.stdin.readline()
        if not line:
            return 0
        try:
            args = parser().parse_args(json.loads(line))
            if error := _limits_error(args):
                raise SampleError(error)
            reply = {"wrote": [str(p) for p in sample(args, nets)]}
        except SampleError as e:
            reply = {"error": str(e)}
        except (SystemExit, ValueError) as e:  # arguments argparse or JSON refused: the server's mistake, said so
            reply = {"error": f"bad request to the sampler: {e}"}
        print(json.dumps(reply), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve(float(argv[1]) if len(argv) > 1 else 60.0)
    args = parser().parse_args(argv)
    if error := _limits_error(args):
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        for path in sample(args):
            print(f"wrote {path}")
    except SampleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
