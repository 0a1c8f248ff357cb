"""Optuna sweeps: one study per sweep in the server process, driven by the sweep's stored runs.

Each trial is one run. Every second the driver (1) reports each finished epoch's SWD (lower is better) of a trial's run
to its trial and, when the median pruner says so, records why on the sweep and cancels the run as a person would; (2)
marks such a run `pruned` once its worker has stopped, with the reason as its error; (3) tells the study how each
trial ended (completed: the run's best SWD, the score the run list shows); (4) asks the TPE sampler for new trials
while fewer than `parallel` of the sweep's runs are queued or running, until `trials` runs exist.

The study lives in memory. After a restart it is rebuilt from the stored runs: finished ones are added as finished
trials with their per-epoch scores, the others are asked again with their own settings (enqueued first), so their
trials carry on where the runs do.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.runs.supervisor import Supervisor, TransitionError, transition
from app.runs.sweeps import SweepError, SweepSpec, base_seed, is_int, run_config, settings_of
from app.runs.ticker import every
from app.storage.db import Run, Sample, Sweep
from app.storage.paths import resolved
from trainer.protocol import ACTIVE, Status

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0


@cache
def _optuna() -> Any:
    """Optuna, imported when the first Optuna sweep needs it: a server without one does not pay its ~1.5 s import."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial would drown the server's log
    return optuna


def _state() -> Any:  # optuna.trial.TrialState, imported with Optuna
    return _optuna().trial.TrialState


def distributions(spec: SweepSpec) -> dict[str, Any]:
    """The axes as Optuna's search space: a list of values is categorical, a range is a float or integer range."""
    d = _optuna().distributions
    out = {}
    for name, axis in spec.axes.items():
        if axis.values is not None:
            out[name] = d.CategoricalDistribution(axis.values)
        elif is_int(name):
            out[name] = d.IntDistribution(round(axis.min), round(axis.max), log=axis.log)
        else:
            out[name] = d.FloatDistribution(axis.min, axis.max, log=axis.log)
    return out


def new_study(spec: SweepSpec) -> optuna.Study:
    optuna = _optuna()
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=spec.pruning.startup_trials, n_warmup_steps=spec.pruning.warmup_epochs)
        if spec.pruning else optuna.pruners.NopPruner()
    )  # fmt: skip
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed)
    return optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)


@dataclass
class Live:
    """A sweep's study and its open trials, by run id, with the last epoch each one reported."""

    spec: SweepSpec
    study: optuna.Study
    space: dict[str, Any]  # name -> optuna distribution
    trials: dict[int, optuna.Trial] = field(default_factory=dict)
    reported: dict[int, int] = field(default_factory=dict)


