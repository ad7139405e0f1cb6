"""The events of the streams this engine wrote last, kept in memory to decide the next command
without reading them back.

A lifecycle writes the same order three times in a row; reading the stream back before each
command was a round trip on PostgreSQL and the decoding of every event on every backend. The
store stays the authority: a command decided on a kept stream that another process or thread
has moved since cannot be saved (its version is taken, the save clashes and the engine decides
again on a fresh read), a refusal is only returned once the streams it was decided on are
checked fresh, and a stream that a command only read is checked fresh before saving (see
`Unit.unchanged_kept`). Events are immutable, so a kept stream is shared by threads as is and
each command projects its own aggregate from them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

Events = tuple[DomainEventProtocol[UUID], ...]

STREAMS = 10_000  # default bound: a few MB, far more than the orders in flight at once


class RecentStreams:
    def __init__(self, size: int = STREAMS) -> None:
        self.size = size
        self._streams: dict[UUID, Events] = {}
        self._lock = threading.Lock()

    def get(self, key: UUID) -> Events | None:
        return self._streams.get(key)

    def keep(self, key: UUID, events: Sequence[DomainEventProtocol[UUID]]) -> None:
        """Keep a stream's events, unless a longer version of it is kept already (a racing
        thread saved after this one)."""
        if self.size <= 0 or not events:
            return
        with self._lock:
            kept = self._streams.get(key)
            if kept is not None and len(kept) >= len(events):
                return
            self._streams.pop(key, None)  # re-inserted last: evicted last
            self._streams[key] = tuple(events)
            while len(self._streams) > self.size:
                del self._streams[next(iter(self._streams))]

    def forget(self, keys: Iterable[UUID]) -> None:
        with self._lock:
            for key in keys:
                self._streams.pop(key, None)
