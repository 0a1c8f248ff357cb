"""`ganboard train` and `ganboard sample` as a user runs them: real processes, real files, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

TINY = ["--set", "dataset=procedural", "--set", "ngf=8", "--set", "ndf=8", "--set", "nz=16", "--set", "device=cpu",
        "--set", "batch_size=256", "--set", "fid=false"]  # fmt: skip


def ganboard(*args: str, cwd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.getcwd()}, **kw,
    )  # fmt: skip


def test_train_writes_a_run_folder_and_sample_reads_it(tmp_path):
    done = ganboard("train", *TINY, "--set", "epochs=2", "--name", "tiny", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "tiny"
    assert json.loads((run / "config.json").read_text())["ngf"] == 8
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    assert (run / "checkpoints" / "netg.pth").is_file() and (run / "checkpoints" / "resume.pt").is_file()
    assert "completed at step" in done.stdout
    assert "loss_d" in done.stderr and "img/s" in done.stderr  # the tqdm bar

    out = tmp_path / "grid.png"
    done = ganboard("sample", "--checkpoint", str(run / "checkpoints" / "netg.pth"), "-n", "16", "-o", str(out),
                    "--seed", "1", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Image.open(out) as grid:
        assert grid.size == (4 * 32 + 5 * 2, 4 * 32 + 5 * 2)


@pytest.mark.parametrize(
    "args, reason",
    [
        (["train", "--set", "batch_size=0"], "batch_size: Input should be greater than or equal to 1"),
        (["train", "--set", "image_size=50"], "image_size"),
        (["train", "--set", "dataset=nope"], "dataset"),
        (["train", "--set", "dataset=folder", "--set", "data_path=/no/such"], "data_path: Value error, folder"),
        (["train", "--set", "lr_g"], "expected key=value"),
        (["train", "--config", "missing.json"], "missing.json"),
        (["train", "--preset", "huge"], "invalid choice"),
        (["train", "--resume", "--name", "nothing"], "resume.pt does not exist"),
        (["sample", "--checkpoint", "nothing.pth"], "no such file"),
        (["sample", "--checkpoint", "config.json"], "not a loadable weights file"),
    ],
)
def test_bad_flags_exit_nonzero_with_one_line(tmp_path, args, reason):
    (tmp_path / "config.json").write_text("{}")
    done = ganboard(*args, cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # argparse prints its usage above the reason
    assert last.startswith("ganboard") and reason in last


def test_sigterm_finishes_the_batch_checkpoints_and_resume_continues(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "train", *TINY, "--set", "epochs=1000", "--name", "long"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    first_grid = tmp_path / "runs" / "long" / "samples" / "epoch_0001.png"
    deadline = time.monotonic() + 120
    while not first_grid.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "cancelled at step" in out
    step = int(out.split("cancelled at step")[1].split()[0])

    done = ganboard("train", "--name", "long", "--resume", "--set", f"max_steps={step + 3}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"completed at step {step + 3}" in done.stdout
