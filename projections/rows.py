"""Rows of one read-model table as the projector sees them: read once in bulk, changed in
memory, written back once with `executemany`, and kept for the next batch.

A read model handles a page of events in one transaction; going to the database once per event
would cost a round trip per statement, which is what bounds a naive projection. Here a batch
loads the rows its events touch with a few `IN (...)` selects (only those not already held),
applies the events to plain dicts in log order, and writes the rows it changed (upserts and
deletes) at the end. The result is the same as handling the events one by one, because every
change goes through this cache.

The rows stay held after the batch commits: the next command's events mostly continue the same
orders and traders, so they need no select at all (the engine's per-command path becomes
write-only). Held rows are only right while this process is the only writer of the table since
it loaded them; the projector checks that through the tracking positions and calls `forget`
whenever it cannot be sure (another writer moved, a rollback, a rebuild).
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact
from typing import Any

from escrow.projections.readstore import Cursor

Row = dict[str, Any]


@functools.lru_cache(maxsize=8192)
def stamp(moment: datetime) -> str:
    """A fixed-width UTC text that sorts like time on every backend (cached: several read
    models stamp the same event's time)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (twice as fast as isoformat)
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


def unstamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


EXACT = Context(prec=200, traps=[Inexact])  # sums of amounts: never rounded
HELD = 4096  # rows kept per table between batches: the streams in flight, not the history


def as_decimal(value: Any) -> Decimal:
    """SQLite gives back the exact text it was given; PostgreSQL a Decimal."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


class Rows:
    def __init__(
        self,
        table: str,
        key: Sequence[str],
        columns: Sequence[str],
        decimals: Iterable[str] = (),
        integers: Iterable[str] = (),
        summed: Iterable[str] = (),
    ) -> None:
        """`decimals` and `integers` name the columns that are not text (their PostgreSQL
        types for bulk writes, exact Decimals when read back from SQLite). `summed` names
        the columns that add up events of many streams (counters, totals): a rebuild by
        shares of the streams (`escrow.projections.parallel`) adds up its shares' rows of a key;
        every other column must be the same in every share."""
        self.table = table
        self.summed = tuple(summed)
        self.key = tuple(key)
        self.columns = tuple(columns)
        self.decimals = frozenset(decimals)
        ints = frozenset(integers)
        self.pg_types = tuple(
            "numeric" if c in self.decimals else "bigint" if c in ints else "text"
            for c in self.columns
        )
        self._key_types = tuple(self.pg_types[self.columns.index(c)] for c in self.key)
        self._values = operator.itemgetter(*self.columns)
        self._key_at = tuple(self.columns.index(c) for c in self.key)
        self._key_of = operator.itemgetter(*self._key_at)
        self._positions = range(len(self.columns))
        self._decimal_at = tuple(i for i, c in enumerate(self.columns) if c in self.decimals)
        self._rows: dict[Any, Row | None] = {}
        # The values each held row has in the table, to write back only the columns that
        # changed: an UPDATE of a few columns leaves the indexes on the others alone (SQLite
        # rewrites every index an upsert's SET names; PostgreSQL can update in place).
        self._stored: dict[Any, tuple[Any, ...]] = {}
        self._dirty: dict[Any, None] = {}  # insertion-ordered set: writes keep log order
        self._absent: set[Any] = set()  # keys known to have no row in the table

    def load(self, cur: Cursor, keys: Iterable[Any]) -> None:
        """Fetch the rows of `keys` not seen yet in this batch (single-column keys)."""
        assert len(self.key) == 1, "bulk loads are by a single key column"
        wanted = [k for k in dict.fromkeys(keys) if k not in self._rows]
        if not wanted:
            return
        for k in wanted:
            self._rows[k] = None
        self._absent.update(wanted)
        at = self.columns.index(self.key[0])
        found = cur.select_in(
            f"SELECT {', '.join(self.columns)} FROM {self.table}",
            self.key[0],
            wanted,
            self._key_types[0],
        )
        for values in found:
            row = self.decode(values)
            self._rows[values[at]] = row
            self._stored[values[at]] = self._values(row)
            self._absent.discard(values[at])

    def decode(self, values: Sequence[Any]) -> Row:
        row = dict(zip(self.columns, values, strict=True))
        for name in self.decimals:
            if row[name] is not None:
                row[name] = as_decimal(row[name])
        return row

    def get(self, key: Any) -> Row | None:
        """The row as the batch has it so far (load the keys a batch reads first)."""
        return self._rows.get(key)

    def put(self, key: Any, row: Row) -> None:
        self._rows[key] = row
        self._dirty[key] = None

    def insert(self, key: Any, row: Row) -> None:
        """`put` for a key that cannot have a row yet (a stream's first event): deleting it
        again in the same batch then costs no statement at all."""
        self._absent.add(key)
        self.put(key, row)

    def delete(self, key: Any) -> None:
        self._rows[key] = None
        self._dirty[key] = None

    def flush(self, cur: Cursor) -> None:
        """Write back what changed: deletes, inserts of new keys, updates of the changed
        columns of rows the table holds, upserts of rows not known either way."""
        rows, absent, stored, values = self._rows, self._absent, self._stored, self._values
        if not self._dirty:
            return
        gone: list[Any] = []
        new: list[tuple[Any, ...]] = []
        unknown: list[tuple[Any, ...]] = []
        changed: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        written: dict[Any, tuple[Any, ...]] = {}  # what the table holds after this flush
        for k in self._dirty:
            row = rows[k]
            if row is None:
                if k not in absent:
                    gone.append(k if isinstance(k, tuple) else (k,))
                    absent.add(k)
                stored.pop(k, None)
                continue
            now = written[k] = values(row)
            if k in absent:
                new.append(now)
            elif (was := stored.get(k)) is None:
                unknown.append(now)
            elif columns := self._changed(now, was):
                changed.setdefault(columns, []).append(now)
        if gone:
            cur.delete_rows(self.table, self.key, self._key_types, gone)
        if new:
            new.sort(key=self._key_of)
            cur.insert_rows(self.table, self.columns, self.pg_types, new)
        if unknown:
            cur.insert_rows(self.table, self.columns, self.pg_types, unknown, conflict=self.key)
        for columns, group in changed.items():
            at = columns + self._key_at
            cur.update_rows(
                self.table,
                [self.columns[i] for i in columns],
                self.key,
                [self.pg_types[i] for i in at],
                list(map(operator.itemgetter(*at), group)),
            )
        stored.update(written)
        absent.difference_update(written)
        if len(rows) > HELD:
            self._keep(list(self._dirty)[-HELD:])
        self._dirty.clear()

    def _changed(self, now: tuple[Any, ...], was: tuple[Any, ...]) -> tuple[int, ...]:
        """Positions whose value changed (compared in C); equal Decimals written differently
        ("1.0", "1.00") count as changed, so the table's text is always what a full write
        would have left."""
        differs = list(map(operator.ne, now, was))
        for i in self._decimal_at:
            if not differs[i] and now[i] is not None and str(now[i]) != str(was[i]):
                differs[i] = True
        return tuple(itertools.compress(self._positions, differs))

    def _keep(self, keys: list[Any]) -> None:
        """Hold only `keys` (the rows just written: the streams in flight, which the next
        batch continues); dropping every row instead would make it select them all again."""
        rows, stored, absent = self._rows, self._stored, self._absent
        self._rows = {k: rows[k] for k in keys}
        self._stored = {k: stored[k] for k in keys if k in stored}
        self._absent = {k for k in keys if k in absent}

    def forget(self) -> None:
        """Drop every held row: the next batch reads the table again."""
        self._rows.clear()
        self._dirty.clear()
        self._absent.clear()
        self._stored.clear()
