"""The Python extension point for an embedding backend: its own handler over every event,
exactly once, with its own writes in the same transaction as its recorded position.

    class Credits(EventHandler):
        name = "wallet-credits"

        def setup(self, cur: Cursor) -> None:  # noqa: B027 (optional: a handler may need no table)
            cur.execute("CREATE TABLE IF NOT EXISTS credits (position BIGINT PRIMARY KEY, "
                        "trader TEXT NOT NULL, asset TEXT NOT NULL, amount TEXT NOT NULL)")

        def handle(self, cur: Cursor, event: dict[str, Any]) -> None:
            if (m := event["movement"]) is not None:
                cur.execute("INSERT INTO credits VALUES (?, ?, ?, ?)",
                            [event["position"], m["to"], m["asset"], m["amount"]])

    with Subscription(engine_or_store_url, Credits()) as subscription:
        subscription.catch_up()     # or run() in a process of its own

The handler gets the very JSON objects the relay publishes (`escrow.commands.events`). It works like
the engine's own read models (`projections`): its tables live in the store's database, and
the rows it writes commit in the transaction that moves its tracking row, so a crash anywhere
leaves both as they were before the batch, and the next run handles that batch again. A side
effect outside the store (an HTTP call) cannot join that transaction: make it idempotent on
`position`, or follow the NATS stream (docs/events.md).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

from escrow.application import EscrowApplication
from escrow.commands.api import Escrow
from escrow.commands.audit.history import History
from escrow.commands.events import EventJson
from escrow.errors import ValidationError
from escrow.log import Row
from escrow.projections.follower import Follower
from escrow.projections.readstore import Cursor, ReadStore
from escrow.projections.runner import wakeups
from escrow.store import parse_store_url


class EventHandler(ABC):
    """Subclass it: a `name` (its tracking row: one position per name), `setup` for its
    tables, `handle` for each event. SQL takes `?` placeholders on both backends."""

    name: str

    def setup(self, cur: Cursor) -> None:  # noqa: B027 (optional: a handler may need no table)
        """Create the handler's tables (idempotently: `IF NOT EXISTS`); runs at each start."""

    @abstractmethod
    def handle(self, cur: Cursor, event: dict[str, Any]) -> None:
        """Apply one event (events.md's JSON), writing through `cur` only: raising rolls the
        whole batch back, position included, and the next run starts with it again."""


class Subscription:
    """Runs one `EventHandler` over the store's log: `catch_up()` now, or `run()` until
    `stop()` (PostgreSQL wakes on each commit, SQLite polls)."""

    def __init__(self, store: str | Escrow, handler: EventHandler, *, batch: int = 500) -> None:
        """`store`: an engine (its own connections: the only way into a `memory:` store) or
        a store URL (connections of the subscription's own)."""
        if isinstance(store, Escrow):
            self.app, self.read, self._owned = store.wiring.app, store.wiring.read, False
        else:
            config = parse_store_url(store)
            if config.backend == "memory":
                raise ValidationError("a memory: store lives in one engine: pass the engine")
            self.app = EscrowApplication(env=config.env)
            self.read, self._owned = ReadStore.open(config), True
        self.handler = handler
        self.follower = Follower(
            self.app, self.read, handler.name, batch=batch, setup=handler.setup
        )
        self.json = EventJson(History(self.app))
        self.stopping = threading.Event()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self.read.close()
            self.app.close()

    def position(self) -> int:
        return self.follower.position()

    def catch_up(self) -> int:
        """Handle every event recorded so far; returns how many log rows were read."""
        return self.follower.catch_up(self._handle, stop=self.stopping.is_set)

    def run(self, poll: float = 1.0) -> None:
        """Follow the log until `stop()`; `poll`: seconds between reads when nothing wakes it."""
        with wakeups(self.app, self.read, self.stopping) as wait:
            while not self.stopping.is_set():
                if not self.catch_up():
                    wait(poll)

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run` (safe from a signal handler)."""
        self.stopping.set()

    def _handle(self, cur: Cursor, rows: list[Row]) -> None:
        for row in rows:
            event = self.json.row(row)
            if event is not None:
                self.handler.handle(cur, event)
