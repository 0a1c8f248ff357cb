"""A finished grid sweep written straight into a server's database (runs_in_db.write_run, then tagged with the sweep,
their settings, scores per epoch and a status each), for the sweep page's tests and bench/first_paint.py."""

from __future__ import annotations

import itertools
from pathlib import Path

from sqlalchemy import insert, update

from app.runs.sweeps import SweepSpec
from app.storage.db import Run, Sample, Sweep, make_engine, make_sessionmaker
from tests.browser.runs_in_db import write_run

EPOCHS = 5


def swd(lr: float, g_every: int, seed: int, epoch: int) -> float:
    """A made-up score that falls with the epochs, best at lr 2e-4 and g_every 1, a little different per seed."""
    return (20 + 4000 * abs(lr - 2e-4) + 5 * (g_every - 1) + seed) * (1 + 1 / epoch)


def write_sweep(runs_dir: Path, lrs: list[float], g_everys: list[int], seeds: int, batches: int = 200) -> tuple[int, list[int]]:
    """(sweep id, its run ids in order). Every run is completed, except the second, which is pruned after epoch 2."""
    spec = SweepSpec(name="stored", base={}, axes={"lr_g+lr_d": {"values": lrs}, "g_every": {"values": g_everys}}, seeds=seeds)
    settings = [(lr, g, seed) for seed in range(seeds) for lr, g in itertools.product(lrs, g_everys)]
    ids = [write_run(runs_dir, batches) for _ in settings]
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    try:
        with make_sessionmaker(engine).begin() as s:
            sweep = Sweep(name="stored", spec=spec.model_dump(mode="json"))
            s.add(sweep)
            s.flush()
            for i, (run_id, (lr, g, seed)) in enumerate(zip(ids, settings)):
                pruned = i == 1
                epochs = 2 if pruned else EPOCHS
                scores = [swd(lr, g, seed, e) for e in range(1, epochs + 1)]
                config = s.get(Run, run_id).config | {"lr_g": lr, "lr_d": lr, "g_every": g, "seed": seed}
                s.execute(update(Run).where(Run.id == run_id).values(
                    sweep_id=sweep.id, name=f"stored #{i + 1}", config=config, epoch=epochs, total_epochs=EPOCHS,
                    total_steps=batches, best_swd=min(scores), swd=scores[-1], status="pruned" if pruned else "completed",
                    error="pruned by the sweep's median pruner at epoch 2: SWD 99 is worse than the median 40" if pruned else None,
                ))  # fmt: skip
                s.execute(insert(Sample), [{"run_id": run_id, "epoch": e, "name": f"epoch_{e:04d}.png", "size": 1,
                                            "swd": v} for e, v in enumerate(scores, 1)])  # fmt: skip
            return sweep.id, ids
    finally:
        engine.dispose()
