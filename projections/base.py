"""Following the event log: each read model records its position in the same transaction as
its rows, so every event is counted exactly once, a crash resumes where it stopped, and a
read model can be rebuilt from the first event.

Reading the log safely on PostgreSQL, where a writer can commit id 12 while id 11 is still in
flight: the projector never steps over a hole in the ids until it knows the hole is final
(`EventLog.following`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import TopicError, resolve_topic

from escrow.log import EventLog, Row
from escrow.projections.readstore import Cursor, NotRightBehind, ReadStore, SQLiteCursor
from escrow.projections.rows import Rows

H = TypeVar("H")
# Batches per transaction in a rebuild: read-model keys are random stream ids, so every commit
# writes back most pages of every table; fewer, larger commits write them back less often.
REBUILD_PAGES = 4

TRACKING_DDL = (
    "CREATE TABLE IF NOT EXISTS escrow_tracking (name TEXT PRIMARY KEY, position BIGINT NOT NULL)"
)
# The schema version of each read model's tables, as the code that built them had it.
VERSIONS_DDL = "CREATE TABLE IF NOT EXISTS escrow_read_models (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
UNVERSIONED = 1  # what a model's tables are taken to be when a store has no row for it

log = logging.getLogger("escrow.projections")


Item = tuple[str, Any]  # (stream id as text, event): the text is made once per event


class ReadModel(ABC):
    """A read model: tables kept from the events it `reads`.

    Every row is built from the events of one stream, except for the columns its `Rows`
    name `summed` (counters and totals over many streams): a rebuild replays shares of the
    streams in separate processes and adds those columns up (`escrow.projections.parallel`)."""

    name: str
    tables: tuple[str, ...]
    # The schema version of its tables and of what `project` writes in them: bumped whenever
    # either changes (a column, a table, the meaning of a value), so that every store's copy
    # is rebuilt from the log the next time a process opens it (`Projector.__init__`).
    version: int = 1
    # The event classes the model reads (subclasses included); others never reach `project`.
    reads: tuple[type, ...] = ()

    @abstractmethod
    def ddl(self, store: ReadStore) -> list[str]:
        """CREATE TABLE statements for this model (idempotent)."""

    def indexes(self, store: ReadStore) -> list[str]:
        """CREATE INDEX statements (idempotent); a rebuild creates them after the replay,
        which is much faster than maintaining them row by row."""
        return []

    @abstractmethod
    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        """Apply events in log order inside the caller's transaction (to held rows, which
        `flush` writes)."""

    def flush(self, cur: Cursor) -> None:
        """Write what `project` changed, once per transaction: a row that several batches of
        one transaction change (a trader's counters) is written once, not once a batch."""
        for rows in self.held():
            rows.flush(cur)

    def forget(self) -> None:
        """Drop what the model holds between batches (`escrow.projections.rows`): its tables may
        have changed behind its back, or its last transaction rolled back."""
        for rows in self.held():
            rows.forget()

    def held(self) -> tuple[Rows, ...]:
        return ()


class Inside:
    """See `Projector.inside`."""

    def __init__(self, projector: Projector, events: Sequence[DomainEventProtocol[Any]]) -> None:
        self.projector = projector
        self.events = events
        self.locked = False
        self.applied = False
        self.last = 0

    def __call__(self, cursor: sqlite3.Cursor, ids: Sequence[int]) -> None:
        p, events = self.projector, self.events
        if self.applied:  # a recorder retrying its transaction: that attempt's rows are gone
            p._forget()
            self.applied = False
        if len(ids) != len(events) or ids[-1] - ids[0] + 1 != len(ids):
            return
        if not self.locked:
            self.locked = p._lock.acquire(blocking=False)
            if not self.locked:
                return  # another thread is projecting; it may be waiting for this transaction
        names, behind, last = p.names, ids[0] - 1, ids[-1]
        cursor.execute("SAVEPOINT escrow_read_models")
        try:
            p._trust(behind)
            cur = SQLiteCursor(cursor)
            p._dispatch(cur, numbered(events, ids[0]), dict.fromkeys(names, behind))
            p._flush(cur)
            cur.advance(names, behind, last)
        except Exception:
            cursor.execute("ROLLBACK TO escrow_read_models")
            cursor.execute("RELEASE escrow_read_models")
            p._forget()
            return
        cursor.execute("RELEASE escrow_read_models")
        self.applied, self.last = True, last


class Handlers(dict[type, H | None]):
    """Event type -> handler (None: the type has none), resolved along the event class's MRO
    on a type's first lookup; later lookups are a plain dict's (`handlers[type(event)]`)."""

    def __init__(self, table: dict[type, H]) -> None:
        super().__init__()
        self._table = table

    def __missing__(self, event_type: type) -> H | None:
        found = next((self._table[c] for c in event_type.__mro__ if c in self._table), None)
        self[event_type] = found
        return found


@dataclass(frozen=True)
class Share:
    """A partitioned rebuild's share of the log (`escrow.projections.parallel`): the streams of
    part `k` of `n`, up to id `upto` (below which no hole can still fill)."""

    k: int
    n: int
    upto: int


class Projector:
    """Runs read models over an application's notification log, pulling new events."""

    def __init__(
        self,
        app: Application[Any],
        store: ReadStore,
        models: Sequence[ReadModel],
        batch: int = 1000,
        share: Share | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.models = list(models)
        self.batch = batch
        self.share = share
        self.log = EventLog(app.recorder)
        self._decode = self.log.decoder(app.mapper)
        self._lock = threading.RLock()
        self._read = tuple(c for m in self.models for c in m.reads)
        self._wanted: dict[str, bool] = {}  # stored topic -> does any model read it?
        self._routes: dict[type, tuple[int, ...]] = {}  # event type -> models that read it
        # The position every model was at when this projector last committed: while the
        # tracking rows still say so, nobody else wrote the tables, and the rows the models
        # hold are the tables' rows (escrow.projections.rows). None: not known.
        self._held_at: int | None = None
        with store.transaction() as cur:
            store.creating(cur)
            cur.execute(TRACKING_DDL)
            # The models' tracking rows first, locked (PostgreSQL): this waits for the batch a
            # running projector has in hand and keeps its next one from starting, so that
            # no projector is writing the tables while this transaction locks them (even
            # CREATE INDEX IF NOT EXISTS takes a share lock): either order would deadlock.
            tracked = set(self.positions(cur))
            self._upgrade(cur, tracked)
            for model in self.models:
                if model.name not in tracked:
                    cur.execute(
                        "INSERT INTO escrow_tracking (name, position) VALUES (?, 0) "
                        "ON CONFLICT (name) DO NOTHING",
                        [model.name],
                    )
            for model in self.models:
                for statement in [*model.ddl(store), *model.indexes(store)]:
                    cur.execute(statement)

    def _upgrade(self, cur: Cursor, tracked: set[str]) -> None:
        """Drop the tables of every model whose stored schema version is not the code's, and
        set it back to the first event: the catch-up that follows any opening rebuilds it
        from the log. Done inside the table-creating transaction, so one process does it and
        any other opening the store waits for it (PostgreSQL: `creating`'s advisory lock;
        SQLite: its one writer), then finds the version current. A store written before
        versions were kept has no row: its tables count as version 1 (UNVERSIONED)."""
        cur.execute(VERSIONS_DDL)
        cur.execute("SELECT name, version FROM escrow_read_models")
        stored = {name: int(version) for name, version in cur.fetchall()}
        for model in self.models:
            was = stored.get(model.name)
            if was is None:
                cur.execute(
                    "INSERT INTO escrow_read_models (name, version) VALUES (?, ?)",
                    [model.name, model.version],
                )
                # tables built before versions were kept, or none yet (a new store)
                was = UNVERSIONED if model.name in tracked else model.version
            if was == model.version:
                continue
            log.warning(
                "read model %s: tables of version %d, code of version %d: rebuilding it from "
                "the log",
                model.name,
                was,
                model.version,
                extra={"model": model.name, "stored_version": was, "version": model.version},
            )
            cur.execute("UPDATE escrow_tracking SET position = 0 WHERE name = ?", [model.name])
            drop(cur, model)
            cur.execute(
                "UPDATE escrow_read_models SET version = ? WHERE name = ?",
                [model.version, model.name],
            )

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def positions(self, cur: Cursor, lock: bool = True) -> dict[str, int]:
        """Each model's position; locked until the transaction ends, so that two projectors
        (threads or processes) never handle the same event for the same model."""
        update = " FOR UPDATE" if lock and self.store.dialect == "postgresql" else ""
        names = self.names
        cur.execute(
            f"SELECT name, position FROM escrow_tracking WHERE name IN "
            f"({','.join('?' * len(names))}) ORDER BY name{update}",
            names,
        )
        return {name: int(position) for name, position in cur.fetchall()}

    def status(self) -> tuple[dict[str, int], int]:
        """(position per model, last id in the log)."""
        with self.store.reading() as cur:
            positions = self.positions(cur, lock=False)
        return positions, int(self.app.recorder.max_notification_id() or 0)

    def apply(
        self,
        first_id: int,
        events: Sequence[DomainEventProtocol[Any]],
        last_id: int | None = None,
    ) -> bool:
        """Project events just recorded (ids first_id..last_id, contiguous) without reading them
        back; False when the read models are not right behind them (then `catch_up`)."""
        if last_id is not None and last_id - first_id + 1 != len(events):
            return False  # another writer's events are interleaved: read the log instead
        # Optimistic: project as if every model were right behind these events, and move
        # the tracking rows only if they all still are (compare-and-set in the same
        # transaction); otherwise roll everything back and let `catch_up` read the log. No
        # position is read first, so on PostgreSQL the whole transaction is one pipeline.
        names = self.names
        behind = first_id - 1
        last = first_id + len(events) - 1
        with self._lock:
            try:
                with self.store.pipelined() as cur:
                    self._trust(behind)
                    self._dispatch(cur, numbered(events, first_id), dict.fromkeys(names, behind))
                    self._flush(cur)
                    cur.advance(names, behind, last)
            except (NotRightBehind, sqlite3.Error, psycopg.Error):
                self._forget()
                return False  # rolled back: a model was elsewhere, or another projector raced
            except BaseException:
                self._forget()
                raise
            self._held_at = last
        return True

    @contextmanager
    def inside(self, events: Sequence[DomainEventProtocol[Any]]) -> Iterator[Inside]:
        """A hook for the recorder (escrow.projections.inline) that projects `events` in the very
        transaction recording them; `applied` tells afterwards whether it did. It steps aside
        (and `catch_up` then follows the log) when another thread is projecting, when the
        models are not right behind the events, or when a model fails: the events still
        commit, and the failure shows again in `catch_up`."""
        hook = Inside(self, events)
        try:
            yield hook
            if hook.applied:
                self._held_at = hook.last
        except BaseException:
            if hook.applied:
                self._forget()
            raise
        finally:
            if hook.locked:
                self._lock.release()

    def _trust(self, position: int) -> None:
        """Keep the rows the models hold only if every model is where this projector left
        it (checked again, atomically, by the caller's compare-and-set or row locks)."""
        if self._held_at != position:
            self._forget()

    def _forget(self) -> None:
        self._held_at = None
        for model in self.models:
            model.forget()

    def catch_up(
        self,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] | None = None,
        pages: int = 1,
    ) -> int:
        """Pull and project every event recorded after the slowest model, `pages` batches
        per transaction, until none is left (or `stop()` says so between transactions);
        returns how many notifications were read."""
        done = 0
        with self._lock:
            while stop is None or not stop():
                try:
                    # Pipelined: the server writes one model's rows while this process
                    # decodes the next page; only selects wait for their replies.
                    with self.store.pipelined() as cur:
                        positions = self.positions(cur)
                        start = min(positions.values())
                        level = max(positions.values()) == start
                        if level:
                            self._trust(start)
                        else:
                            self._forget()
                        read = 0
                        for _ in range(pages):
                            page = self._page(start)
                            if not page:
                                break
                            self._project(cur, positions, page)
                            start = page[-1][0]
                            self._advance(cur, positions, start)
                            positions = {n: max(p, start) for n, p in positions.items()}
                            read += len(page)
                            if progress:
                                progress(len(page))
                        self._flush(cur)
                except BaseException:
                    self._forget()
                    raise
                level = all(p == start for p in positions.values())
                self._held_at = start if level else None
                if not read:
                    return done
                done += read
        return done

    def _page(self, start: int) -> list[Row]:
        """The next rows of the log after `start`, never past a hole that may still fill."""
        if self.share is not None:
            part, upto = (self.share.k, self.share.n), self.share.upto
            return next(self.log.pages(start, self.batch, part, upto), [])
        return self.log.following(start, self.batch)

    def settled(self) -> int:
        """The highest id below which every hole in the log is final."""
        return self.log.settled()

    def _project(self, cur: Cursor, positions: dict[str, int], page: list[Row]) -> None:
        decode, wanted = self._decode, self._wanted
        events = []
        for row in page:
            wants = wanted.get(row[3])
            if wants is None:
                wants = self._wants(row[3])
            if wants:
                events.append((row[0], row[1], decode(row)))
        self._dispatch(cur, events, positions)

    def _dispatch(
        self, cur: Cursor, events: Iterable[tuple[int, str, Any]], positions: dict[str, int]
    ) -> None:
        """Hand each model, in log order, the events it reads and has not handled yet."""
        after = [positions[m.name] for m in self.models]
        floor = min(after, default=0)
        level = max(after, default=0) == floor  # then one test per event, not per model
        batches: list[list[Item]] = [[] for _ in self.models]
        add = [batch.append for batch in batches]
        routes = self._routes
        for position, stream, event in events:
            kind = type(event)
            route = routes.get(kind)
            if route is None:
                route = routes[kind] = tuple(
                    i for i, m in enumerate(self.models) if issubclass(kind, m.reads)
                )
            if route:
                item = (stream, event)
                if level:
                    if position > floor:
                        for i in route:
                            add[i](item)
                else:
                    for i in route:
                        if position > after[i]:
                            add[i](item)
        for model, items in zip(self.models, batches, strict=True):
            if items:
                model.project(cur, items)

    def _flush(self, cur: Cursor) -> None:
        for model in self.models:
            model.flush(cur)

    def _wants(self, topic: str) -> bool:
        """Events no model reads (command receipts) are not even decoded. A topic this
        process cannot resolve is one no model reads either: a parallel rebuild's worker
        imports the domain and the read models, not `commands` (where receipts live)."""
        wanted = self._wanted.get(topic)
        if wanted is None:
            try:
                cls = resolve_topic(topic)
            except TopicError:
                cls = None
            wanted = self._wanted[topic] = isinstance(cls, type) and issubclass(cls, self._read)
        return wanted

    def _advance(self, cur: Cursor, positions: dict[str, int], last: int) -> None:
        behind = [name for name, position in positions.items() if position < last]
        if behind:
            cur.executemany(
                "UPDATE escrow_tracking SET position = ? WHERE name = ?",
                [(last, name) for name in behind],
            )

    def rebuild(
        self, names: Sequence[str] = (), progress: Callable[[int], None] | None = None
    ) -> int:
        """Drop the named read models (all by default) and replay them from the first event;
        a long log is replayed by several processes at once (`escrow.projections.parallel`)."""
        unknown = set(names) - set(self.names)
        if unknown:
            raise ValueError(f"no read model named {', '.join(sorted(unknown))}")
        chosen = [m for m in self.models if not names or m.name in names]
        from escrow.projections import (
            parallel,  # it runs projectors of its own: imports this module
        )

        if not parallel.worth_it(self, chosen):
            return self.replay(chosen, progress)
        with self._lock:
            self._forget()
            return parallel.rebuild(self, chosen, progress)

    def replay(
        self,
        chosen: Sequence[ReadModel],
        progress: Callable[[int], None] | None = None,
        index: bool = True,
    ) -> int:
        """Empty the tables of `chosen`, replay the log into them, then create their indexes
        (unless not `index`: a parallel rebuild's scratch copies need none)."""
        with self._lock, self.store.transaction() as cur:
            self._forget()
            self.positions(cur)  # wait for (and block) any other projector of these models
            for model in chosen:
                recreate(cur, self.store, model)
                cur.execute("UPDATE escrow_tracking SET position = 0 WHERE name = ?", [model.name])
        done = self.catch_up(progress, pages=REBUILD_PAGES)
        if index:
            with self._lock, self.store.transaction() as cur:
                for model in chosen:
                    for statement in model.indexes(self.store):
                        cur.execute(statement)
        return done


def numbered(
    events: Sequence[DomainEventProtocol[Any]], first_id: int
) -> Iterator[tuple[int, str, Any]]:
    """Events just recorded as `_dispatch` takes them: (notification id, stream, event)."""
    for position, event in enumerate(events, start=first_id):
        yield position, str(event.originator_id), event


def drop(cur: Cursor, model: ReadModel) -> None:
    for table in reversed(model.tables):
        cur.execute(f"DROP TABLE IF EXISTS {table}")


def recreate(cur: Cursor, store: ReadStore, model: ReadModel) -> None:
    """Drop the model's tables and create them empty, without their indexes."""
    drop(cur, model)
    for statement in model.ddl(store):
        cur.execute(statement)
