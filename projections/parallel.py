"""A rebuild in several processes at once, each replaying every read model over its share of
the streams.

A rebuild is bound by this process's CPU: reading and decoding the log, then each model's
Python. Read models keep their rows by stream (an order's row, its ledger lines, an appeal's
queue entry, a trader's sanctions), except for a few tables of sums over many streams (a
trader's counters, an asset's totals: `Rows.summed`). So the streams are split into as many
shares as there are cores (by the last hex digit of their id, `EventLog.pages(part=...)`),
and each process (this one included) reads, decodes and projects only its own share's
events, up to the same last id: rows by stream come out of exactly one share, and a table of
sums is the sum of the shares' tables.

Each process replays into a scratch store of its own: a SQLite file (without a journal: a
crash only loses it; its tables not clustered by their random keys, see `SQLiteReadStore`;
the processes' page caches sharing half the memory of the store's, which keeps the process
tree within the 300 MB a rebuild may take), or a PostgreSQL schema. This process then
replaces the store's tables in one transaction: rows by stream copied from every share in
key order (each primary-key b-tree built by appending), tables of sums added up row by row,
indexes created, positions set to that last id. Until that commit the store keeps its old
tables, and a process that fails leaves it as it was.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import psycopg

from escrow.projections.base import Projector, ReadModel, Share, recreate
from escrow.projections.readstore import (
    CACHE_KB,
    Cursor,
    PostgresReadStore,
    ReadStore,
    SQLiteCursor,
    SQLiteReadStore,
)
from escrow.projections.rows import EXACT, Rows

# Events in the log from which a rebuild is parallel: starting a process (imports, connections)
# takes about a second, which a short log does not repay.
PARALLEL_FROM = 50_000


class ShareFailed(RuntimeError):
    """A share of the rebuild failed (its error or traceback in the message): the store
    keeps its tables as they were."""


@dataclass(frozen=True)
class _Job:
    """What a process needs to replay its share (sent to it pickled)."""

    app_type: type[Any]
    env: dict[str, str]
    models: list[ReadModel]
    batch: int
    share: Share
    scratch: str  # SQLite: the file to replay into; PostgreSQL: the schema
    conninfo: str | None  # PostgreSQL: the store's server


def worth_it(projector: Projector, chosen: Sequence[ReadModel]) -> bool:
    store = projector.store
    if (os.cpu_count() or 1) < 2:
        return False
    if isinstance(store, SQLiteReadStore) and store.path == ":memory:":
        return False  # the events and the tables live in this process only
    return int(projector.app.recorder.max_notification_id() or 0) >= PARALLEL_FROM


def rebuild(
    projector: Projector,
    chosen: Sequence[ReadModel],
    progress: Callable[[int], None] | None = None,
) -> int:
    """`Projector.rebuild` of `chosen`, a share of the streams per process; returns how many
    events were replayed (every one up to the last id, each in one process)."""
    upto = projector.settled()
    parts = os.cpu_count() or 1
    with _scratch(projector.store, parts) as (places, conninfo):
        jobs = [
            _Job(
                type(projector.app),
                {**projector.app.env, "CREATE_TABLE": "no"},  # the store's tables exist
                list(chosen),
                projector.batch,
                Share(k, parts, upto),
                place,
                conninfo,
            )
            for k, place in enumerate(places)
        ]
        read = _run(jobs, progress)
        _merge(projector, chosen, places, upto)
    return read


@contextmanager
def _scratch(store: ReadStore, parts: int) -> Iterator[tuple[list[str], str | None]]:
    """Where each process replays: files beside a SQLite store, schemas in a PostgreSQL one
    (with the server to reach them); removed afterwards."""
    if isinstance(store, SQLiteReadStore):
        folder = Path(store.path).parent
        with tempfile.TemporaryDirectory(prefix=".escrow-rebuild-", dir=folder) as scratch:
            yield [f"{scratch}/{k}.db" for k in range(parts)], None
        return
    assert isinstance(store, PostgresReadStore)
    token = uuid.uuid4().hex[:8]
    names = [f"escrow_rebuild_{token}_{k}" for k in range(parts)]
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE SCHEMA {name}")
        try:
            yield names, store.conninfo
        finally:
            for name in names:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _run(jobs: list[_Job], progress: Callable[[int], None] | None) -> int:
    """Replay the first job in this process and each other one in a process of its own,
    reporting the events they replay as they go; returns how many they replayed together.

    This process takes a share itself rather than wait idle: one interpreter fewer to start
    and to hold in memory. The others are new interpreters (`python -c`), not
    `multiprocessing` ones: those would import the caller's main module again, which a
    script without a main guard does not survive."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes: list[subprocess.Popen[bytes]] = []
    pending: dict[Connection[Any, Any], int] = {}  # reply pipe -> its share, until done
    read = 0

    def count(events: int) -> None:
        nonlocal read
        read += events
        if progress is not None:
            progress(events)

    def collect(timeout: float | None) -> None:
        for ready in wait(list(pending), timeout):
            assert isinstance(ready, Connection)
            i = pending[ready]
            try:
                message = ready.recv()
            except EOFError:
                raise ShareFailed(f"rebuild of part {i} of the streams died") from None
            if isinstance(message, int):
                count(message)
            elif message is None:
                del pending[ready]
                ready.close()
            else:
                raise ShareFailed(f"rebuild of part {i} of the streams failed:\n{message}")

    def here(events: int) -> None:
        """This process's progress, page by page: the others' news is read in between."""
        count(events)
        collect(0)

    try:
        for i, job in enumerate(jobs[1:], start=1):
            process = subprocess.Popen(
                [sys.executable, "-c", "from escrow.projections.parallel import child; child()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            processes.append(process)
            assert process.stdin is not None and process.stdout is not None
            pickle.dump(job, process.stdin)
            process.stdin.close()
            pending[Connection(os.dup(process.stdout.fileno()), writable=False)] = i
            process.stdout.close()
        try:  # through pickle, as the others get theirs: models of its own, holding no rows
            _replay(pickle.loads(pickle.dumps(jobs[0])), here)
        except ShareFailed:
            raise  # another share's, read in between this one's pages
        except Exception as error:  # as another share's would show, whichever fails first
            raise ShareFailed(f"rebuild of part 0 of the streams failed: {error!r}") from error
        while pending:
            collect(None)
    finally:
        for process in processes:
            if pending:
                process.kill()
            process.wait()
        for reply in pending:
            reply.close()
    return read


def child() -> None:
    """In a process of its own: replay the share pickled on stdin into its scratch store,
    sending progress (ints) then None on stdout, or the traceback (a str) if it fails."""
    out = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # the replies' pipe carries nothing else
    try:
        _replay(pickle.load(sys.stdin.buffer), out.send)
        out.send(None)
    except BaseException:
        out.send(traceback.format_exc())
        raise


def _replay(job: _Job, progress: Callable[[int], None]) -> None:
    """Replay `job`'s share of the log into its scratch store."""
    app = job.app_type(env=job.env)
    store: ReadStore = (
        SQLiteReadStore(job.scratch, CACHE_KB // (2 * job.share.n), scratch=True)
        if job.conninfo is None
        else PostgresReadStore(job.conninfo, job.scratch)
    )
    try:
        projector = Projector(app, store, job.models, batch=job.batch, share=job.share)
        with _rare_collections():
            projector.replay(job.models, progress, index=False)
    finally:
        store.close()
        app.close()


@contextmanager
def _rare_collections() -> Iterator[None]:
    """A replay makes objects for every event and frees nearly all of them by reference
    counting; at the collector's default thresholds the cyclic collector would also walk
    the modules and held rows again and again (10% of a replay). Objects that exist before
    are set aside, and collections are made rare, until the replay ends."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def _visible(store: ReadStore, places: list[str]) -> Iterator[list[str]]:
    """The scratch stores as schemas of the store's connection (SQLite: attached files)."""
    if isinstance(store, SQLiteReadStore):
        with store.attached(places) as names:
            yield names
    else:
        yield places


def _merge(projector: Projector, chosen: Sequence[ReadModel], places: list[str], upto: int) -> None:
    """Replace the store's tables of `chosen` by the parts' in one transaction."""
    store = projector.store
    with _visible(store, places) as scratch, store.transaction() as cur:
        # Unqualified names are the store's: it has every table (the Projector made them).
        projector.positions(cur)  # wait for (and block) any other projector of these models
        for model in chosen:
            recreate(cur, store, model)
            sums = {rows.table: rows for rows in model.held() if rows.summed}
            for table in model.tables:
                if table in sums:
                    _add_up(cur, sums[table], scratch)
                    continue
                # In key order: the primary key's b-tree is built by appending.
                parts = " UNION ALL ".join(f"SELECT * FROM {s}.{table}" for s in scratch)
                cur.execute(f"INSERT INTO {table} {parts} ORDER BY {', '.join(_key(cur, table))}")
            for statement in model.indexes(store):
                cur.execute(statement)
            cur.execute(
                "UPDATE escrow_tracking SET position = ? WHERE name = ?", [upto, model.name]
            )


def _add_up(cur: Cursor, rows: Rows, scratch: list[str]) -> None:
    """Write the sums of the parts' rows of a table of sums, key by key (exact decimals)."""
    totals: dict[Any, dict[str, Any]] = {}
    for schema in scratch:
        cur.execute(f"SELECT {', '.join(rows.columns)} FROM {schema}.{rows.table}")
        for values in cur.fetchall():
            row = rows.decode(values)
            key = tuple(row[c] for c in rows.key)
            total = totals.get(key)
            if total is None:
                totals[key] = row
                continue
            for column in rows.summed:
                if isinstance(total[column], Decimal):
                    total[column] = EXACT.add(total[column], row[column])
                else:
                    total[column] += row[column]
    ordered = [tuple(totals[key][c] for c in rows.columns) for key in sorted(totals)]
    if ordered:
        cur.insert_rows(rows.table, rows.columns, rows.pg_types, ordered)


def _key(cur: Cursor, table: str) -> list[str]:
    """The primary-key columns of the store's `table`, in key order."""
    if isinstance(cur, SQLiteCursor):
        cur.execute(f"PRAGMA main.table_info({table})")
        return [name for _, name, *_, pk in sorted(cur.fetchall(), key=lambda c: c[-1]) if pk]
    cur.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = ?::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)",
        [table],
    )
    return [name for (name,) in cur.fetchall()]
