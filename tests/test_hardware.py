"""bf16 defaults: measured per device class (see trainer/hardware.py)."""

import torch

from trainer.config import TrainConfig
from trainer.hardware import cpu_has_bf16, uses_bf16


def test_bf16_defaults_follow_the_measurements(tmp_path):
    amx, plain = tmp_path / "amx", tmp_path / "plain"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(str(amx)) and not cpu_has_bf16(str(plain))
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert uses_bf16(TrainConfig.preset("article"), gpu) and not uses_bf16(TrainConfig.preset("quick"), gpu)
    assert uses_bf16(TrainConfig.preset("quick", bf16=True), cpu)
    assert not uses_bf16(TrainConfig.preset("article", bf16=False), gpu)
