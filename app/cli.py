"""The `ganboard` command, server side: `serve` (the dashboard); `train` and `sample` come from trainer/cli.py."""

from __future__ import annotations

import argparse
import sys

from trainer import cli as trainer_cli


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.storage.db import make_engine
    from app.web.limits import server_options
    from app.main import create_app
    from app.settings import Settings

    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as e:  # each field and why, never the value (a URL may hold a password)
        raise trainer_cli.CliError("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from e
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":  # a database server it cannot reach: one line here, not uvicorn's traceback
        try:
            make_engine(settings.database_url).dispose()
        except SQLAlchemyError as e:
            why = str(getattr(e, "orig", e)).splitlines()[0]
            raise trainer_cli.CliError(f"database_url: cannot open {url.render_as_string()}: {why}") from e  # password hidden
    try:
        app = create_app(settings)
    except RuntimeError as e:
        raise trainer_cli.CliError(str(e)) from e
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", **server_options(app.state.open_files))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from app.settings import Settings

    parser = argparse.ArgumentParser(prog="ganboard", description="Launch and watch DCGAN training runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "serve",
        help="start the dashboard",
        description="Start the dashboard. Every option also reads a GANBOARD_ environment variable.",
    )
    p.add_argument("--host", help="address to bind (GANBOARD_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (GANBOARD_PORT, default 8000)")
    p.add_argument("--runs-dir", dest="runs_dir", help="run folders and database (GANBOARD_RUNS_DIR, default runs)")
    p.add_argument(
        "--database-url", dest="database_url",
        help="sqlite:///<file> or postgresql://<user>:<password>@<host>/<database> (GANBOARD_DATABASE_URL, default "
        "<runs-dir>/ganboard.db; docs/postgresql.md)",
    )  # fmt: skip
    p.add_argument(
        "--max-concurrent", dest="max_concurrent", type=int,
        help="runs training at once (GANBOARD_MAX_CONCURRENT, default one per GPU, else 1)",
    )  # fmt: skip
    cluster = p.add_argument_group("Slurm cluster (docs/cluster.md)")
    for name, field in Settings.model_fields.items():
        if name in ("executor", "public_url") or name.startswith("slurm_"):
            env = f"GANBOARD_{name.upper()}"
            if field.annotation == list[str]:  # a JSON list: the environment only
                p.epilog = f"{p.epilog or ''}{env} (environment only): {field.description}. "
                continue
            kind = int if field.annotation is int else str
            choices = ["local", "slurm"] if name == "executor" else None
            cluster.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, choices=choices,
                                 help=f"{field.description} ({env})")  # fmt: skip
    p.set_defaults(func=cmd_serve)
    trainer_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except trainer_cli.CliError as e:
        print(f"ganboard {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
