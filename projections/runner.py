"""Following the log in a process of its own: `escrow projections run`.

Embedded engines (SQLite, memory) project each command's events before the command returns. A
PostgreSQL deployment runs this instead (or as well: the tracking rows are locked per batch, so
any number of projectors share the work and still count every event once), which also picks up
events written by processes that do not project, and catches up after a crash.

Waking up: on PostgreSQL the event store NOTIFYs a channel in the same transaction as every
insert, so the runner LISTENs and wakes when events commit (the poll interval is only a safety
net); SQLite has no such signal and is polled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from eventsourcing.application import Application
from psycopg import sql

from escrow.application import STORE_AWAY, EscrowApplication
from escrow.errors import ValidationError
from escrow.faults import store_faults
from escrow.projections.base import Projector
from escrow.projections.catalog import read_models
from escrow.projections.readstore import PostgresReadStore, ReadStore
from escrow.store import parse_store_url

Report = Callable[[int, float, int, int], None]  # (events, seconds, position, head)

log = logging.getLogger("escrow.projections")
BACKOFF, MAX_BACKOFF = 0.5, 5.0  # seconds between attempts while the store is away


def _first_line(fault: BaseException) -> str:
    return (str(fault).strip().splitlines() or [type(fault).__name__])[0]


class Runner:
    def __init__(
        self,
        store: str,
        *,
        names: Sequence[str] = (),
        batch: int = 1000,
        poll: float = 1.0,
    ) -> None:
        config = parse_store_url(store)
        if config.backend == "memory":
            raise ValidationError("a memory: store lives inside one process: nothing to follow")
        models = read_models()
        unknown = set(names) - {m.name for m in models}
        if unknown:
            raise ValidationError(f"no read model named {', '.join(sorted(unknown))}")
        self.config = config
        self.app = EscrowApplication.open(config)
        try:
            with store_faults(config, opening=True):
                self.read = ReadStore.open(config)
        except BaseException:
            self.app.close()
            raise
        self.projector = Projector(
            self.app, self.read, [m for m in models if not names or m.name in names], batch=batch
        )
        self.poll = poll
        self.stopping = threading.Event()

    def close(self) -> None:
        self.read.close()
        self.app.close()

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run` (safe from a signal handler)."""
        self.stopping.set()

    def run(self, *, until_idle: bool = False, report: Report | None = None) -> int:
        """Project new events as they are committed until `stop` (or, with `until_idle`,
        until the log has nothing new); returns how many notifications were read."""
        total = 0
        away = 0  # failed attempts in a row while the store is away
        with store_faults(self.config), wakeups(self.app, self.read, self.stopping) as wait:
            while not self.stopping.is_set():
                started = time.perf_counter()
                try:
                    done = self.projector.catch_up(
                        progress=None if report is None else self._reporter(report, started),
                        stop=self.stopping.is_set,
                    )
                except STORE_AWAY as fault:
                    # A restart or failover: the batch rolled back with its position, so the
                    # same events are projected once the store answers again.
                    away += 1
                    delay = min(BACKOFF * 2 ** (away - 1), MAX_BACKOFF)
                    log.warning(
                        "store unavailable (%s); retrying in %.1f s",
                        _first_line(fault),
                        delay,
                        extra={"store": self.config.shown, "retry_in": delay, "attempt": away},
                    )
                    self.stopping.wait(delay)
                    for pool in (self.app, self.read):
                        with contextlib.suppress(*STORE_AWAY):
                            pool.recover()
                    continue
                if away:
                    log.info("store available again", extra={"store": self.config.shown})
                    away = 0
                total += done
                if until_idle and done == 0:
                    break
                if done == 0:
                    wait(self.poll)
        return total

    def _reporter(self, report: Report, started: float) -> Callable[[int], None]:
        def progress(events: int) -> None:
            positions, head = self.projector.status()
            report(events, time.perf_counter() - started, min(positions.values()), head)

        return progress


@contextlib.contextmanager
def wakeups(
    app: Application[Any], read: ReadStore, stopping: threading.Event
) -> Iterator[Callable[[float], None]]:
    """A `wait(timeout)` that returns early when events may have been committed (the
    library's recorder NOTIFYs its channel in every inserting transaction: PostgreSQL
    delivers it at commit) or when `stopping` is set; elsewhere it sleeps."""
    recorder: Any = app.recorder
    if not isinstance(read, PostgresReadStore) or not hasattr(recorder, "channel_name"):

        def sleep(timeout: float) -> None:
            stopping.wait(timeout)

        yield sleep
        return
    listener = Listener(read.conninfo, recorder.channel_name, stopping)
    try:
        yield listener.wait
    finally:
        listener.close()


class Listener:
    """LISTENs on the event store's channel, connecting again after the store went away (a
    lost notification only delays the next catch-up until the poll interval)."""

    def __init__(self, conninfo: str, channel: str, stopping: threading.Event) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.stopping = stopping
        self.conn: psycopg.Connection[Any] | None = None

    def wait(self, timeout: float) -> None:
        try:
            if self.conn is None:
                self.conn = psycopg.connect(self.conninfo, autocommit=True)
                self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            for _ in self.conn.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            self.close()
            self.stopping.wait(timeout)  # the catch-up that follows says whether it is back

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
