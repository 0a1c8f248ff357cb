"""On the GPU: an article-preset checkpoint is the article's nets, graphed and eager steps agree, and `make_step`
captures the step as CUDA graphs."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from tests.article import ArticleNetD, ArticleNetG
from tests.gpu.report import show
from trainer.config import TrainConfig
from trainer.loop import train
from trainer.state import TrainState
from trainer.steps import GraphedStep, Step, make_step


class Quiet:
    def on_batch(self, rows): ...
    def on_epoch(self, info): ...
    def on_score(self, info): ...
    def on_stopping(self, step): ...
    def on_status(self, status, **info): ...


def test_an_article_preset_checkpoint_loads_into_the_articles_nets(tmp_path):
    cfg = TrainConfig.preset("article", dataset="procedural", max_steps=2, device="cuda")
    train(cfg, tmp_path, Quiet())
    ckpt = Path(tmp_path) / "checkpoints"
    art_g, art_d = ArticleNetG().eval(), ArticleNetD().eval()
    art_g.load_state_dict(torch.load(ckpt / "netg.pth", weights_only=True))  # strict: same keys and shapes
    art_d.load_state_dict(torch.load(ckpt / "netd.pth", weights_only=True))
    ours = TrainState.build(cfg.model_copy(update={"device": "cpu"}), torch.device("cpu"))
    ours.netg.load_state_dict(torch.load(ckpt / "netg.pth", weights_only=True))
    ours.netd.load_state_dict(torch.load(ckpt / "netd.pth", weights_only=True))
    z = torch.randn(4, 100, 1, 1)
    with torch.no_grad():
        same_g = torch.allclose(art_g(z), ours.netg.eval()(z), atol=1e-5)
        x = art_g(z)
        same_d = torch.allclose(art_d(x), torch.sigmoid(ours.netd.eval()(x)), atol=1e-5)
    assert show("article-preset checkpoint loads into the article's NetG/NetD", same_g and same_d)


def step_losses(graphed: bool, bf16: bool, steps: int = 50) -> torch.Tensor:
    """Each step's stats over `steps` steps from one seed, with D-only, G-only and D+G batches in the schedule."""
    cfg = TrainConfig.preset("quick", device="cuda", bf16=bf16, d_every=2, g_every=3)
    torch.manual_seed(cfg.seed)
    st = TrainState.build(cfg, torch.device("cuda"))
    amp = torch.autocast("cuda", torch.bfloat16, cache_enabled=False) if bf16 else nullcontext()
    step = (GraphedStep if graphed else Step)(st, cfg, amp)
    data = torch.randint(0, 256, (steps * cfg.batch_size, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(1)).cuda()  # fmt: skip
    rows = [step(i, data[i * cfg.batch_size : (i + 1) * cfg.batch_size]) for i in range(steps)]
    return torch.stack(rows).cpu()


@pytest.mark.parametrize(("bf16", "tolerance"), [(False, 1e-2), (True, 5e-2)], ids=["fp32", "bf16"])
def test_graphed_and_eager_steps_agree(bf16, tolerance):
    eager, graphed = step_losses(False, bf16), step_losses(True, bf16)
    same_nan = torch.equal(eager.isnan(), graphed.isnan())
    diff = (eager - graphed).nan_to_num().abs().max().item()
    assert show(f"graphed and eager steps agree over 50 steps ({'bf16' if bf16 else 'fp32/TF32'})",
                same_nan and diff <= tolerance, f"largest difference {diff:.2e} (tolerance {tolerance})")  # fmt: skip


def test_make_step_captures_the_step_as_cuda_graphs():
    cfg = TrainConfig.preset("quick", device="cuda")
    st = TrainState.build(cfg, torch.device("cuda"))
    step = make_step(st, cfg, torch.autocast("cuda", torch.bfloat16))
    assert show("make_step captures the step as CUDA graphs", isinstance(step, GraphedStep) and step.graphed)
