"""Read models projected in the transaction that records the events (SQLite).

Projecting after the events commit costs a second transaction on a second connection, and on
SQLite more than that: a connection's page cache is dropped whenever another connection wrote
to the file, so the event store and the read models each found cold pages on every command.
The library's SQLite recorder runs its insert inside one transaction and passes `app.save`'s
keyword arguments down to it; this subclass adds one such argument, `project`, called with the
transaction's cursor and the new notification ids after the insert and before the commit.
Everything else is the library's recorder, unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor


class Hook(Protocol):
    def __call__(self, cursor: sqlite3.Cursor, ids: Sequence[int]) -> None: ...


class InlineSQLiteRecorder(SQLiteApplicationRecorder):
    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        project: Hook | None = kwargs.get("project")
        if project is not None and ids:
            project(c.sqlite_cursor, ids)
        return ids
