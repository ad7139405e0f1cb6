"""The event log read as plain rows, and events decoded from those rows.

Whole-log readers (an audit's `verify`, a read-model rebuild) each go through every event,
often in several processes at once. The recorder's `select_notifications` followed by
`mapper.to_domain_event` spend most of their time on objects nobody keeps: a `Notification` and
a `UUID` parsed from text per event (which a read model prints back to text for its keys), a
Python object hook call per JSON object. Here one statement per page returns plain tuples with
the stream id already as UUID text, and `EventDecoder` makes from them the very event objects
the mapper makes (`tests/test_event_log.py` compares both on every event of random
histories), parsing the JSON with msgspec (in C, integers of any size, as `json` does) and
applying the transcodings afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID, SafeUUID

import msgspec
import psycopg
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    OperationalError,
    StoredEvent,
    UUIDAsHex,
    find_id_convertor,
    pass_through_convertor,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import resolve_topic
from psycopg.rows import tuple_row

# One stored event as read from the log: notification id, stream id (UUID text), version,
# topic, stored state (bytes, as the recorder keeps it).
Row = tuple[int, str, int, str, bytes]
PAGE = 2000
SETTLE_TIMEOUT_MS = 2000  # how long to wait for writers in flight before reading on
IDS_HELD = 16_384  # stream ids a decoder keeps made


def partition_of(stream: str, parts: int) -> int:
    """Which of `parts` workers takes a stream: its id's last hex digit, as the SQL filters
    do (one digit: the filter is evaluated on every row of the log, by every worker)."""
    return int(stream[-1], 16) % parts


@dataclass(frozen=True)
class _Dialect:
    """How a page of the log is selected on one backend."""

    id: str  # the notification id column
    stream: str  # the stream id as UUID text
    digit: str  # the last hex digit of the stream id, as a number
    mark: str  # a parameter
    mod: str  # the modulo operator, as written beside parameters


# SQLite keeps the id as 32 hex digits: the dashes are put in by SQLite itself.
_DASHED = "||'-'||".join(
    f"substr(originator_id, {a}, {n})" for a, n in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
)
_SQL = {
    "sqlite": _Dialect(
        id="rowid",
        stream=f"CASE WHEN length(originator_id) = 32 THEN {_DASHED} ELSE originator_id END",
        digit="(instr('0123456789abcdef', substr(originator_id, 32, 1)) - 1)",
        mark="?",
        mod="%",
    ),
    "postgresql": _Dialect(
        id="notification_id",
        stream="originator_id::text",
        digit="(get_byte(uuid_send(originator_id), 15) %% 16)",
        mark="%s",
        mod="%%",
    ),
}


class EventLog:
    """An application's notification log, read in pages of `Row`s."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.backend = (
            "sqlite"
            if isinstance(recorder, SQLiteApplicationRecorder)
            else "postgresql"
            if isinstance(recorder, PostgresApplicationRecorder)
            else "memory"
        )
        self._table = (
            f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
            if self.backend == "postgresql"
            else getattr(recorder, "events_table_name", "")
        )
        self._final = 0  # every id up to here is committed or will never be

    def decoder(self, mapper: Mapper[Any]) -> EventDecoder:
        """Events from this log's rows (with the application's mapper)."""
        datastore = getattr(self.recorder, "datastore", None)
        return EventDecoder(mapper, getattr(datastore, "originator_id_type", "uuid") == "uuid")

    def count(self) -> int:
        if self.backend == "memory":
            return int(self.recorder.max_notification_id() or 0)
        return int(self._fetch(f"SELECT COUNT(*) FROM {self._table}", [])[0][0])

    def pages(
        self,
        after: int = 0,
        size: int = PAGE,
        part: tuple[int, int] | None = None,
        upto: int | None = None,
    ) -> Iterator[list[Row]]:
        """The log in notification order, one page at a time (never all of it at once);
        `part=(k, n)` keeps only the streams of worker k of n; `upto`: no row after that id.

        A part is read in windows of ids (`size` × n ids: about `size` of its rows) rather
        than `LIMIT size` over the filter: PostgreSQL cannot estimate that filter, takes it
        for rare, and sorts the whole rest of the log for every page."""
        if part is None:
            while rows := self._select(after, upto, None, size):
                yield rows
                after = rows[-1][0]
            return
        end = int(self.recorder.max_notification_id() or 0) if upto is None else upto
        while after < end:
            stop = min(after + size * part[1], end)
            if rows := self._select(after, stop, part, None):
                yield rows
            after = stop

    def following(self, after: int, size: int = PAGE) -> list[Row]:
        """The next rows after id `after`, never past a hole in the ids that may still fill.

        On PostgreSQL ids come from a sequence and the insert function takes no table lock,
        so a writer can commit id 12 while id 11 (another writer's) is still in flight, or
        never commits (rolled back). A follower that moved past 11 would miss it forever:
        it stops before such a hole until `settled` says the hole is final. SQLite and the
        memory store serialise writers, so ids appear in order there."""
        for attempt in range(2):
            page = self._select(after, None, None, size)
            expected = after + 1
            for i, row in enumerate(page):
                if row[0] != expected and row[0] - 1 > self._final:
                    if attempt == 0:
                        break  # a hole that may be in flight: settle holes, then read again
                    return page[:i]
                expected = row[0] + 1
            else:
                return page
            self._final = self.settled()
        return []  # unreachable: the second attempt returns

    def settled(self) -> int:
        """The highest id below which every hole is final: a SHARE lock on the events table,
        held for an instant, waits for every transaction inserting events to end (committed
        or rolled back). Read-only sessions may take it too: it writes nothing."""
        if self.backend != "postgresql":
            return int(self.recorder.max_notification_id() or 0)
        try:
            with (
                self.recorder.datastore.get_connection() as conn,
                conn.transaction(),
                conn.cursor(row_factory=tuple_row) as cur,
            ):
                cur.execute("SET TRANSACTION READ WRITE")
                cur.execute(f"SET LOCAL lock_timeout = '{SETTLE_TIMEOUT_MS}ms'")
                cur.execute(f"LOCK TABLE {self._table} IN SHARE MODE")
                cur.execute(f"SELECT MAX(notification_id) FROM {self._table}")
                row = cur.fetchone()
        except OperationalError as e:  # the datastore's wrapping of psycopg's error
            if not isinstance(e.__cause__, psycopg.errors.LockNotAvailable):
                raise
            return self._final  # a writer is stuck mid-transaction: stop before its hole
        return int(row[0] or 0)

    def stream_rows(self, key: UUID) -> list[tuple[int, int, str, bytes]]:
        """(notification id, version, topic, stored state) of one stream, in version order."""
        if self.backend == "memory":  # the log is small, and only it knows the notification ids
            rows = [(r[0], r[2], r[3], r[4]) for r in self.rows() if r[1] == str(key)]
            return sorted(rows, key=lambda r: r[1])
        sql = _SQL[self.backend]
        found = self._fetch(
            f"SELECT {sql.id}, originator_version, topic, state FROM {self._table} "
            f"WHERE originator_id = {sql.mark} ORDER BY originator_version",
            [key.hex if self.backend == "sqlite" else key],  # SQLite keeps 32 hex digits
        )
        return [(r[0], r[1], r[2], bytes(r[3])) for r in found]

    def _select(
        self, after: int, stop: int | None, part: tuple[int, int] | None, limit: int | None
    ) -> list[Row]:
        """Rows after id `after`, up to id `stop`, of streams of `part`, at most `limit`."""
        if self.backend == "memory":
            found = self.recorder.select_notifications(
                after, limit or int(stop or 0) - after, stop=stop, inclusive_of_start=False
            )
            every: list[Row] = [
                (n.id, str(n.originator_id), n.originator_version, n.topic, n.state) for n in found
            ]
            if part is None:
                return every
            return [r for r in every if partition_of(r[1], part[1]) == part[0]]
        sql = _SQL[self.backend]
        where = [f"{sql.id} > {sql.mark}"]
        params = [after]
        if stop is not None:
            where.append(f"{sql.id} <= {sql.mark}")
            params.append(stop)
        if part is not None:
            where.append(f"{sql.digit} {sql.mod} {sql.mark} = {sql.mark}")
            params += [part[1], part[0]]
        text = (
            f"SELECT {sql.id}, {sql.stream}, originator_version, topic, state "
            f"FROM {self._table} WHERE {' AND '.join(where)} ORDER BY {sql.id}"
        )
        if limit is not None:
            text += f" LIMIT {sql.mark}"
            params.append(limit)
        return self._fetch(text, params)

    def _fetch(self, text: str, params: list[Any]) -> list[Any]:
        """Every row of a statement on the store's SQL backend, as plain tuples."""
        if self.backend == "sqlite":
            with self.recorder.datastore.transaction(commit=False) as c:
                c.sqlite_cursor.row_factory = None  # plain tuples: reading stays in C
                c.execute(text, params)
                rows: list[Any] = c.fetchall()
                return rows
        with self._pg_cursor() as cur:
            cur.execute(text, params, binary=True)
            rows = cur.fetchall()
            return rows

    def _pg_cursor(self) -> Any:
        @contextmanager
        def cursor() -> Iterator[Any]:
            with (
                self.recorder.datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row) as cur,
            ):
                yield cur

        return cursor()

    def rows(self, **kw: Any) -> Iterator[Row]:
        for page in self.pages(**kw):
            yield from page


