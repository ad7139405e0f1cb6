"""A small SQL door to the database that holds the events, for the read models.

Read-model commits are not made durable one by one (SQLite `synchronous=NORMAL` in WAL mode,
PostgreSQL `synchronous_commit=off`): rows and their tracking position commit together, so a
crash can only lose a tail of both at once, which the projection then replays. Events
themselves are always committed durably by the event store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from escrow.pg_recorder import CREATING
from escrow.store import CONNECT_TIMEOUT, StoreConfig


class Cursor(Protocol):
    """`?` placeholders on both backends, plus the bulk writes read models batch with."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...

    def select_in(
        self, sql: str, column: str, keys: Sequence[Any], pg_type: str = "text"
    ) -> list[Any]:
        """Rows of `sql` (a SELECT without WHERE) whose `column` is one of `keys`."""
        ...

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        pg_types: Sequence[str],
        rows: Sequence[Sequence[Any]],
        conflict: Sequence[str] = (),
    ) -> None:
        """Insert rows in one go; with `conflict` (the key columns) an existing row is
        overwritten (upsert). `pg_types` name each column's type for PostgreSQL's arrays."""
        ...

    def delete_rows(
        self,
        table: str,
        key: Sequence[str],
        pg_types: Sequence[str],
        keys: Sequence[Sequence[Any]],
    ) -> None: ...

    def update_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        pg_types: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Set `columns` of the rows whose `key` columns match; each row holds the new
        values, then the key values (`pg_types` for both, in that order)."""
        ...

    def advance(self, names: Sequence[str], behind: int, last: int) -> None:
        """Move the tracking of every named model from `behind` to `last`, or make the
        transaction fail (`NotRightBehind`) if any of them is elsewhere."""
        ...


class NotRightBehind(Exception):
    """A read model's position is not just before the events being applied."""


class ReadStore:
    """SQL with `?` placeholders, run on SQLite or PostgreSQL."""

    dialect: str
    decimal: str  # the column type that keeps a Decimal exact
    clustered: str  # table suffix storing rows in primary-key order (one b-tree, not two)

    def transaction(self) -> Any:
        """A writing transaction (rows and tracking commit or roll back together)."""
        raise NotImplementedError

    def reading(self) -> Any:
        """A read-only transaction: one consistent snapshot, no write lock taken."""
        return self.transaction()

    def pipelined(self) -> Any:
        """A writing transaction whose statements need not wait for each other's replies
        (PostgreSQL pipeline mode: one round trip where there would be one per statement)."""
        return self.transaction()

    def creating(self, cur: Cursor) -> None:
        """Called first in a transaction that creates tables: makes every other process
        creating them wait for this one (SQLite's single writer already does)."""

    def recover(self) -> None:
        """After the store went away: replace the broken pooled connections."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.reading() as cur:
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


CACHE_KB = 64 * 1024  # SQLite page cache of the read-model connection


class SQLiteReadStore(ReadStore):
    dialect = "sqlite"
    decimal = "TEXT"
    clustered = " WITHOUT ROWID"

    def __init__(self, path: str, cache_kb: int = CACHE_KB, scratch: bool = False) -> None:
        """`scratch`: a file no other connection opens and nothing needs after a crash (a
        parallel rebuild's), written without a journal or syncs, its tables not clustered."""
        self.path = path
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        if scratch:
            self._conn.execute("PRAGMA journal_mode=OFF")
            self._conn.execute("PRAGMA synchronous=OFF")
            # Rows appended in the order written, their keys in a b-tree of their own: a
            # random key then touches pages of that small index, which stays in the cache,
            # instead of pages of the whole table (a rebuild of a million events: 15% faster).
            self.clustered = ""
        elif path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # Debian's SQLite zeroes every page it frees, so dropping a read model's tables
            # (a rebuild) wrote each of their pages once more: 2 s for a million events'
            # tables. Their rows are derived from the events kept in the same file, so
            # zeroing them hides nothing; FAST still zeroes where that costs no extra write.
            self._conn.execute("PRAGMA secure_delete=FAST")
        # Read-model keys are stream ids, spread at random over their b-trees: with SQLite's
        # default 2 MB page cache a large table is read from disk for almost every row.
        self._conn.execute(f"PRAGMA cache_size=-{cache_kb}")
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._run("BEGIN IMMEDIATE") as cur:
            yield cur

    @contextmanager
    def reading(self) -> Iterator[Any]:
        with self._run("BEGIN") as cur:
            yield cur

    @contextmanager
    def _run(self, begin: str) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(begin)
            try:
                yield SQLiteCursor(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    @contextmanager
    def attached(self, paths: Sequence[str]) -> Iterator[list[str]]:
        """Other database files, readable in this connection's transactions under the schema
        names returned (SQLite refuses ATTACH inside a transaction)."""
        names = [f"attached{i}" for i in range(len(paths))]
        with self._lock:
            for name, path in zip(names, paths, strict=True):
                self._conn.execute(f"ATTACH DATABASE ? AS {name}", [path])
            try:
                yield names
            finally:
                for name in names:
                    self._conn.execute(f"DETACH DATABASE {name}")

    def close(self) -> None:
        self._conn.close()


# Decimals go in as exact text, which SQLite keeps as written (TEXT columns). The adapter is
# sqlite3's own hook, run in C for each Decimal parameter: cheaper than converting in Python.
sqlite3.register_adapter(Decimal, str)


def _upsert(table: str, columns: Sequence[str], conflict: Sequence[str]) -> str:
    if not conflict:
        return ""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in conflict)
    return f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates}"


