"""The aggregates this engine saved last, kept in memory to decide the next command on them
without reading them back.

A lifecycle writes the same order three times in a row; reading the stream back before each
command was a round trip on PostgreSQL and the decoding and replaying of every event on every
backend. The store stays the authority: a command decided on a kept aggregate that another
process or thread has moved since cannot be saved (its version is taken, the save clashes and
the engine decides again on a fresh read), a refusal is only returned once the streams it was
decided on are checked fresh, and a stream that a command only read is checked fresh before
saving (see `Unit.kept_unchanged`). A kept aggregate is lent to one command at a time: taken
out while it decides, put back once saved, so threads never share one; a command that is
refused or clashes leaves it out and the next command reads the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from escrow.recording import EscrowAggregate

V = TypeVar("V")

STREAMS = 10_000  # default bound: a few MB, far more than the orders in flight at once


class RecentStreams:
    def __init__(self, size: int = STREAMS) -> None:
        self.size = size
        self._kept: dict[UUID, EscrowAggregate] = {}
        self._lock = threading.Lock()

    def holds(self, key: UUID) -> bool:
        return key in self._kept

    def take(self, key: UUID) -> EscrowAggregate | None:
        with self._lock:
            return self._kept.pop(key, None)

    def view(self, key: UUID, version: int, make: Callable[[EscrowAggregate], V]) -> V | None:
        """`make` of the kept aggregate if it is at exactly `version` (None otherwise), lent
        for the time it takes so that no command changes it meanwhile."""
        aggregate = self.take(key)
        if aggregate is None:
            return None
        try:
            return make(aggregate) if aggregate.version == version else None
        finally:
            self.keep(aggregate)

    def keep(self, aggregate: EscrowAggregate) -> None:
        """Put a saved aggregate back, unless a later version of it is kept already (a racing
        thread saved after this one)."""
        if self.size <= 0:
            return
        with self._lock:
            kept = self._kept.pop(aggregate.id, None)
            if kept is not None and kept.version > aggregate.version:
                aggregate = kept
            self._kept[aggregate.id] = aggregate  # (re)inserted last: evicted last
            if len(self._kept) > self.size:
                del self._kept[next(iter(self._kept))]
