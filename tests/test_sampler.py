"""trainer.sampler: each mode writes an image of the right size; generate keeps the images D scores highest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trainer import sampler
from trainer.config import TrainConfig
from trainer.models import build_discriminator, build_generator

CFG = TrainConfig(image_size=32, ngf=8, ndf=8, nz=16)
CELL = 32 + 2  # an image and its 2px gap


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    (run / "checkpoints").mkdir()
    torch.manual_seed(0)
    g, d = build_generator(CFG), build_discriminator(CFG)
    for name, net in (("netg_0002.pth", g), ("netd_0002.pth", d), ("netg.pth", g)):
        torch.save(net.state_dict(), run / "checkpoints" / name)
    return run


def run(run_dir, tmp_path, *args: str) -> tuple[int, Image.Image | None]:
    out = tmp_path / "out.png"
    code = sampler.main(["--run-dir", str(run_dir), "--out", str(out), *args])
    return code, Image.open(out) if code == 0 else None


def test_grid_is_count_images_eight_a_row(run_dir, tmp_path):
    code, image = run(run_dir, tmp_path, "--checkpoint", "netg_0002.pth", "--mode", "grid", "--count", "10")
    assert code == 0
    assert image.size == (8 * CELL + 2, 2 * CELL + 2)


def test_walk_is_a_strip_and_an_animation(run_dir, tmp_path):
    anim = tmp_path / "walk.webp"
    code, image = run(run_dir, tmp_path, "--checkpoint", "netg.pth", "--mode", "walk", "--seed", "1", "--seed2", "2",
                      "--steps", "5", "--animation", str(anim))  # fmt: skip
    assert code == 0
    assert image.size == (5 * CELL + 2, CELL + 2)
    with Image.open(anim) as a:
        assert a.is_animated and a.n_frames == 8 and a.size == (32, 32)  # 5 there, 3 back


def test_slerp_ends_at_both_seeds_and_keeps_the_norm_between():
    a, b = sampler.noise(1, 1, 100), sampler.noise(2, 1, 100)
    path = sampler.slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a.flatten())
    torch.testing.assert_close(path[-1], b.flatten())
    norms = path.norm(dim=1)
    assert norms.min() >= min(a.norm(), b.norm()) - 1e-4  # a straight line would dip towards 0 in the middle
    assert (path[2] - (a + b).flatten() / 2).norm() > 1e-3


def test_generate_keeps_the_images_d_scores_highest(run_dir, tmp_path):
    code, image = run(run_dir, tmp_path, "--checkpoint", "netg_0002.pth", "--mode", "generate", "--seed", "5")
    assert code == 0
    assert image.size == (8 * CELL + 2, 8 * CELL + 2)  # the default 64

    # Independently: all 512 scored by D, and the best 64 compared with what generate kept.
    g = sampler.load_net(run_dir / "checkpoints" / "netg_0002.pth", sampler.generator_from_state_dict)
    d = sampler.load_net(run_dir / "checkpoints" / "netd_0002.pth", sampler.discriminator_from_state_dict)
    with torch.no_grad():
        everything = g(sampler.noise(5, 512, CFG.nz))
        all_scores = d(everything)
    kept, scores = sampler.generate(g, d, 5, 64, torch.device("cpu"))
    expected = all_scores.sort(descending=True).values[:64]
    torch.testing.assert_close(scores, expected)
    assert scores.min() >= all_scores.median()  # the kept ones are not a random draw
    order = all_scores.sort(descending=True).indices[:64]
    torch.testing.assert_close(kept, everything[order])
    assert np.array_equal(np.asarray(image.convert("RGB")), sampler.grid_image(kept).numpy())  # in that order


def test_generate_without_the_matching_d_says_so(run_dir, tmp_path, capsys):
    (run_dir / "checkpoints" / "netg_0009.pth").write_bytes((run_dir / "checkpoints" / "netg.pth").read_bytes())
    code, _ = run(run_dir, tmp_path, "--checkpoint", "netg_0009.pth", "--mode", "generate")
    assert code == 2
    assert "needs the D saved with it, netd_0009.pth" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [(["--checkpoint", "nope.pth"], "nope.pth: no such checkpoint"),
     (["--checkpoint", "../x.pth"], "not a path"),
     (["--checkpoint", "netd_0002.pth"], "netd_0002.pth: not a GANboard network"),
     (["--checkpoint", "netg.pth", "--count", "0"], "--count must be between 1 and 256")],
)  # fmt: skip
def test_bad_input_is_one_line_and_status_2(run_dir, tmp_path, capsys, args, message):
    code, _ = run(run_dir, tmp_path, *args)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err