def _insert_sql(table: str, columns: Sequence[str], conflict: Sequence[str], mark: str) -> str:
    marks = ",".join([mark] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})" + _upsert(
        table, columns, conflict
    )


def _delete_sql(table: str, key: Sequence[str], mark: str) -> str:
    return f"DELETE FROM {table} WHERE " + " AND ".join(f"{c} = {mark}" for c in key)


def _update_sql(table: str, columns: Sequence[str], key: Sequence[str], mark: str) -> str:
    sets = ", ".join(f"{c} = {mark}" for c in columns)
    return f"UPDATE {table} SET {sets} WHERE " + " AND ".join(f"{c} = {mark}" for c in key)


class SQLiteCursor:
    """In process, so `executemany` costs no round trips: it is SQLite's bulk path."""

    CHUNK = 500  # keys per IN (...), far below SQLite's parameter limit

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def select_in(
        self, sql: str, column: str, keys: Sequence[Any], pg_type: str = "text"
    ) -> list[Any]:
        found: list[Any] = []
        for i in range(0, len(keys), self.CHUNK):
            chunk = keys[i : i + self.CHUNK]
            self._cur.execute(f"{sql} WHERE {column} IN ({','.join('?' * len(chunk))})", chunk)
            found += self._cur.fetchall()
        return found

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        pg_types: Sequence[str],
        rows: Sequence[Sequence[Any]],
        conflict: Sequence[str] = (),
    ) -> None:
        self._cur.executemany(_insert_sql(table, columns, conflict, "?"), rows)

    def delete_rows(
        self,
        table: str,
        key: Sequence[str],
        pg_types: Sequence[str],
        keys: Sequence[Sequence[Any]],
    ) -> None:
        self._cur.executemany(_delete_sql(table, key, "?"), keys)

    def update_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        pg_types: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        self._cur.executemany(_update_sql(table, columns, key, "?"), rows)

    def advance(self, names: Sequence[str], behind: int, last: int) -> None:
        self._cur.execute(
            f"UPDATE escrow_tracking SET position = ? WHERE position = ? AND name IN "
            f"({','.join('?' * len(names))}) RETURNING name",
            [last, behind, *names],
        )
        if len(self._cur.fetchall()) != len(names):
            raise NotRightBehind

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._cur.executemany(sql, rows)

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def fetchone(self) -> Any:
        return self._cur.fetchone()


class PostgresReadStore(ReadStore):
    dialect = "postgresql"
    decimal = "NUMERIC"
    clustered = ""

    def __init__(self, conninfo: str, schema: str | None) -> None:
        """`conninfo` carries every libpq parameter of the store URL; the options given there
        are kept, ours added after them, and its connect_timeout bounds the wait for a
        connection from the pool too (psycopg_pool's own default is 30 s)."""
        self.conninfo = conninfo
        self.schema = schema
        given = conninfo_to_dict(conninfo)
        options = "-c synchronous_commit=off"
        if schema:
            options += f" -c search_path={schema}"
        if given.get("options"):
            options = f"{given['options']} {options}"
        self.options = options
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=4,
            open=True,
            kwargs={"options": options},
            timeout=float(given.get("connect_timeout") or CONNECT_TIMEOUT),
        )

    def recover(self) -> None:
        self._pool.check()

    def creating(self, cur: Cursor) -> None:
        """Concurrent `CREATE TABLE IF NOT EXISTS` fail on PostgreSQL (escrow.pg_recorder)."""
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext(?))", [CREATING + (self.schema or "public")]
        )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield _PostgresCursor(cur)

    @contextmanager
    def pipelined(self) -> Iterator[Any]:
        try:
            with (
                self._pool.connection() as conn,
                conn.pipeline(),
                conn.transaction(),
                conn.cursor() as cur,
            ):
                yield _PostgresCursor(cur)
        except psycopg.errors.DivisionByZero as e:  # the only division: `advance` failing
            raise NotRightBehind from e

    def close(self) -> None:
        self._pool.close()