class Studies:
    def __init__(self, sessions: sessionmaker, supervisor: Supervisor, slots: int):
        self.sessions, self.supervisor, self.slots = sessions, supervisor, slots
        self.live: dict[int, Live] = {}
        self.lock = threading.Lock()  # the driver and the API's sweep actions take turns
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(every(TICK_SECONDS, self.tick, "sweep driver"))

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    def tick(self) -> None:
        with self.sessions() as s:
            ids = [sw.id for sw in s.scalars(select(Sweep)) if sw.spec.get("method") == "optuna"]
        for sweep_id in ids:
            self.advance(sweep_id)

    def advance(self, sweep_id: int) -> None:
        """Report, prune, tell and ask for one Optuna sweep, as its stored runs stand now."""
        with self.lock, self.sessions() as s:
            sweep = s.get(Sweep, sweep_id)
            if sweep is None:
                self.live.pop(sweep_id, None)
                return
            runs = list(s.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))
            live = self.live.get(sweep_id) or self._rebuild(s, sweep, runs)
            self.live[sweep_id] = live
            for run in runs:
                if run.id in live.trials:
                    self._follow(s, live, sweep, run)
            if not sweep.stopped:
                self._ask(s, live, sweep, runs)

    def _rebuild(self, s: Session, sweep: Sweep, runs: list[Run]) -> Live:
        spec = SweepSpec.model_validate(sweep.spec)
        live = Live(spec, new_study(spec), distributions(spec))
        open_runs = []
        for run in runs:
            params = {name: value for name, value in settings_of(spec, run.config).items() if name != "seed"}
            if run.status in (Status.COMPLETED, Status.PRUNED):  # a finished trial, with what it reported
                state, value = (
                    (_state().PRUNED, None) if run.status == Status.PRUNED
                    else (_state().COMPLETE, run.best_swd) if run.best_swd is not None else (_state().FAIL, None)
                )  # fmt: skip
                live.study.add_trial(_optuna().trial.create_trial(
                    params=params, distributions=live.space, value=value, intermediate_values=_scores(s, run.id, 0),
                    state=state,
                ))  # fmt: skip
            else:
                live.study.enqueue_trial(params)
                open_runs.append(run.id)
        for run_id in open_runs:  # the queue gives them back in order, each with its own run's settings
            live.trials[run_id] = live.study.ask(live.space)
            live.reported[run_id] = 0
        for setting in spec.first[len(runs):]:
            live.study.enqueue_trial(setting)
        return live

    def _follow(self, s: Session, live: Live, sweep: Sweep, run: Run) -> None:
        trial = live.trials[run.id]
        reason = (sweep.pruned or {}).get(str(run.id))
        for epoch, score in _scores(s, run.id, live.reported[run.id]).items():
            trial.report(score, epoch)
            live.reported[run.id] = epoch
            if reason is None and run.status == Status.RUNNING and trial.should_prune():
                reason = self._prune(s, live, sweep, run, epoch, score)
        if reason and run.status == Status.CANCELLED:
            try:
                self.supervisor.change(run.id, lambda session, r: transition(session, r, Status.PRUNED, error=reason))
            except (LookupError, TransitionError) as e:
                log.info("run %s: not marked pruned: %s", run.id, e)
            s.commit()  # ends this session's read snapshot, which predates the change
            s.refresh(run)
        if run.status in (Status.COMPLETED, Status.PRUNED):
            if run.status == Status.PRUNED:
                live.study.tell(trial, state=_state().PRUNED)
            elif run.best_swd is None:
                live.study.tell(trial, state=_state().FAIL)
            else:
                live.study.tell(trial, run.best_swd)
            del live.trials[run.id], live.reported[run.id]

    def _prune(self, s: Session, live: Live, sweep: Sweep, run: Run, epoch: int, score: float) -> str:
        """Record why on the sweep (so that a restart still marks it), then cancel the run as a person would."""
        done = live.study.get_trials(deepcopy=False, states=(_state().COMPLETE,))
        at_epoch = [t.intermediate_values[epoch] for t in done if epoch in t.intermediate_values]
        median = f"the median {statistics.median(at_epoch):.3g} of the finished trials" if at_epoch else "the other trials"
        reason = f"pruned by the sweep's median pruner at epoch {epoch}: SWD {score:.3g} is worse than {median} there"
        sweep.pruned = {**(sweep.pruned or {}), str(run.id): reason}
        s.commit()
        try:
            self.supervisor.cancel(run.id)
        except (LookupError, TransitionError) as e:
            log.info("run %s: could not stop it for the pruner: %s", run.id, e)
        log.info("sweep %s: %s", sweep.id, reason)
        return reason

    def _ask(self, s: Session, live: Live, sweep: Sweep, runs: list[Run]) -> None:
        made, active = len(runs), sum(r.status in ACTIVE for r in runs)
        parallel = live.spec.parallel or self.slots
        while made < live.spec.trials and active < parallel:
            trial = live.study.ask(live.space)
            settings = {**trial.params, "seed": base_seed(live.spec)}
            try:
                cfg = run_config(live.spec, settings)
            except SweepError as e:  # a value inside a range that the config refuses: the trial fails, the sweep goes on
                log.warning("sweep %s: trial %s: %s", sweep.id, trial.number, e)
                live.study.tell(trial, state=_state().FAIL)
                made += 1
                continue
            run = Run(name=f"{sweep.name} #{made + 1}", config=resolved(cfg.model_dump()), sweep_id=sweep.id)
            s.add(run)
            s.flush()
            live.trials[run.id], live.reported[run.id] = trial, 0
            self.supervisor.submit(s, run)
            made, active = made + 1, active + 1


def _scores(s: Session, run_id: int, after: int) -> dict[int, float]:
    """The run's SWD per finished epoch after `after`, as its epoch messages stored them."""
    rows = s.execute(
        select(Sample.epoch, Sample.swd).where(Sample.run_id == run_id, Sample.epoch > after, Sample.swd.is_not(None))
        .order_by(Sample.epoch)
    )  # fmt: skip
    return dict(rows.all())
