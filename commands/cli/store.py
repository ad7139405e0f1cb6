"""`--store URL`, accepted before the subcommand (`escrow --store URL views orders`) and after
it (`escrow views orders --store URL`) by every command that uses a store, with `ESCROW_STORE`
and the default behind both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

DEFAULT_STORE = "sqlite:///escrow.db"
STORE_HELP = "Store URL: memory:, sqlite:///file.db (sqlite:////abs/path.db) or postgresql://..."

F = TypeVar("F", bound=Callable[..., Any])


def _given_after(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_root().meta["escrow.store"] = value


def uses_store(help: str = STORE_HELP) -> Callable[[F], F]:
    """Let this command take `--store URL` after its name, as well as before it."""
    return click.option(
        "--store", metavar="URL", default=None, expose_value=False, callback=_given_after, help=help
    )


def store_of(ctx: click.Context) -> str:
    """The store URL: given after the subcommand, else before it, else ESCROW_STORE, else the
    default."""
    root = ctx.find_root()
    return str(root.meta.get("escrow.store") or root.params["store"])


def store_given(ctx: click.Context) -> bool:
    """Whether `--store` was given on the command line, before or after the subcommand (the
    default and ESCROW_STORE are for the commands that keep data, not for scenarios)."""
    root = ctx.find_root()
    source = root.get_parameter_source("store")
    return "escrow.store" in root.meta or source is click.core.ParameterSource.COMMANDLINE
