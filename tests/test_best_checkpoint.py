"""The best checkpoint: G and D at the epoch with the lowest FID, written by the worker, kept across a resume, listed
with its label and downloadable as `best` from the API."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch

from tests.test_trainer import TINY, ListSink
from trainer.config import TrainConfig
from trainer.fid import FeaturesUnavailable, weights_path
from trainer.loop import train
from trainer.models import build_discriminator, build_generator
from trainer.protocol import BEST

try:
    weights_path()
except FeaturesUnavailable as e:  # without the Inception weights there is no FID, so no best
    pytest.skip(str(e), allow_module_level=True)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(900)  # two FIDs on a shared 2-core CPU
def test_the_best_is_written_loads_into_the_nets_and_a_resume_keeps_a_better_one(tmp_path):
    cfg = TrainConfig(**TINY, epochs=1, eval_every=1)
    first = ListSink()
    train(cfg, tmp_path, first)
    (epoch,) = first.epochs
    assert epoch["fid"] > 0 and epoch["fid_at"] == "75 px, CPU"
    assert set(BEST) <= set(epoch["checkpoints"])  # named in the epoch message, so the server registers them
    ckpt = tmp_path / "checkpoints"
    build_generator(cfg).load_state_dict(torch.load(ckpt / BEST[0], weights_only=True))
    build_discriminator(cfg).load_state_dict(torch.load(ckpt / BEST[1], weights_only=True))
    resume = torch.load(ckpt / "resume.pt", weights_only=True)
    assert resume["best_fid"] == epoch["fid"]  # the best so far is part of the resume state

    # A best better than any real FID: the resumed run's epoch 2 must not replace it.
    resume["best_fid"] = 0.0
    torch.save(resume, ckpt / "resume.pt")
    kept = sha(ckpt / BEST[0])
    second = ListSink()
    train(cfg.model_copy(update={"epochs": 2}), tmp_path, second, resume=True)
    (epoch2,) = second.epochs
    assert epoch2["fid"] > 0 and not set(BEST) & set(epoch2["checkpoints"])
    assert sha(ckpt / BEST[0]) == kept
    assert torch.load(ckpt / "resume.pt", weights_only=True)["best_fid"] == 0.0


@pytest.mark.timeout(900)
def test_best_is_listed_with_its_fid_and_downloadable(server):
    run = server.create(epochs=2, eval_every=2, seed=3)  # one FID, at the last epoch (the real side cached above)
    done = server.wait_status(run["id"], "completed", timeout=800)
    assert done["fid_at"] == "75 px, CPU"
    listed = {c["name"]: c for c in server.client.get(f"/api/runs/{run['id']}/checkpoints").json()}
    assert listed[BEST[0]]["label"] == f"best FID {done['best_fid']:.1f} (epoch 2)"

    url = f"/api/runs/{run['id']}/checkpoints/best"
    g, d = server.client.get(url), server.client.get(url, params={"net": "d"})
    assert g.status_code == d.status_code == 200
    assert hashlib.sha256(g.content).hexdigest() == listed[BEST[0]]["sha256"]
    assert hashlib.sha256(d.content).hexdigest() == listed[BEST[1]]["sha256"]
    cfg = TrainConfig(**{**TINY, **run["config"]})
    build_generator(cfg).load_state_dict(torch.load(io.BytesIO(g.content), weights_only=True))
    build_discriminator(cfg).load_state_dict(torch.load(io.BytesIO(d.content), weights_only=True))
    head = server.client.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(g.content)
    assert server.client.get(url, params={"net": "x"}).status_code == 422


def test_best_of_a_run_without_fid_is_a_clear_404(server):
    run = server.create(epochs=1)  # a run of seconds stays inside its evaluation budget: no FID
    server.wait_status(run["id"], "completed")
    r = server.client.get(f"/api/runs/{run['id']}/checkpoints/best")
    assert r.status_code == 404 and "no epoch has an FID" in r.json()["detail"]
    assert server.client.get("/api/runs/999999/checkpoints/best").status_code == 404
