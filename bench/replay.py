"""A long journal after an outage: how fast it is replayed, and how soon the server answers meanwhile.

A run's journal of `--lines` lines (a running status, batches of `--rows` rows, completed) is written as a worker that
trained on while the server was down leaves it (bench/database.py's `write_journal`), then:
- replay: app/storage/journal.py's `replay` alone, into a fresh SQLite file: lines/s;
- serve (`--serve`): a real server started on the runs folder: the time to its first answer to /api/runs, and to the
  run no longer `replaying` (before the start-up replay ran while the server served, the two were one).
Run: `.venv/bin/python bench/replay.py [--lines 100000] [--rows 4] [--serve]`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from app.storage.db import Run, make_engine, make_sessionmaker  # noqa: E402
from app.storage.journal import replay  # noqa: E402
from bench.database import write_journal  # noqa: E402
from tests.harness import free_port, start_server, wait_for  # noqa: E402
from trainer.journal import JournalWriter  # noqa: E402
from trainer.protocol import JOURNAL, StatusMessage  # noqa: E402


def runs_folder(root: Path, lines: int, rows: int) -> Path:
    runs = root / "runs"
    (runs / "1").mkdir(parents=True)
    steps = (lines - 2) * rows
    write_journal(runs / "1", steps, rows)
    journal = JournalWriter(runs / "1" / JOURNAL)
    journal.write(StatusMessage(seq=lines, attempt=1, status="completed", step=steps, epoch=1).model_dump_json())
    journal.close()
    engine = make_engine(f"sqlite:///{runs / 'ganboard.db'}")
    with make_sessionmaker(engine).begin() as s:
        s.add(Run(id=1, name="replayed", config={"batch_size": 64}, status="running", attempt=1, executor="local"))
    engine.dispose()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=4, help="rows per batch line")
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = runs_folder(Path(tmp), args.lines, args.rows)
        if args.serve:
            kept = Path(tmp) / "kept"
            shutil.copytree(runs, kept)
        engine = make_engine(f"sqlite:///{runs / 'ganboard.db'}")
        started = time.perf_counter()
        stored = replay(make_sessionmaker(engine), 1, runs / "1")
        took = time.perf_counter() - started
        engine.dispose()
        print(f"replay: {stored:,} lines ({stored * args.rows:,} rows) in {took:.1f} s: {stored / took:,.0f} lines/s",
              flush=True)  # fmt: skip
        if args.serve:
            port, started = free_port(), time.perf_counter()
            try:
                server = start_server(kept, port, replayed=False)
            except TypeError:  # a checkout from before the replay ran while serving: its start is the replay
                server = start_server(kept, port)
            answered = time.perf_counter() - started
            try:
                wait_for(lambda: not server.run(1).get("replaying"), 3600, 0.5, "the replay")
                done = time.perf_counter() - started
                print(f"serve: first answer {answered:.1f} s after the start, replay done at {done:.1f} s; run "
                      f"{server.run(1)['status']}")
            finally:
                server.stop()


if __name__ == "__main__":
    main()
