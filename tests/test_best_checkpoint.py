"""The best checkpoint through the real server: G and D at the epoch with the best score (KID once three epochs have
one, SWD before: trainer/sidework.py), listed with a label that names the score, downloadable as `best`, and on the
quick preset not one of the first epochs (FID from 256 images once chose epoch 4's grey blobs)."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch

from tests.harness import TINY
from trainer.config import TrainConfig
from trainer.fid import FeaturesUnavailable, weights_path
from trainer.models import build_discriminator, build_generator
from trainer.protocol import BEST


def test_best_is_listed_with_its_score_and_downloadable(server):
    run = server.create(epochs=3, seed=3)
    done = server.wait_status(run["id"], "completed")
    assert done["best_by"] == "swd"  # no KID in this run (fid off): SWD chooses
    samples = server.client.get(f"/api/runs/{run['id']}/samples").json()
    best = min(samples, key=lambda s: s["swd"])
    listed = {c["name"]: c for c in server.client.get(f"/api/runs/{run['id']}/checkpoints").json()}
    assert listed[BEST[0]]["epoch"] == best["epoch"]
    assert listed[BEST[0]]["label"] == f"best SWD {best['swd']:.4g} (epoch {best['epoch']})"

    url = f"/api/runs/{run['id']}/checkpoints/best"
    g, d = server.client.get(url), server.client.get(url, params={"net": "d"})
    assert g.status_code == d.status_code == 200
    assert hashlib.sha256(g.content).hexdigest() == listed[BEST[0]]["sha256"]  # the digest the worker sent
    assert hashlib.sha256(d.content).hexdigest() == listed[BEST[1]]["sha256"]
    cfg = TrainConfig(**{**TINY, **run["config"]})
    build_generator(cfg).load_state_dict(torch.load(io.BytesIO(g.content), weights_only=True))
    build_discriminator(cfg).load_state_dict(torch.load(io.BytesIO(d.content), weights_only=True))
    head = server.client.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(g.content)
    assert server.client.get(url, params={"net": "x"}).status_code == 422


def test_best_of_a_run_with_no_epoch_is_a_clear_404(server):
    run = server.create(epochs=1, max_steps=1)  # stops inside its first epoch: nothing scored
    server.wait_status(run["id"], "completed")
    r = server.client.get(f"/api/runs/{run['id']}/checkpoints/best")
    assert r.status_code == 404 and "no epoch has been scored yet" in r.json()["detail"]
    assert server.client.get("/api/runs/999999/checkpoints/best").status_code == 404


@pytest.mark.timeout(1500)
def test_on_the_quick_preset_the_best_is_not_an_early_epoch_and_the_last_has_a_fid(server):
    """The quick preset as a new user starts it (its defaults: FID on), cut to 20 epochs."""
    try:
        weights_path()
    except FeaturesUnavailable as e:
        pytest.skip(str(e))
    r = server.client.post("/api/runs", json={"config": {**TrainConfig.preset("quick").model_dump(), "epochs": 20}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    done = server.wait_status(run_id, "completed", "failed", timeout=1400)
    assert done["status"] == "completed", done["error"]
    samples = {s["epoch"]: s for s in server.client.get(f"/api/runs/{run_id}/samples").json()}
    assert samples[20]["fid"] is not None and samples[20]["kid"] is not None  # FID/KID always at the last epoch
    listed = {c["name"]: c for c in server.client.get(f"/api/runs/{run_id}/checkpoints").json()}
    assert listed[BEST[0]]["epoch"] > 3, listed[BEST[0]]
    assert listed[BEST[0]]["label"].startswith(f"best {done['best_by'].upper()} ")
    assert done["scoring"] is None
