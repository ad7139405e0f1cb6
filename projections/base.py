"""Following the event log: each read model records its position in the same transaction as
its rows, so every event is counted exactly once, a crash resumes where it stopped, and a
read model can be rebuilt from the first event.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol

from projections.readstore import Cursor, ReadStore

TRACKING_DDL = (
    "CREATE TABLE IF NOT EXISTS escrow_tracking (name TEXT PRIMARY KEY, position BIGINT NOT NULL)"
)


class ReadModel(ABC):
    name: str
    tables: tuple[str, ...]

    @abstractmethod
    def ddl(self, store: ReadStore) -> list[str]:
        """CREATE statements for this model's tables (idempotent)."""

    @abstractmethod
    def handle(self, cur: Cursor, event: Any) -> None:
        """Apply one event; events of no interest are ignored."""


class Projector:
    """Runs read models over an application's notification log, pulling new events."""

    def __init__(
        self,
        app: Application[Any],
        store: ReadStore,
        models: Sequence[ReadModel],
        batch: int = 500,
    ) -> None:
        self.app = app
        self.store = store
        self.models = list(models)
        self.batch = batch
        self._lock = threading.Lock()
        with store.transaction() as cur:
            cur.execute(TRACKING_DDL)
            for model in self.models:
                for statement in model.ddl(store):
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO escrow_tracking (name, position) VALUES (?, 0) "
                    "ON CONFLICT (name) DO NOTHING",
                    [model.name],
                )

    def positions(self, cur: Cursor) -> dict[str, int]:
        lock = " FOR UPDATE" if self.store.dialect == "postgresql" else ""
        names = [m.name for m in self.models]
        cur.execute(
            f"SELECT name, position FROM escrow_tracking WHERE name IN "
            f"({','.join('?' * len(names))}) ORDER BY name{lock}",
            names,
        )
        return {name: int(position) for name, position in cur.fetchall()}

    def apply(self, first_id: int, events: Sequence[DomainEventProtocol[Any]]) -> bool:
        """Project events just recorded (ids first_id, first_id+1, ...) without reading them
        back; False when the read models are not right behind them (then `catch_up`)."""
        with self._lock, self.store.transaction() as cur:
            positions = self.positions(cur)
            if any(p != first_id - 1 for p in positions.values()):
                return False
            for event in events:
                for model in self.models:
                    model.handle(cur, event)
            self._advance(cur, positions, first_id + len(events) - 1)
        return True

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Pull and project every event recorded after the slowest model; returns how many."""
        done = 0
        with self._lock:
            while True:
                with self.store.transaction() as cur:
                    positions = self.positions(cur)
                    start = min(positions.values())
                    notifications = self.app.recorder.select_notifications(
                        start, self.batch, inclusive_of_start=False
                    )
                    if not notifications:
                        return done
                    for n in notifications:
                        event = self.app.mapper.to_domain_event(n)
                        for model in self.models:
                            if positions[model.name] < n.id:
                                model.handle(cur, event)
                    self._advance(cur, positions, notifications[-1].id)
                done += len(notifications)
                if progress:
                    progress(len(notifications))

    def _advance(self, cur: Cursor, positions: dict[str, int], last: int) -> None:
        for name, position in positions.items():
            if position < last:
                cur.execute("UPDATE escrow_tracking SET position = ? WHERE name = ?", [last, name])

    def rebuild(
        self, names: Sequence[str] = (), progress: Callable[[int], None] | None = None
    ) -> int:
        """Drop the named read models (all by default) and replay them from the first event."""
        chosen = [m for m in self.models if not names or m.name in names]
        with self._lock, self.store.transaction() as cur:
            for model in chosen:
                for table in model.tables:
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in model.ddl(self.store):
                    cur.execute(statement)
                cur.execute("UPDATE escrow_tracking SET position = 0 WHERE name = ?", [model.name])
        return self.catch_up(progress)
