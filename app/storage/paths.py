"""The paths a user types into a config (`data_path`, `netg_init`, `netd_init`) and the data roots that bound them.

A run stores each path resolved (absolute, symlinks followed) when it is created, so re-pointing a symlink while the
run is queued changes nothing; `check_paths` is cheap enough to run again just before the worker starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

PATH_FIELDS = ("data_path", "netg_init", "netd_init")


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """The config with every path field made absolute and free of symlinks."""
    return {k: str(Path(v).expanduser().resolve()) if k in PATH_FIELDS and v else v for k, v in config.items()}


def path_error(value: str, roots: Iterable[Path]) -> str | None:
    """Why `value` may not be used, or None when it resolves inside one of the roots."""
    roots = list(roots)
    if any(Path(value).expanduser().resolve().is_relative_to(root) for root in roots):
        return None
    allowed = ", ".join(map(str, roots))
    return f"{value!r} is outside the data roots ({allowed}); GANBOARD_DATA_ROOTS sets them"


def check_paths(config: dict[str, Any], roots: Iterable[Path]) -> str | None:
    """The first path field of `config` that points outside the roots, as a message naming it; None when all are in."""
    roots = list(roots)
    for field in PATH_FIELDS:
        if config.get(field) and (error := path_error(config[field], roots)):
            return f"{field}: {error}"
    return None
