"""One line per check, as bench/gpu_check.py has always printed them: `ok  name: detail` or `FAIL name: detail`."""

from __future__ import annotations


def show(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok
