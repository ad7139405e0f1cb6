"""A small SQL door to the database that holds the events, for the read models.

Read-model commits are not made durable one by one (SQLite `synchronous=NORMAL` in WAL mode,
PostgreSQL `synchronous_commit=off`): rows and their tracking position commit together, so a
crash can only lose a tail of both at once, which the projection then replays. Events
themselves are always committed durably by the event store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from commands.store import StoreConfig


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class ReadStore:
    """SQL with `?` placeholders, run on SQLite or PostgreSQL."""

    dialect: str
    decimal: str  # the column type that keeps a Decimal exact

    def transaction(self) -> Any:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def open(config: StoreConfig) -> ReadStore:
        if config.backend == "postgresql":
            assert config.postgres_conninfo is not None
            return PostgresReadStore(config.postgres_conninfo, config.postgres_schema)
        return SQLiteReadStore(config.sqlite_path or ":memory:")


class SQLiteReadStore(ReadStore):
    dialect = "sqlite"
    decimal = "TEXT"

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteCursor(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


class _SQLiteCursor:
    """Decimals go in as exact text, which SQLite keeps as written."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql, [str(p) if isinstance(p, Decimal) else p for p in params])

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def fetchone(self) -> Any:
        return self._cur.fetchone()


class PostgresReadStore(ReadStore):
    dialect = "postgresql"
    decimal = "NUMERIC"

    def __init__(self, conninfo: str, schema: str | None) -> None:
        options = "-c synchronous_commit=off"
        if schema:
            options += f" -c search_path={schema}"
        self._pool = ConnectionPool(
            conninfo, min_size=1, max_size=4, open=True, kwargs={"options": options}
        )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield _PostgresCursor(cur)

    def close(self) -> None:
        self._pool.close()


class _PostgresCursor:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql.replace("?", "%s"), list(params))

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    def fetchone(self) -> Any:
        return self._cur.fetchone()
