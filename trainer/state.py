"""TrainState: everything a run carries from one batch to the next, built from a config, saved to and loaded from
resume.pt side by side, so that a resumed run trains exactly the batches a stopped one had not.

resume.pt is read on the CPU first and moved from there, whatever device wrote it: the CPU generator's state must stay a
CPU ByteTensor, and the optimisers' `load_state_dict` moves their moments to the parameters' device. A CUDA generator state
goes back only onto a GPU; on a CPU it is dropped with a note (the noise then carries on from the CPU generator).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.checkpoint import load_user_weights
from trainer.config import TrainConfig
from trainer.models import NetD, NetG, build_discriminator, build_generator

log = logging.getLogger(__name__)

SAMPLES = 64  # images in each epoch's grid, from one fixed noise batch


@dataclass
class TrainState:
    netg: NetG
    netd: NetD
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    fixed_noise: torch.Tensor  # the grid's noise, on the device
    data_gen: torch.Generator  # the CPU generator of each epoch's shuffle: the same order on every device
    device: torch.device
    step: int = 0  # batches trained so far
    epoch: int = 0  # the next batch to train is batch `batch` of epoch `epoch` (0-based), in the order `perm`
    batch: int = 0
    perm: torch.Tensor | None = None  # None: the epoch has not started, its order is not drawn yet
    best: dict | None = None  # what chose netg_best.pth/netd_best.pth so far (trainer/sidework.py `Best.state`)

    @classmethod
    def build(cls, cfg: TrainConfig, device: torch.device) -> TrainState:
        """Fresh nets (DCGAN init from the global seed, or the user's weights) and optimisers on `device`.

        Adam is `capturable` on a GPU (its step count lives on the device), so its step can run inside a CUDA graph."""
        netg = build_generator(cfg).to(device, memory_format=torch.channels_last)
        netd = build_discriminator(cfg).to(device, memory_format=torch.channels_last)
        for net, path in ((netg, cfg.netg_init), (netd, cfg.netd_init)):
            if path:
                net.load_state_dict(load_user_weights(path))
        capturable = device.type == "cuda"
        opt_g = torch.optim.Adam(netg.parameters(), cfg.lr_g, betas=(cfg.beta1, 0.999), capturable=capturable)
        opt_d = torch.optim.Adam(netd.parameters(), cfg.lr_d, betas=(cfg.beta1, 0.999), capturable=capturable)
        fixed_noise = torch.randn(SAMPLES, cfg.nz, 1, 1, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
        return cls(netg, netd, opt_g, opt_d, fixed_noise, torch.Generator().manual_seed(cfg.seed), device)

    def resume_state(self) -> dict:
        """What resume.pt holds (tensors still on the device: the writer copies them to the host)."""
        return dict(
            netg=self.netg.state_dict(), netd=self.netd.state_dict(),
            opt_g=self.opt_g.state_dict(), opt_d=self.opt_d.state_dict(),
            step=self.step, epoch=self.epoch, batch=self.batch, perm=self.perm, fixed_noise=self.fixed_noise,
            best=self.best,
            rng_cpu=torch.get_rng_state(), rng_data=self.data_gen.get_state(),
            rng_cuda=[torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else [],
        )  # fmt: skip

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.netg.load_state_dict(state["netg"])
        self.netd.load_state_dict(state["netd"])
        for opt, key in ((self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
            lr = opt.param_groups[0]["lr"]  # the config's: a resume may change it (config.RESUME_CHANGES)
            for group in state[key]["param_groups"]:  # capturable follows this device, not the one that saved it
                group["capturable"] = self.device.type == "cuda"
            opt.load_state_dict(state[key])
            for group in opt.param_groups:
                group["lr"] = lr
        self.step, self.epoch, self.batch, self.perm = state["step"], state["epoch"], state["batch"], state["perm"]
        self.fixed_noise = state["fixed_noise"].to(self.device)
        self.best = state.get("best")  # absent from a resume.pt written before the best was chosen this way
        torch.set_rng_state(state["rng_cpu"])
        self.data_gen.set_state(state["rng_data"])
        if state["rng_cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"][0], self.device)
        elif state["rng_cuda"]:
            log.info("resume.pt holds a CUDA generator state; on the CPU the noise carries on from the CPU generator")
