"""The worker<->server contract: what parse_message accepts and refuses, run-state transitions, file names."""

import json

import pytest
from pydantic import ValidationError

from trainer.protocol import (
    ROW_COLUMNS, STATS, Status, BatchMessage, Rows, can_move, checkpoint_label, parse_message, snapshot_checkpoint_names,
)  # fmt: skip


def rows(n: int = 3, **override) -> dict:
    cols = {c: [float(i) for i in range(1, n + 1)] for c in ROW_COLUMNS}
    cols.update(step=list(range(1, n + 1)), epoch=[1] * n, batch=list(range(n)))
    return {**cols, **override}


def test_a_batch_message_round_trips():
    msg = BatchMessage(seq=1, attempt=1, rows=Rows(**rows()))
    back = parse_message(msg.model_dump_json())
    assert back == msg and back.rows.records()[0]["step"] == 1 and set(back.rows.records()[0]) == set(ROW_COLUMNS)


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "status", "status": "<img src=x onerror=alert(1)>"},
        {"type": "status", "status": "completed", "step": 1, "epoch": 1, "attempt": 10**30},
        {"type": "status", "status": "running"},  # a running status names where it starts
        {"type": "epoch", "epoch": 1, "step": 1, "sample": "a.png", "images_per_s": float("inf"), "seconds": 1},
        {"type": "batch", "rows": rows(loss_d=[1.0, 2.0])},  # ragged columns
        {"type": "batch", "rows": rows(step=[3, 2, 1])},
        {"type": "batch", "rows": {**rows(), "extra": [1, 2, 3]}},
        {"type": "telemetry"},
    ],
)
def test_bad_messages_are_refused(bad):
    text = json.dumps({"seq": 1, "attempt": 1, **bad}).replace("Infinity", "1e309")
    with pytest.raises(ValidationError):
        parse_message(text)


def test_a_status_moves_only_along_the_lifecycle():
    assert can_move(Status.RUNNING, Status.CANCELLED) and can_move(Status.CANCELLED, Status.QUEUED)
    assert not can_move(Status.COMPLETED, Status.RUNNING) and not can_move(Status.CANCELLED, Status.RUNNING)


def test_snapshot_names_say_what_they_hold():
    g, d = snapshot_checkpoint_names(29, 812)
    assert checkpoint_label(g) == checkpoint_label(d) == "in epoch 29, step 812"
    assert checkpoint_label("netg_0010.pth") == "after epoch 10" and checkpoint_label("netg.pth") == "latest"
    assert "loss_d_real" in STATS
