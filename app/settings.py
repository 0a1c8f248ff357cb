"""Server settings: one pydantic-settings class; every field also reads a GANBOARD_ environment variable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app import gpus

# sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes, days-hours:minutes:seconds
SLURM_TIME = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE", re.IGNORECASE | re.ASCII)
SLURM_MEM = re.compile(r"[1-9]\d*[KMGT]?", re.IGNORECASE | re.ASCII)  # sbatch --mem: a size, in megabytes without a unit
# What GANboard gives every job itself (the run's log, its folder, its environment and token, its requeueing): an
# extra option may not change them.
OWN_OPTIONS = ("--output", "--error", "--open-mode", "--chdir", "--export", "--wrap", "--job-name", "--parsable",
               "--requeue", "--no-requeue")  # fmt: skip


def slurm_time(text: str) -> str:
    if not SLURM_TIME.fullmatch(text):
        raise ValueError(f"{text!r} is not a Slurm time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or "
                         "UNLIMITED (e.g. 90, 4:00:00, 1-00:00:00)")  # fmt: skip
    return text


def slurm_mem(text: str) -> str:
    if not SLURM_MEM.fullmatch(text):
        raise ValueError(f"{text!r} is not a Slurm memory size: a whole number with K, M, G or T (e.g. 16G; no unit: M)")
    return text.upper()


def sbatch_option(text: str) -> str:
    name = text.split("=", 1)[0]
    if not name.startswith("--") or len(name) < 3 or any(c.isspace() for c in name):
        raise ValueError(f"{text!r} is not an sbatch long option: --name or --name=value (e.g. --qos=normal)")
    if name in OWN_OPTIONS:
        raise ValueError(f"{name} is set by GANboard for every job (its log, folder, environment and requeueing)")
    return text


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANBOARD_")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    runs_dir: Path = Path("runs")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL: sqlite:///<file> (default <runs_dir>/ganboard.db) or "
        "postgresql://<user>:<password>@<host>/<database> (docs/postgresql.md)",
    )
    max_concurrent: int | None = Field(None, ge=1, description="local runs at once; default: one per visible GPU, else 1")
    data_roots: list[Path] = Field(
        default_factory=lambda: [Path("data"), Path.home()],
        description="folders that data_path and init checkpoints may point into (JSON list in GANBOARD_DATA_ROOTS)",
    )
    token: str | None = None
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names, besides the address it is bound to, that requests may use (JSON list in "
        "GANBOARD_ALLOWED_HOSTS), e.g. the name of a reverse proxy; other Host headers are refused (DNS rebinding)",
    )
    grace_seconds: float = Field(10.0, gt=0, description="SIGTERM to SIGKILL, when cancelling a run")
    sample_cache_bytes: int = Field(64 * 2**20, ge=0, description="images made by the sampler kept per run (LRU)")
    # Runs on a Slurm cluster (docs/cluster.md). Each run is one job; the cluster queues them, not max_concurrent.
    executor: Literal["local", "slurm"] = Field("local", description="where new runs train: local (a subprocess of "
                                                "the server) or slurm (one sbatch job per run)")
    public_url: str | None = Field(None, description="the server's address as compute nodes reach it, e.g. "
                                   "http://login1:8000 (default: loopback, right only when the cluster is this machine)")
    slurm_partition: str | None = Field(None, description="sbatch --partition (default: the cluster's)")
    slurm_account: str | None = Field(None, description="sbatch --account")
    slurm_time: str | None = Field(None, description="sbatch --time, e.g. 1-00:00:00 (default: the partition's)")
    slurm_cpus: int = Field(2, ge=1, description="sbatch --cpus-per-task, and the run's torch threads")
    slurm_mem: str | None = Field(None, description="sbatch --mem, e.g. 16G (default: the partition's)")
    slurm_gpus: int = Field(0, ge=0, description="sbatch --gpus per run (0: the run trains on the CPU)")
    slurm_options: list[str] = Field(default_factory=list, description='more sbatch options, a JSON list, e.g. '
                                     '["--qos=normal", "--constraint=a100"]')
    slurm_requeue: int = Field(0, ge=0, le=100, description="times a run is requeued by itself, from its resume.pt, "
                               "after Slurm's time limit or a preemption ended its job (0: never; a run may say otherwise)")

    @field_validator("slurm_time")
    @classmethod
    def _slurm_time(cls, text: str | None) -> str | None:
        return None if text is None else slurm_time(text)

    @field_validator("slurm_mem")
    @classmethod
    def _slurm_mem(cls, text: str | None) -> str | None:
        return None if text is None else slurm_mem(text)

    @field_validator("slurm_options")
    @classmethod
    def _slurm_options(cls, options: list[str]) -> list[str]:
        return [sbatch_option(o) for o in options]

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str | None) -> str | None:
        """A URL SQLAlchemy parses; plain postgresql:// (or postgres://) means psycopg 3, the driver GANboard installs."""
        if url is None:
            return None
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError("not a database URL: sqlite:///<file> or postgresql://<user>:<password>@<host>/<database>") from None
        if parsed.drivername in ("postgresql", "postgres"):
            return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return url

    @model_validator(mode="after")
    def _defaults(self) -> "Settings":
        self.runs_dir = self.runs_dir.expanduser().resolve()
        self.data_roots = [root.expanduser().resolve() for root in self.data_roots] + [self.runs_dir]
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.runs_dir / 'ganboard.db'}"
        if self.max_concurrent is None:
            self.max_concurrent = max(1, len(gpus.visible()))
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"public_url: {self.public_url!r} is not an http:// or https:// address")
        return self
