"""Health alerts: what is going wrong with a run, in plain words and with what to try, found from what ingest stored.

Ingest calls `after_batch`, `after_epoch` and `after_status` in its transaction; each looks at a window of recent rows
(at most `OSCILLATION_WINDOW` metric rows, or the last two samples and the best before them), never the whole history. A kind has at most one
open alert per run: it is raised when its rule holds, cleared (`cleared_step`) when the rule no longer holds, and
raised again only after that. The rules and their thresholds are in docs/health.md; the rules themselves are plain
functions of rows, so tests feed them synthetic ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.storage.db import Alert, Metric, Run, Sample

D_WINDOW = 200  # steps D's outputs are averaged over
D_FAKE_MAX, D_REAL_MIN = 0.05, 0.95
OSCILLATION_WINDOW = 1000  # steps looked at for spikes
# The batch rules run when stored rows reach a multiple of this many steps (history.reaches_multiple), not on every
# message: reading the last OSCILLATION_WINDOW rows was the server's largest cost per worker message (a message every
# 0.25 s holds a few steps); an alert comes at most BATCH_EVERY steps later, against windows of 200 and 1,000 steps.
BATCH_EVERY = 50
SPIKE_FACTOR = 3.0  # a spike: a loss above this many times the window's median
SPIKE_MIN = 0.5  # and above the median by this much (a loss near 0, as when D wins, has "spikes" of 0.001)
MIN_SPIKES = 3
SPIKE_MERGE = 10  # spike rows closer than this many steps are one spike
REGULARITY = 2.0  # every gap between spikes within this factor of their median gap
COLLAPSE_RATIO, COLLAPSE_EPOCHS = 0.3, 2

# kind -> (what it means, what to try)
KINDS: dict[str, tuple[str, str]] = {
    "d_wins": (
        "D tells real from generated almost perfectly, so G gets little gradient.",
        "Lower lr_d, or train D less often than G (raise d_every, or lower g_every); a smaller ndf also helps.",
    ),
    "mode_collapse": (
        "G draws nearly the same image for every noise vector (mode collapse).",
        "Lower lr_g, keep beta1 at 0.5, train D more often (lower d_every); resume from an earlier checkpoint.",
    ),
    "non_finite": (
        "A loss became NaN or infinite, so training stopped; the last good checkpoint is kept.",
        "Lower lr_d and lr_g (2e-4 is the article's), check the data for broken images, then start again.",
    ),
    "oscillation": (
        "The losses spike at regular intervals: D and G keep overpowering each other in turn.",
        "Lower both learning rates, or lower beta1; a larger batch_size smooths the steps.",
    ),
}


# -- the rules, on plain rows -----------------------------------------------------------------------------------------


def d_wins(d_x: Sequence[float | None], d_g_z: Sequence[float | None]) -> str | None:
    """D wins when, over a full window of D_WINDOW steps, mean D(G(z)) < D_FAKE_MAX and mean D(x) > D_REAL_MIN."""
    real, fake = [v for v in d_x if v is not None], [v for v in d_g_z if v is not None]
    if len(d_x) < D_WINDOW or not real or not fake:
        return None
    mean_real, mean_fake = statistics.fmean(real), statistics.fmean(fake)
    if mean_fake < D_FAKE_MAX and mean_real > D_REAL_MIN:
        return f"over the last {len(d_x)} steps D(x) averaged {mean_real:.3f} and D(G(z)) {mean_fake:.3f}"
    return None


def spikes(steps: Sequence[int], values: Sequence[float | None]) -> list[int]:
    """The steps where a spike starts: a value above SPIKE_FACTOR x the median of `values` and above it by SPIKE_MIN;
    the rows of one spike merged."""
    present = [(s, v) for s, v in zip(steps, values) if v is not None]
    if len(present) < 20:
        return []
    median = statistics.median(v for _, v in present)
    threshold = max(SPIKE_FACTOR * median, median + SPIKE_MIN)
    starts: list[int] = []
    last = None
    for s, v in present:
        if v > threshold:
            if last is None or s - last > SPIKE_MERGE:
                starts.append(s)
            last = s
    return starts


def oscillation(steps: Sequence[int], values: Sequence[float | None]) -> str | None:
    """At least MIN_SPIKES spikes whose gaps are all within REGULARITY of their median gap."""
    starts = spikes(steps, values)
    if len(starts) < MIN_SPIKES:
        return None
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    period = statistics.median(gaps)
    if all(period / REGULARITY <= g <= period * REGULARITY for g in gaps):
        return f"{len(starts)} spikes over {SPIKE_FACTOR:g}x the median, about every {period:.0f} steps"
    return None


def mode_collapse(diversity: Sequence[float]) -> str | None:
    """Diversity (generated / real, one per epoch, newest last) that fell: below COLLAPSE_RATIO in the last
    COLLAPSE_EPOCHS epochs after reaching it before. An untrained G scores ~0.03 (it draws one blur for every noise),
    so a run that never got there is still learning, or has another alert (D wins) that says why."""
    recent, before = diversity[-COLLAPSE_EPOCHS:], diversity[:-COLLAPSE_EPOCHS]
    if len(recent) < COLLAPSE_EPOCHS or any(d >= COLLAPSE_RATIO for d in recent) or max(before, default=0) < COLLAPSE_RATIO:
        return None
    shown = ", ".join(f"{d:.2f}" for d in recent)
    return f"the samples' diversity fell from {max(before):.2f} to {shown} of the data's in the last {COLLAPSE_EPOCHS} epochs"


# -- applied to what ingest stored ------------------------------------------------------------------------------------


def after_batch(session: Session, run: Run) -> list[Alert]:
    rows = session.execute(
        select(Metric.step, Metric.loss_d, Metric.loss_g, Metric.d_x, Metric.d_g_z)
        .where(Metric.run_id == run.id).order_by(Metric.step.desc()).limit(OSCILLATION_WINDOW)
    ).all()[::-1]  # fmt: skip
    if not rows:
        return []
    steps, loss_d, loss_g, d_x, d_g_z = (list(c) for c in zip(*rows))
    recent = slice(-D_WINDOW, None)
    found = {
        "d_wins": d_wins(d_x[recent], d_g_z[recent]),
        "oscillation": oscillation(steps, loss_d) or oscillation(steps, loss_g),
    }
    return _apply(session, run, found)


def after_epoch(session: Session, run: Run) -> list[Alert]:
    """The last COLLAPSE_EPOCHS samples' diversity, and the best before them (one aggregate, not the history)."""
    scored = (Sample.run_id == run.id, Sample.diversity.is_not(None))
    latest = session.execute(
        select(Sample.epoch, Sample.diversity).where(*scored).order_by(Sample.epoch.desc()).limit(COLLAPSE_EPOCHS)
    ).all()[::-1]
    if not latest:
        return []
    best = session.scalar(select(func.max(Sample.diversity)).where(*scored, Sample.epoch < latest[0].epoch))
    series = ([best] if best is not None else []) + [d for _, d in latest]
    return _apply(session, run, {"mode_collapse": mode_collapse(series)})


def after_status(session: Session, run: Run, status: str, error: str | None) -> list[Alert]:
    """A run that failed on a NaN/inf raises non_finite; a new attempt starting clears it."""
    if status == "running":
        return _apply(session, run, {"non_finite": None})
    if status == "failed" and error and error.startswith("non-finite"):
        return _apply(session, run, {"non_finite": error})
    return []


def _apply(session: Session, run: Run, found: dict[str, str | None]) -> list[Alert]:
    """Raise the kinds whose rule holds (`found[kind]`: what was measured) unless open; clear the ones that no longer
    hold. Returns the alerts raised."""
    raised = []
    open_ = {a.kind: a for a in run.alerts if a.cleared_step is None}
    for kind, detail in found.items():
        if detail and kind not in open_:
            what, advice = KINDS[kind]
            alert = Alert(kind=kind, step=run.step, epoch=run.epoch, message=f"{what} ({detail})", advice=advice)
            run.alerts.append(alert)
            raised.append(alert)
        elif not detail and kind in open_:
            open_[kind].cleared_step = run.step
    session.flush()
    return raised
