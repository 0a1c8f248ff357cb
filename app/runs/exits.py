"""Why a worker ended, in words, from the exit code its process left."""

from __future__ import annotations

import signal


def describe_exit(code: int | None) -> str:
    """What became of a worker that ended without reporting how (code None: one re-attached after a restart)."""
    if code is None:
        return "the worker (re-attached after a server restart) is gone"
    if code == -signal.SIGKILL:  # the server sends SIGKILL only when cancelling; otherwise it is the OOM killer
        return "the worker was killed (SIGKILL), most likely out of memory"
    if code < 0:
        try:
            return f"the worker was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the worker was killed by signal {-code}"
    return f"the worker exited with code {code}"
