"""Builds what an engine stands on, in one place: the store's application, the read store,
the read models and when they are written."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from eventsourcing.utils import get_topic

from escrow.application import STORE_AWAY, EscrowApplication
from escrow.errors import EngineClosed, StoreConnectionLost, StoreUnreachable, ValidationError
from escrow.faults import store_faults, translate
from escrow.projections import catalog
from escrow.projections.base import Projector
from escrow.projections.inline import InlineSQLiteRecorder
from escrow.projections.readstore import ReadStore
from escrow.store import StoreConfig, parse_store_url

INLINE = "inline"  # read models are up to date when a command returns
DEFERRED = "deferred"  # brought up to date before any read-model query or tick
# SQLite: other programs read the tables in the file, so they follow every command, in the
# command's own transaction. memory: nobody but this object sees the tables, so projecting at
# the next query cannot be told apart from projecting at each command, and costs less.
# PostgreSQL: the production layout runs `escrow projections run` beside the backend.
READ_MODELS = {"sqlite": INLINE, "memory": DEFERRED, "postgresql": DEFERRED}
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("escrow.store")


@dataclass
class Wiring:
    config: StoreConfig
    app: EscrowApplication
    read: ReadStore
    projector: Projector
    read_models: str
    closed: bool = False

    def close(self) -> None:
        """Close the store's connections; a second close does nothing."""
        if not self.closed:
            self.closed = True
            self.read.close()
            self.app.close()

    def recover(self) -> None:
        """After the store went away: replace the pools' broken connections (a store still
        away is said so by the next call)."""
        for part in (self.app, self.read):
            with contextlib.suppress(*STORE_AWAY):
                part.recover()


def wire(store: str, read_models: str | None = None, create: bool = True) -> Wiring:
    """Open the store at `store` with its read models caught up. `read_models`: "inline" or
    "deferred" (default: by backend, see READ_MODELS). `create` False: the store must exist
    (commands that only read), else StoreNotFound and nothing is created."""
    config = parse_store_url(store)
    mode = read_models or READ_MODELS[config.backend]
    if mode not in (INLINE, DEFERRED):
        raise ValidationError(f"read_models is {INLINE!r} or {DEFERRED!r}")
    env = {}
    if config.backend == "sqlite":
        env["APPLICATION_RECORDER_TOPIC"] = get_topic(InlineSQLiteRecorder)
    app = EscrowApplication.open(config, create=create, env=env)
    try:
        with store_faults(config, opening=True):
            read = ReadStore.open(config)
            try:
                projector = Projector(app, read, catalog.read_models())
                projector.catch_up()
            except BaseException:
                read.close()
                raise
    except BaseException:
        app.close()
        raise
    return Wiring(config, app, read, projector, mode)


def guarded(method: F) -> F:
    """A method of an object holding a `wiring`, whose driver exceptions come out as the
    StoreErrors they mean: callers of the API catch the engine's errors, never a driver's.
    After `close()` every such method raises EngineClosed."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.wiring.closed:  # else the driver's own complaint about a closed pool
            raise EngineClosed(f"{method.__name__}: this engine was closed; open a new one")
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            fault = translate(self.wiring.config, e)
            if fault is None:
                raise
            if isinstance(fault, StoreConnectionLost | StoreUnreachable):
                log.warning(
                    "%s: %s; replacing the store's connections",
                    fault.code,
                    fault.message,
                    extra={"store": self.wiring.config.shown, "code": fault.code},
                )
                self.wiring.recover()  # the next call meets fresh connections, not dead ones
            raise fault from e

    return cast(F, wrapper)
