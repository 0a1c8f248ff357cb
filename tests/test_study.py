"""The Optuna driver (app/runs/study.py) against a real SQLite database, with the runs' progress written as ingest writes
it and a supervisor that records what it is asked: fast checks of asking, pruning and the rebuild after a restart.
tests/test_sweep_optuna.py does the same through the real server and real workers."""

from __future__ import annotations

from app.runs.study import Studies
from app.runs.supervisor import transition
from app.runs.sweeps import SweepSpec
from app.storage.db import Run, Sample, Sweep, make_engine, make_sessionmaker
from trainer.protocol import Status

SPEC = SweepSpec(method="optuna", trials=3, parallel=1, axes={"lr_d": {"min": 1e-4, "max": 0.05, "log": True}},
                 first=[{"lr_d": 2e-4}, {"lr_d": 0.05}], pruning={"startup_trials": 1})  # fmt: skip


class Supervisor:
    """Submits as the real one does (commit); cancel stands for the worker stopping and reporting `cancelled`."""

    def __init__(self, sessions):
        self.sessions, self.cancelled = sessions, []

    def submit(self, session, run):
        session.commit()

    def cancel(self, run_id):
        self.cancelled.append(run_id)
        self.change(run_id, lambda s, run: transition(s, run, Status.CANCELLED))

    def change(self, run_id, change):
        with self.sessions.begin() as s:
            change(s, s.get(Run, run_id))


def setup(tmp_path):
    sessions = make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'db'}"))
    with sessions.begin() as s:
        s.add(Sweep(name="tpe", spec=SPEC.model_dump(mode="json")))
    return sessions


def train(sessions, run_id: int, scores: list[float], status: Status | None = Status.COMPLETED) -> None:
    """The run starts, reports `scores` per epoch, and (unless None) ends with `status`."""
    with sessions.begin() as s:
        run = s.get(Run, run_id)
        transition(s, run, Status.RUNNING)
        s.add_all(Sample(run_id=run_id, epoch=e, name=f"e{e}", swd=v) for e, v in enumerate(scores, 1))
        run.best_swd = min(scores)
        if status:
            transition(s, run, status)


def runs(sessions) -> list[Run]:
    with sessions() as s:
        return list(s.query(Run).order_by(Run.id))


def test_asks_in_order_prunes_the_bad_trial_and_rebuilds(tmp_path):
    sessions = setup(tmp_path)
    supervisor = Supervisor(sessions)
    studies = Studies(sessions, supervisor, slots=2)
    studies.advance(1)
    (first,) = runs(sessions)  # parallel 1: one trial at a time, the `first` settings first
    assert first.config["lr_d"] == 2e-4 and first.sweep_id == 1 and first.name == "tpe #1"
    train(sessions, first.id, [160.0, 150.0, 140.0])
    studies.advance(1)
    second = runs(sessions)[1]
    assert second.config["lr_d"] == 0.05
    train(sessions, second.id, [340.0], status=None)  # still running after one bad epoch
    studies.advance(1)
    assert supervisor.cancelled == [second.id]
    studies.advance(1)  # its worker stopped: marked pruned, with the reason; the sampler's own trial is asked
    second, third = runs(sessions)[1:]
    assert second.status == Status.PRUNED and "epoch 1: SWD 340 is worse than the median 160" in second.error
    assert 1e-4 <= third.config["lr_d"] <= 0.05 and third.status == Status.QUEUED
    states = [t.state.name for t in studies.live[1].study.trials]
    assert states == ["COMPLETE", "PRUNED", "RUNNING"]

    restarted = Studies(sessions, supervisor, slots=2)  # a new server process: the study from the stored runs
    restarted.advance(1)
    study = restarted.live[1].study
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "RUNNING"]
    assert study.trials[0].value == 140.0 and study.trials[0].intermediate_values == {1: 160.0, 2: 150.0, 3: 140.0}
    assert study.trials[2].params == {"lr_d": third.config["lr_d"]}
    assert len(runs(sessions)) == 3  # trials reached: no more asked
