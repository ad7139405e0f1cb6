"""STOPGAP until `commands/events.py` (the one function that writes an event as
../shared/spec/events.md defines it) lands on main: the same API it is to have
(`EventFeed(history).page(after, limit)`, `.head()`), answering the rows `escrow audit export`
writes. When it lands, the event routes import that instead and this module goes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.audit.history import History, entry, kind_of

REFS = 100_000  # streams whose id is remembered (a few MB)


class EventFeed:
    def __init__(self, history: History) -> None:
        self.history = history
        self._refs: dict[str, str] = {}  # stream -> the caller's id, from its first event

    def head(self) -> int:
        return int(self.history.recorder.max_notification_id() or 0)

    def page(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events after position `after`, in log order."""
        rows = next(self.history.pages(after=after, size=limit), [])
        out = []
        for position, key, version, topic, state in rows:
            fields = self.history.decode(state)
            ref = self._ref(key, fields if version == 1 else None)
            out.append(entry(position, kind_of(topic), ref, key, version, topic, fields).as_json())
        return out

    def _ref(self, key: str, first: dict[str, Any] | None) -> str:
        if key not in self._refs:
            if len(self._refs) >= REFS:
                self._refs.clear()
            if first is None:
                _, _, _, state = self.history.stream_rows(UUID(key))[0]
                first = self.history.decode(state)
            self._refs[key] = str(first.get("ref", ""))
        return self._refs[key]
