"""Store faults as the engine's own errors (escrow.errors.StoreError and its kinds).

Two halves. `probe` looks at a store before the library opens it, so that a fault is named
before anything is created: a mistyped path, a file of another program, a server that does not
answer (within the URL's `connect_timeout`), a schema without the escrow tables when the caller
only reads. `translate` turns whatever the drivers raise later (sqlite3, psycopg, psycopg_pool,
eventsourcing's persistence errors wrapping them) into the same errors, so no caller ever has to
catch a driver's exception, and no message carries a password.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg import errors as pg
from psycopg_pool import PoolTimeout

from escrow.errors import (
    EscrowError,
    NotAnEscrowStore,
    StoreConnectionLost,
    StoreError,
    StoreNotFound,
    StoreUnreachable,
    StoreUnwritable,
)
from escrow.store import StoreConfig, mask

# eventsourcing's table of the application's events: SQLite's has a fixed name, PostgreSQL's
# is named after the application (EscrowApplication.name).
EVENTS_TABLE = {"sqlite": "stored_events", "postgresql": "escrow_events"}
EVENTS_COLUMNS = frozenset({"originator_id", "originator_version", "topic", "state"})


def probe(config: StoreConfig, *, create: bool) -> None:
    """Raise the StoreError that opening `config` would end in, before anything is created.
    `create`: whether a store that does not exist yet may be made (False: only reading)."""
    if config.backend == "sqlite":
        _probe_sqlite(Path(config.sqlite_path or ""), create)
    elif config.backend == "postgresql":
        _probe_postgres(config, create)


def _probe_sqlite(path: Path, create: bool) -> None:
    if path.is_dir():
        raise NotAnEscrowStore(f"{path} is a folder, not a SQLite file")
    if not path.exists():
        if not create:
            raise StoreNotFound(f"no store at {path}: no such file (nothing was created)")
        if not path.parent.is_dir():
            raise StoreUnwritable(f"cannot create the SQLite file {path}: no folder {path.parent}")
        return
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            info = conn.execute(f"PRAGMA table_info({EVENTS_TABLE['sqlite']})")
            columns = {r[1] for r in info}
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise NotAnEscrowStore(f"{path} is not a SQLite database") from None
        raise StoreUnreachable(f"cannot read the SQLite file {path}: {e}") from None
    table = EVENTS_TABLE["sqlite"]
    others = [t for t in tables if t != table]
    _check_tables(str(path), table in tables, columns, others, create)


def _check_tables(
    where: str, has_events: bool, columns: set[str], others: list[str], create: bool
) -> None:
    """A store holds the events table of the right shape, or nothing yet. `others`: tables
    that would make a store without the events table another program's database (a SQLite
    file is one application's; a PostgreSQL schema is often shared, so none are passed)."""
    if has_events:
        if not columns >= EVENTS_COLUMNS:
            raise NotAnEscrowStore(
                f"{where} has a table of events of another shape: not an escrow store"
            )
        return
    if others:
        shown = ", ".join(sorted(others)[:5])
        raise NotAnEscrowStore(
            f"{where} is a database of another program (tables {shown}): not an escrow store"
        )
    if not create:
        raise StoreNotFound(f"no store in {where}: it holds no escrow tables (nothing was created)")


def _probe_postgres(config: StoreConfig, create: bool) -> None:
    schema = config.postgres_schema or "public"
    try:
        with psycopg.connect(config.postgres_conninfo or "", autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
            if found.fetchone() is None:
                raise StoreNotFound(
                    f"no schema {schema} in {config.shown}: create it first (CREATE SCHEMA {schema})"
                )
            rows = conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                [schema, EVENTS_TABLE["postgresql"]],
            ).fetchall()
    except psycopg.Error as e:
        raise StoreUnreachable(f"cannot connect to {config.shown}: {_one_line(e)}") from None
    where = f"schema {schema} of {config.shown}"
    _check_tables(where, bool(rows), {r[1] for r in rows}, [], create)


def translate(
    config: StoreConfig, error: BaseException, opening: bool = False
) -> StoreError | None:
    """The StoreError a driver's exception means, or None when it is not a store fault.
    `opening`: no command has run yet, so a broken connection means an unreachable store."""
    if isinstance(error, EscrowError):
        return None
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 5:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if not any(isinstance(e, PersistenceError | sqlite3.Error | psycopg.Error) for e in chain):
        return None
    shown = config.shown
    text = _one_line(error)
    for e in chain:
        if isinstance(e, PoolTimeout):
            return StoreUnreachable(
                f"no connection to {shown} within {config.connect_timeout} s "
                "(server down, or every connection busy)"
            )
        if isinstance(e, pg.InsufficientPrivilege | pg.ReadOnlySqlTransaction):
            return StoreUnwritable(f"the store {shown} refuses to be written: {_one_line(e)}")
        if isinstance(e, pg.UndefinedTable | pg.UndefinedColumn | pg.InvalidSchemaName):
            return NotAnEscrowStore(f"the store {shown} lacks the escrow tables: {_one_line(e)}")
        if isinstance(e, pg.DiskFull):
            return StoreUnwritable(f"the store {shown} is full: {_one_line(e)}")
        if isinstance(e, psycopg.OperationalError | psycopg.InterfaceError) and opening:
            return StoreUnreachable(f"cannot connect to {shown}: {_one_line(e)}")
        if isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreConnectionLost(
                f"lost the connection to {shown}: {_one_line(e)}; nothing is half-written (a "
                "command is recorded whole or not at all): send it again with the same "
                "command_id to learn which"
            )
    lowered = text.lower()
    for words, kind, what in _SQLITE:
        if any(w in lowered for w in words):
            return kind(f"{what} {shown}: {text}")
    return StoreError(f"the store {shown} failed: {text}")


_SQLITE: tuple[tuple[tuple[str, ...], type[StoreError], str], ...] = (
    (("unable to open",), StoreUnwritable, "cannot open or create the SQLite file of"),
    (("not a database",), NotAnEscrowStore, "not a SQLite database:"),
    (("readonly", "read-only", "disk is full", "disk i/o"), StoreUnwritable, "cannot write to"),
    (("database is locked",), StoreUnreachable, "locked by another process:"),
    (
        ("no such table", "no such column", "has no column"),
        NotAnEscrowStore,
        "not an escrow store:",
    ),
)


@contextmanager
def store_faults(config: StoreConfig, opening: bool = False) -> Iterator[None]:
    """Inside, a driver's exception comes out as the StoreError it means."""
    try:
        yield
    except Exception as e:
        fault = translate(config, e, opening)
        if fault is None:
            raise
        raise fault from e


def _one_line(error: BaseException) -> str:
    """The driver's message on one line (libpq puts its reason on the next), masked."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return mask(text[:500]) if text else type(error).__name__
