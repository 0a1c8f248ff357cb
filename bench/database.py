"""SQLite against PostgreSQL on the same machine: journal replay, a 200,000-step run's first paint, and (--fanout) 100
pages on a training run.

- replay: a journal of `--steps` batch rows, `--rows` per message (a worker on the CPU sends ~8 rows every 250 ms), is
  replayed into a fresh database (app/storage/journal.py: parse, ingest, health rules, stored buckets): rows stored per second.
- first paint: a run of 200,000 steps written through the ORM (tests/browser/runs_in_db.py); what a run page waits for
  before it draws: the snapshot read in-process (the database's share: run, buckets, samples, checkpoints, machine),
  and through a real server, from opening `WS /ws/runs/<id>` to its first frame; median ms.
- fan-out (--fanout): bench/fanout.py's measurement on a server on each database: each page's delay, and the time
  for a batch of rows to reach all `--pages` pages (per step, until the last page has it).

Each case alternates the two databases, `--rounds` times, each on a database of its own. PostgreSQL is the server
GANBOARD_TEST_PG_URL names (tests/databases.py); `scripts/services.sh` runs it with fsync off, so its figures are
what PostgreSQL costs in CPU and round trips, not a disk's flushes (SQLite in WAL mode flushes only at checkpoints).
Run: `.venv/bin/python bench/database.py [--rounds 3] [--steps 20000] [--fanout [--fanout-steps 150]]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402

from app import json_view  # noqa: E402
from app.storage.db import Run, make_engine, make_sessionmaker  # noqa: E402
from app.storage.journal import replay  # noqa: E402
from tests.browser.runs_in_db import write_run  # noqa: E402
from tests.databases import KINDS, fresh_database, postgres_missing  # noqa: E402
from tests.harness import scratch_server  # noqa: E402
from trainer.journal import JournalWriter  # noqa: E402
from trainer.protocol import JOURNAL, ROW_COLUMNS, BatchMessage, StatusMessage  # noqa: E402

FIRST_PAINT_STEPS = 200_000


def write_journal(run_dir: Path, steps: int, per_message: int) -> None:
    journal = JournalWriter(run_dir / JOURNAL)
    journal.write(StatusMessage(seq=1, attempt=1, status="running", step=0, epoch=0, total_steps=steps, total_epochs=1,
                                device="cpu").model_dump_json())  # fmt: skip
    for seq, first in enumerate(range(1, steps + 1, per_message), start=2):
        chunk = list(range(first, min(first + per_message, steps + 1)))
        rows = {c: [0.5 + (s % 7) / 10 for s in chunk] for c in ROW_COLUMNS}
        rows |= {"step": chunk, "epoch": [1] * len(chunk), "batch": [s - 1 for s in chunk], "time": [1e9 + s / 4 for s in chunk]}
        journal.write(BatchMessage(seq=seq, attempt=1, rows=rows).model_dump_json())
    journal.close()


def replay_rows_per_s(url: str, run_dir: Path) -> float:
    sessions = make_sessionmaker(make_engine(url))
    with sessions.begin() as s:
        s.add(Run(id=1, name="replayed", config={"batch_size": 64}, status="running", attempt=1))
    started = time.perf_counter()
    replay(sessions, 1, run_dir)
    seconds = time.perf_counter() - started
    with sessions() as s:
        steps = s.scalar(select(Run.step))
    sessions.kw["bind"].dispose()
    return steps / seconds


def snapshot_ms(url: str, run_id: int, times: int = 5) -> float:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    took = []
    for _ in range(times):
        started = time.perf_counter()
        with sessions() as s:
            json_view.snapshot(s, s.get(Run, run_id))
        took.append(1000 * (time.perf_counter() - started))
    engine.dispose()
    return statistics.median(took)


def first_frame_ms(server, run_id: int, times: int = 5) -> float:
    from websockets.sync.client import connect

    took = []
    for _ in range(times):
        started = time.perf_counter()
        with connect(f"{server.ws_url}/ws/runs/{run_id}", max_size=None) as ws:
            ws.recv(timeout=120)
        took.append(1000 * (time.perf_counter() - started))
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20_000, help="batch rows in the replayed journal")
    parser.add_argument("--rows", type=int, default=8, help="rows per batch message")
    parser.add_argument("--fanout", action="store_true", help="also bench/fanout.py on each (minutes)")
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--fanout-steps", type=int, default=150, help="steps of each fan-out run")
    args = parser.parse_args()
    if why := postgres_missing():
        sys.exit(f"bench/database.py: {why}")
    replayed: dict[str, list[float]] = {k: [] for k in KINDS}
    snapshot: dict[str, list[float]] = {k: [] for k in KINDS}
    frame: dict[str, list[float]] = {k: [] for k in KINDS}
    fanout: dict[str, list[dict]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        write_journal(Path(tmp) / "journal" / "1", args.steps, args.rows)
        for r in range(args.rounds):
            for kind in KINDS:
                (folder := Path(tmp) / f"{kind}-{r}").mkdir()
                with fresh_database(kind, folder) as url:
                    replayed[kind].append(replay_rows_per_s(url, Path(tmp) / "journal" / "1"))
        (Path(tmp) / "sqlite").mkdir()
        with ExitStack() as stack:  # one 200,000-step run per database, and a server on each, read alternately
            urls = {kind: stack.enter_context(fresh_database(kind, Path(tmp) / kind)) for kind in KINDS}
            run_ids = {kind: write_run(url, FIRST_PAINT_STEPS) for kind, url in urls.items()}
            servers = {kind: stack.enter_context(scratch_server(database_url=url)) for kind, url in urls.items()}
            for _ in range(args.rounds):
                for kind in KINDS:
                    snapshot[kind].append(snapshot_ms(urls[kind], run_ids[kind]))
                    frame[kind].append(first_frame_ms(servers[kind], run_ids[kind]))
            if args.fanout:
                from bench.fanout import train_once

                for _ in range(args.rounds):
                    for kind in KINDS:
                        fanout[kind].append(train_once(servers[kind], args.fanout_steps, args.pages))

    def line(what: str, values: dict[str, list[float]], unit: str, fmt: str = ",.0f") -> None:
        lite, pg = (statistics.median(values[k]) for k in KINDS)
        print(f"  {what:<44} SQLite {lite:{fmt}} {unit}, PostgreSQL {pg:{fmt}} {unit}: PostgreSQL/SQLite {pg / lite:.2f}")

    print(f"SQLite against PostgreSQL, median of {args.rounds} rounds:")
    line(f"journal replay ({args.steps:,} rows, {args.rows} a message)", replayed, "rows/s")
    line(f"snapshot of {FIRST_PAINT_STEPS:,} steps, in-process", snapshot, "ms", ".1f")
    line(f"snapshot of {FIRST_PAINT_STEPS:,} steps, WS first frame", frame, "ms", ".1f")
    if args.fanout:
        print(f"  fan-out: {args.pages} pages on a {args.fanout_steps}-step run (bench/fanout.py)")
        line(f"{args.pages} pages: delay p50", {k: [r["p50_ms"] for r in v] for k, v in fanout.items()}, "ms")
        line(f"{args.pages} pages: delay p99", {k: [r["p99_ms"] for r in v] for k, v in fanout.items()}, "ms")
        line(f"{args.pages} pages: a batch on all of them, p50", {k: [r["all_p50_ms"] for r in v] for k, v in fanout.items()}, "ms")
        line(f"{args.pages} pages: server CPU per step", {k: [r["server_ms_per_step"] for r in v] for k, v in fanout.items()}, "ms", ".1f")
        for kind in KINDS:
            complete = [f"{r['complete_pages']}/{args.pages}" for r in fanout[kind]]
            print(f"  {kind}: every step on {', '.join(complete)} pages")


if __name__ == "__main__":
    main()
