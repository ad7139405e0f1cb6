"""One consumer following the log by name, with its position in `escrow_tracking` beside the
read models'.

A consumer that writes to the store (an embedding backend's own table) gets each batch of rows
in the transaction that moves its position (`step`): the rows it writes and the position
commit or roll back together, so a crash at any instant neither skips an event nor applies one
twice. A consumer whose effect leaves the store (the relay to NATS) reads with `rows` and
records how far it got with `advance` once the effect is confirmed; it owns the exactly-once
argument for what lies outside the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.application import Application

from escrow.log import EventLog, Row
from escrow.projections.base import TRACKING_DDL
from escrow.projections.readstore import Cursor, ReadStore

Handle = Callable[[Cursor, list[Row]], None]


class Follower:
    def __init__(
        self,
        app: Application[Any],
        store: ReadStore,
        name: str,
        *,
        batch: int = 500,
        setup: Callable[[Cursor], None] | None = None,
    ) -> None:
        """`setup(cursor)` creates the consumer's own tables (idempotently), in the
        transaction that creates its tracking row."""
        self.app = app
        self.store = store
        self.name = name
        self.batch = batch
        self.log = EventLog(app.recorder)
        with store.transaction() as cur:
            store.creating(cur)
            cur.execute(TRACKING_DDL)
            cur.execute(
                "INSERT INTO escrow_tracking (name, position) VALUES (?, 0) "
                "ON CONFLICT (name) DO NOTHING",
                [name],
            )
            if setup is not None:
                setup(cur)

    def position(self, cur: Cursor | None = None, lock: bool = False) -> int:
        """Where the consumer is; `lock`: until the transaction ends, so that two processes
        running the same consumer never handle the same batch (PostgreSQL; SQLite's write
        transaction is exclusive already)."""
        if cur is None:
            with self.store.reading() as reading:
                return self.position(reading)
        update = " FOR UPDATE" if lock and self.store.dialect == "postgresql" else ""
        cur.execute(f"SELECT position FROM escrow_tracking WHERE name = ?{update}", [self.name])
        return int(cur.fetchone()[0])

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def rows(self, after: int) -> list[Row]:
        """The next batch after `after`, never past a position that may still be committed."""
        return self.log.following(after, self.batch)

    def advance(self, to: int) -> None:
        """Record that everything up to `to` is done (never moves back)."""
        with self.store.transaction() as cur:
            cur.execute(
                "UPDATE escrow_tracking SET position = ? WHERE name = ? AND position < ?",
                [to, self.name, to],
            )

    def step(self, handle: Handle) -> int:
        """One batch: `handle(cursor, rows)` and the new position in one transaction;
        returns how many rows were handled (0: nothing new)."""
        with self.store.transaction() as cur:
            after = self.position(cur, lock=True)
            rows = self.rows(after)
            if rows:
                handle(cur, rows)
                cur.execute(
                    "UPDATE escrow_tracking SET position = ? WHERE name = ?",
                    [rows[-1][0], self.name],
                )
        return len(rows)

    def catch_up(self, handle: Handle, stop: Callable[[], bool] | None = None) -> int:
        """`step` until nothing is new (or `stop()` says so between batches)."""
        done = 0
        while stop is None or not stop():
            read = self.step(handle)
            if not read:
                break
            done += read
        return done
