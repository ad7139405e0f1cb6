"""`escrow serve`: the engine as an HTTP service (commands/http, docs/http-contract.md)."""

from __future__ import annotations

import os
from typing import Any

import click

from escrow.commands.cli.store import store_of, uses_store
from escrow.commands.config import POLICY_ENV, load_policy
from escrow.commands.http.keys import Keys, KeysError
from escrow.commands.logs import dict_config
from escrow.errors import EscrowError
from escrow.store import parse_store_url


@click.command()
@uses_store()
@click.option(
    "--keys",
    "keys_file",
    envvar="ESCROW_HTTP_KEYS",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file mapping each bearer token to {name, role} (http.md, 'Who is calling').",
)
@click.option("--host", envvar="ESCROW_HTTP_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    envvar="ESCROW_HTTP_PORT",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
)
@click.option(
    "--policy",
    "policy_file",
    envvar=POLICY_ENV,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML or JSON file of policy fields (rules.md); default the rules' own values.",
)
@click.option(
    "--workers",
    envvar="ESCROW_HTTP_WORKERS",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Server processes (PostgreSQL only: SQLite has one writer).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    keys_file: str,
    host: str,
    port: int,
    policy_file: str | None,
    workers: int,
) -> None:
    """Serve the engine over HTTP: commands, reads, the event log, /openapi.json, /metrics.
    Logs go to stderr as ESCROW_LOG_FORMAT (text or json) and ESCROW_LOG_LEVEL say."""
    import uvicorn

    from escrow.commands.http.app import KEYS_ENV, STORE_ENV, create_app

    store = store_of(ctx)
    try:
        backend = parse_store_url(store).backend
        keys = Keys.load(keys_file)
        policy = load_policy(policy_file) if policy_file else None
        logging_config = dict_config()
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
        host=host,
        port=port,
        access_log=False,  # escrow.http.access logs each request (uvicorn's would repeat it)
        log_config=logging_config,
        timeout_graceful_shutdown=5,
    )
    if workers == 1:
        uvicorn.run(create_app(store, keys, policy), **options)
        return
    os.environ[STORE_ENV], os.environ[KEYS_ENV] = store, os.path.abspath(keys_file)
    if policy_file:
        os.environ[POLICY_ENV] = os.path.abspath(policy_file)
    uvicorn.run(
        "escrow.commands.http.app:from_environment", factory=True, workers=workers, **options
    )
