"""`escrow serve`: the engine as an HTTP service (commands/http, docs/http-contract.md)."""

from __future__ import annotations

import os
from typing import Any

import click

from escrow.commands.cli.store import store_of, uses_store
from escrow.commands.http.keys import Keys, KeysError
from escrow.errors import EscrowError
from escrow.store import parse_store_url

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_config() -> dict[str, Any]:
    """One line per request from escrow.http.access, uvicorn's own access log off (it would
    log the raw path a second time)."""
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"stderr": handler},
        "loggers": {
            "escrow": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


@click.command()
@uses_store()
@click.option(
    "--keys",
    "keys_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file mapping each bearer token to {name, role} (http.md, 'Who is calling').",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Server processes (PostgreSQL only: SQLite has one writer).",
)
@click.pass_context
def serve(ctx: click.Context, keys_file: str, host: str, port: int, workers: int) -> None:
    """Serve the engine over HTTP: commands, reads, the event log, /openapi.json."""
    import uvicorn

    from escrow.commands.http.app import KEYS_ENV, STORE_ENV, create_app

    store = store_of(ctx)
    try:
        backend = parse_store_url(store).backend
        keys = Keys.load(keys_file)
    except (EscrowError, KeysError) as e:
        raise click.ClickException(str(e)) from e
    if workers > 1 and backend != "postgresql":
        raise click.UsageError(
            f"--workers {workers} needs a PostgreSQL store: a {backend} store is written by one "
            "process, so serve it with one worker"
        )
    # A request waits at most this long for a PostgreSQL connection, then answers 503 (the
    # library's default is 30 s); the worker processes inherit it.
    os.environ.setdefault("POSTGRES_CONNECT_TIMEOUT", "5")
    options: dict[str, Any] = dict(
        host=host, port=port, access_log=False, log_config=log_config(), timeout_graceful_shutdown=5
    )
    if workers == 1:
        uvicorn.run(create_app(store, keys), **options)
        return
    os.environ[STORE_ENV], os.environ[KEYS_ENV] = store, os.path.abspath(keys_file)
    uvicorn.run(
        "escrow.commands.http.app:from_environment", factory=True, workers=workers, **options
    )