FEW = 8  # up to this many rows, a plain statement per row (what one command writes)
SEP, NULL = "\x1f", "\x1e"  # unit and record separators (control characters)


def _arrays(pg_types: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """One array per column for `unnest`, as SQL (comma-separated) and its parameters.

    A column goes as one text joined with SEP (NULL marks None) that the server splits with
    `string_to_array`: joining and `str` run in C, where an array parameter costs psycopg a
    Python call per value (about a tenth of a PostgreSQL rebuild); Decimals go as their exact
    text. A text column holding SEP, or NULL as a value, goes as a binary array instead."""
    sql: list[str] = []
    params: list[Any] = []
    for pg_type, column in zip(pg_types, zip(*rows, strict=True), strict=True):
        if pg_type != "text":
            joined = SEP.join([NULL if v is None else str(v) for v in column])
        elif None in column:
            joined = SEP.join([NULL if v is None else v for v in column])
        else:
            joined = SEP.join(column)
        if pg_type == "text" and (
            not joined or joined.count(SEP) != len(column) - 1 or NULL in column
        ):
            sql.append(f"%b::{pg_type}[]")  # binary: no quoting
            params.append(list(column))
            continue
        sql.append(f"string_to_array(%s, E'\\x1f', E'\\x1e')::{pg_type}[]")
        params.append(joined)
    return ", ".join(sql), params


class _PostgresCursor:
    """`?` becomes `%s`. Bulk writes send one statement per table and batch, the rows as one
    array per column (`unnest`): the server then inserts them in one pass, several times
    faster than `executemany`'s one execution per row. A handful of rows (one command's) go
    as plain prepared statements instead: building the arrays costs the client more than the
    server saves, and in pipeline mode the statements share one round trip anyway."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def select_in(
        self, sql: str, column: str, keys: Sequence[Any], pg_type: str = "text"
    ) -> list[Any]:
        if not keys:
            return []
        self._cur.execute(f"{sql} WHERE {column} = ANY(%s::{pg_type}[])", [list(keys)])
        return list(self._cur.fetchall())

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        pg_types: Sequence[str],
        rows: Sequence[Sequence[Any]],
        conflict: Sequence[str] = (),
    ) -> None:
        if not rows:
            return
        if len(rows) <= FEW:
            self._cur.executemany(_insert_sql(table, columns, conflict, "%s"), rows)
            return
        arrays, params = _arrays(pg_types, rows)
        self._cur.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
            + _upsert(table, columns, conflict),
            params,
        )

    def delete_rows(
        self,
        table: str,
        key: Sequence[str],
        pg_types: Sequence[str],
        keys: Sequence[Sequence[Any]],
    ) -> None:
        if not keys:
            return
        if len(keys) <= FEW:
            self._cur.executemany(_delete_sql(table, key, "%s"), keys)
            return
        arrays, params = _arrays(pg_types, keys)
        match = " AND ".join(f"t.{c} = d.{c}" for c in key)
        self._cur.execute(
            f"DELETE FROM {table} AS t USING unnest({arrays}) AS d ({', '.join(key)}) "
            f"WHERE {match}",
            params,
        )

    def update_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        pg_types: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        if not rows:
            return
        if len(rows) <= FEW:
            self._cur.executemany(_update_sql(table, columns, key, "%s"), rows)
            return
        names = [*(f"v_{c}" for c in columns), *(f"k_{c}" for c in key)]
        arrays, params = _arrays(pg_types, rows)
        sets = ", ".join(f"{c} = d.v_{c}" for c in columns)
        where = " AND ".join(f"t.{c} = d.k_{c}" for c in key)
        self._cur.execute(
            f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS d ({', '.join(names)}) "
            f"WHERE {where}",
            params,
        )

    def advance(self, names: Sequence[str], behind: int, last: int) -> None:
        # Failing by a division by zero inside the statement, not by checking the reply,
        # lets a pipelined transaction send its statements and COMMIT in one round trip.
        self._cur.execute(
            "WITH moved AS (UPDATE escrow_tracking SET position = %s WHERE position = %s "
            "AND name = ANY(%s) RETURNING 1) "
            "SELECT 1 / (CASE WHEN count(*) = %s THEN 1 ELSE 0 END) FROM moved",
            [last, behind, list(names), len(names)],
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql.replace("?", "%s"), list(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._cur.executemany(sql.replace("?", "%s"), [list(r) for r in rows])

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    def fetchone(self) -> Any:
        return self._cur.fetchone()
