"""A rebuild in several processes at once, one group of read models each.

Read models are independent (each has its own tables and tracking position), and a rebuild is
bound by this process's CPU: reading and decoding the log, then each model's Python. Groups of
models of about equal cost (`ReadModel.cost`) are therefore replayed side by side, one process
per core, each reading and decoding the whole log for its own group.

SQLite has one writer at a time per file, and a commit by one connection empties the page
cache of every other one; so each process replays into a scratch file of its own (without a
journal: a crash only loses it; its tables not clustered by their random keys, see
`SQLiteReadStore`; the processes' page caches sharing the memory of one, which keeps them
together within the 300 MB a rebuild may take). This process then copies the tables into the
store in one transaction, in key order (each b-tree is built by appending), creates the
indexes and sets the positions the processes reached; until that commit the store keeps its
old tables. PostgreSQL takes concurrent writers to different tables: each process rebuilds
its group in place, exactly as `Projector.replay` does in one process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from projections.base import Projector, ReadModel, recreate
from projections.readstore import (
    CACHE_KB,
    Cursor,
    PostgresReadStore,
    ReadStore,
    SQLiteReadStore,
)

# Events in the log from which a rebuild is parallel: starting a process (imports, connections)
# takes about a second, which a short log does not repay.
PARALLEL_FROM = 50_000


@dataclass(frozen=True)
class _Job:
    """What a process needs to replay one group (sent to it pickled)."""

    app_type: type[Any]
    env: dict[str, str]
    models: list[ReadModel]
    batch: int
    scratch: str | None  # SQLite: the file to replay into
    share: int  # how many processes share the memory of one store's SQLite page cache
    conninfo: str | None  # PostgreSQL: the store itself
    schema: str | None


@dataclass(frozen=True)
class _Done:
    read: int
    positions: dict[str, int]


def worth_it(projector: Projector, chosen: Sequence[ReadModel]) -> bool:
    store = projector.store
    if len(chosen) < 2 or (os.cpu_count() or 1) < 2:
        return False
    if isinstance(store, SQLiteReadStore) and store.path == ":memory:":
        return False  # the events and the tables live in this process only
    return int(projector.app.recorder.max_notification_id() or 0) >= PARALLEL_FROM


def groups(models: Sequence[ReadModel], count: int) -> list[list[ReadModel]]:
    """`models` in at most `count` groups of about equal cost, each in the given order."""
    bins: list[list[ReadModel]] = [[] for _ in range(count)]
    loads = [0] * count
    for model in sorted(models, key=lambda m: -m.cost):
        lightest = loads.index(min(loads))
        bins[lightest].append(model)
        loads[lightest] += model.cost
    order = {id(m): i for i, m in enumerate(models)}
    return [sorted(group, key=lambda m: order[id(m)]) for group in bins if group]


def rebuild(
    projector: Projector,
    chosen: Sequence[ReadModel],
    progress: Callable[[int], None] | None = None,
) -> int:
    """`Projector.rebuild` of `chosen`, a group per process; returns how many notifications
    every model has been replayed through."""
    store = projector.store
    parts = groups(chosen, min(os.cpu_count() or 1, len(chosen)))
    if isinstance(store, SQLiteReadStore):
        folder = Path(store.path).parent
        with tempfile.TemporaryDirectory(prefix=".escrow-rebuild-", dir=folder) as scratch:
            jobs = _jobs(projector, parts, [f"{scratch}/{i}.db" for i in range(len(parts))])
            results = _run(jobs, progress)
            _swap(projector, store, jobs, results)
    else:
        results = _run(_jobs(projector, parts, [None] * len(parts)), progress)
    return min(r.read for r in results)


def _jobs(
    projector: Projector, parts: list[list[ReadModel]], scratch: list[str | None]
) -> list[_Job]:
    store = projector.store
    postgres = store if isinstance(store, PostgresReadStore) else None
    env = {**projector.app.env, "CREATE_TABLE": "no"}  # the store's tables exist
    return [
        _Job(
            type(projector.app),
            env,
            part,
            projector.batch,
            file,
            len(parts),
            postgres.conninfo if postgres else None,
            postgres.schema if postgres else None,
        )
        for part, file in zip(parts, scratch, strict=True)
    ]


def _run(jobs: list[_Job], progress: Callable[[int], None] | None) -> list[_Done]:
    """Run the jobs in processes of their own; report the notifications all have read.

    The processes are new interpreters (`python -c`), not `multiprocessing` ones: those
    would import the caller's main module again, which a script without a main guard does
    not survive."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes: list[subprocess.Popen[bytes]] = []
    replies: list[Connection[Any, Any]] = []
    read = [0] * len(jobs)
    reported = 0
    results: list[_Done | None] = [None] * len(jobs)
    pending: dict[int, Connection[Any, Any]] = {}
    try:
        for i, job in enumerate(jobs):
            process = subprocess.Popen(
                [sys.executable, "-c", "from projections.parallel import child; child()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            processes.append(process)
            assert process.stdin is not None and process.stdout is not None
            pickle.dump(job, process.stdin)
            process.stdin.close()
            pending[i] = Connection(os.dup(process.stdout.fileno()), writable=False)
            replies.append(pending[i])
            process.stdout.close()
        while pending:
            for ready in wait(list(pending.values())):
                i = replies.index(ready)  # type: ignore[arg-type]
                try:
                    message = replies[i].recv()
                except EOFError:
                    raise RuntimeError(f"rebuild of {_names(jobs[i])} died") from None
                if isinstance(message, int):
                    read[i] += message
                elif isinstance(message, _Done):
                    results[i] = message
                    del pending[i]
                else:
                    raise RuntimeError(f"rebuild of {_names(jobs[i])} failed:\n{message}")
            if progress is not None and min(read) > reported:
                progress(min(read) - reported)
                reported = min(read)
    finally:
        for process in processes:
            if pending:
                process.kill()
            process.wait()
        for reply in replies:
            reply.close()
    return [r for r in results if r is not None]


def _names(job: _Job) -> str:
    return ", ".join(m.name for m in job.models)


def child() -> None:
    """In a process of its own: replay the group pickled on stdin, sending progress (ints)
    then a `_Done` on stdout, or the traceback (a str) if it fails."""
    out = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # the replies' pipe carries nothing else
    send = out.send

    try:
        job: _Job = pickle.load(sys.stdin.buffer)
        app = job.app_type(env=job.env)
        store: ReadStore = (
            SQLiteReadStore(job.scratch, CACHE_KB // job.share, scratch=True)
            if job.scratch is not None
            else PostgresReadStore(str(job.conninfo), job.schema)
        )
        projector = Projector(app, store, job.models, batch=job.batch)
        read = projector.replay(job.models, send, index=job.scratch is None)
        send(_Done(read, projector.status()[0]))
        store.close()
        app.close()
    except BaseException:
        send(traceback.format_exc())
        raise


def _swap(
    projector: Projector, store: SQLiteReadStore, jobs: list[_Job], results: list[_Done]
) -> None:
    """Replace the store's tables by the scratch files' in one transaction."""
    scratch = [str(job.scratch) for job in jobs]
    with store.attached(scratch) as schemas, store.transaction() as cur:
        # Unqualified names are the store's: it has every table (the Projector made them).
        projector.positions(cur)  # wait for (and block) any other projector of these models
        for schema, job, done in zip(schemas, jobs, results, strict=True):
            for model in job.models:
                recreate(cur, store, model)
                for table in model.tables:
                    cur.execute(
                        f"INSERT INTO main.{table} SELECT * FROM {schema}.{table} "
                        f"ORDER BY {', '.join(_key(cur, table))}"
                    )
                for statement in model.indexes(store):
                    cur.execute(statement)
                cur.execute(
                    "UPDATE escrow_tracking SET position = ? WHERE name = ?",
                    [done.positions[model.name], model.name],
                )


def _key(cur: Cursor, table: str) -> list[str]:
    """The primary-key columns of the store's `table`, in key order."""
    cur.execute(f"PRAGMA main.table_info({table})")
    return [name for _, name, *_, pk in sorted(cur.fetchall(), key=lambda c: c[-1]) if pk]