_loads = msgspec.json.Decoder().decode

# The library's own transcodings, by the C callables their `decode` methods call.
_BUILT_IN: dict[type, Callable[[Any], Any]] = {
    DecimalAsStr: Decimal,
    DatetimeAsISO: datetime.fromisoformat,
    UUIDAsHex: UUID,
}


_UNKNOWN = SafeUUID.unknown  # an enum member read from its class costs a descriptor call


def _uuid(text: str) -> UUID:
    """`UUID(text)` for the canonical text the log's pages give: what `UUID.__init__` ends
    with, without its parsing of every other spelling (a third of the cost)."""
    made = object.__new__(UUID)
    object.__setattr__(made, "int", int(text.replace("-", ""), 16))
    object.__setattr__(made, "is_safe", _UNKNOWN)
    return made


class EventDecoder:
    """`mapper.to_domain_event` for rows of the log: the same event objects, made faster.

    With the library's JSON transcoder and neither cipher nor compressor, the state is parsed
    by msgspec and each transcoded value (`{"_type_": name, "_data_": data}`) is revived
    afterwards, innermost first, exactly where the transcoder's object hook would have revived
    it. Anything else (another transcoder, a cipher or compressor, JSON msgspec refuses: NaN,
    infinities; an unknown transcoding) goes through the mapper itself, which decides or
    raises its own error."""

    def __init__(self, mapper: Mapper[Any], uuid_ids: bool = True) -> None:
        self._mapper = mapper
        self._uuid_ids = uuid_ids
        transcoder = mapper.transcoder
        self._fast = (
            type(transcoder) is JSONTranscoder and not mapper.cipher and not mapper.compressor
        )
        self._revivers: dict[str, Callable[[Any], Any]] = (
            {name: _BUILT_IN.get(type(t), t.decode) for name, t in transcoder.names.items()}
            if isinstance(transcoder, JSONTranscoder)
            else {}
        )
        self._id_type: type = UUID if uuid_ids else str
        # topic -> (event class, its id convertor (None: none), its class version, the keys
        # of its transcoded values)
        self._classes: dict[str, tuple[Any, Callable[[Any], Any] | None, int, tuple[str, ...]]]
        self._classes = {}
        self._ids: dict[str, UUID] = {}

    def __call__(self, row: Row) -> Any:
        """(The hot path of a rebuild, called once per event: kept in one function.)"""
        _, stream, version, topic, state = row
        originator_id: UUID | str = stream
        if self._uuid_ids:
            # A stream's events come close together in the log: its id is made once.
            found = self._ids.get(stream)
            if found is None:
                if len(self._ids) >= IDS_HELD:
                    self._ids.clear()
                found = self._ids[stream] = _uuid(stream)
            originator_id = found
        known = self._classes.get(topic)
        if not self._fast or known is None:
            return self._slow(originator_id, version, topic, state)
        # The transcoded values of a topic's events are top-level values of the same keys:
        # revived by those keys as long as they account for every `"_type_":` in the bytes
        # (inside a JSON string those quotes would be escaped). Anything else: `_slow`.
        try:
            fields = _loads(state)
            revivers = self._revivers
            found_count = 0
            for key in known[3]:
                value = fields[key]
                if type(value) is dict and len(value) == 2:
                    fields[key] = revivers[value["_type_"]](value["_data_"])
                    found_count += 1
        except Exception:
            return self._slow(originator_id, version, topic, state)
        if found_count != state.count(b'"_type_":') or type(fields) is not dict:
            return self._slow(originator_id, version, topic, state)
        cls, convert, class_version, _ = known
        fields["originator_id"] = originator_id if convert is None else convert(originator_id)
        fields["originator_version"] = version
        if class_version != 1 or "class_version" in fields:
            _upcast(cls, class_version, fields)
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        return event

    def _slow(self, originator_id: Any, version: int, topic: str, state: bytes) -> Any:
        """A topic's first event, or a state of another shape: revived in full (learning
        the topic's keys), or decided by the mapper itself."""
        if self._fast:
            try:
                fields = _loads(state)
                wrapped = tuple(
                    key
                    for key, value in fields.items()
                    if type(value) is dict
                    and len(value) == 2
                    and "_type_" in value
                    and "_data_" in value
                )
                fields = self._revive(fields)
            except Exception:
                fields = None
            if type(fields) is dict:
                cls = resolve_topic(topic)
                convert = find_id_convertor(cls, cast("Hashable", self._id_type))
                class_version = getattr(cls, "class_version", 1)
                identity = None if convert is pass_through_convertor else convert
                self._classes[topic] = (cls, identity, class_version, wrapped)
                fields["originator_id"] = convert(originator_id)
                fields["originator_version"] = version
                _upcast(cls, class_version, fields)
                event = object.__new__(cls)
                object.__setattr__(event, "__dict__", fields)
                return event
        return self._mapper.to_domain_event(StoredEvent(originator_id, version, topic, state))

    def _revive(self, value: Any) -> Any:
        """What the transcoder's object hook makes of a decoded JSON value: every JSON
        object, innermost first, that holds just `_type_` and `_data_` becomes the value."""
        if type(value) is dict:
            for key, item in value.items():
                if type(item) is dict or type(item) is list:
                    value[key] = self._revive(item)
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self._revivers[value["_type_"]](value["_data_"])
            return value
        if type(value) is list:
            for i, item in enumerate(value):
                if type(item) is dict or type(item) is list:
                    value[i] = self._revive(item)
        return value


def _upcast(cls: Any, class_version: int, fields: dict[str, Any]) -> None:
    """As `Mapper.to_domain_event` upcasts a stored state to its class's version."""
    from_version = fields.pop("class_version", 1)
    while from_version < class_version:
        getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(fields)
        from_version += 1
